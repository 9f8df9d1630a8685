"""BrainGlobe's dict-like views of an atlas: ``atlas.structures`` (:class:`StructuresDict` of
:class:`StructureEntry`) and ``atlas.additional_references`` (:class:`AdditionalRefDict`).

They behave as BrainGlobe 2.3.1's: entries are built on demand, meshes and stacks are read on
first access, unknown keys raise the same builtin exceptions.
"""

from __future__ import annotations

import warnings
from collections import UserDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy.typing as npt

from atlasmith.errors import StructureNotFoundError
from atlasmith.hierarchy import StructureTree

if TYPE_CHECKING:  # pragma: no cover
    from treelib.tree import Tree

__all__ = ["AdditionalRefDict", "StructureEntry", "StructuresDict", "structure_id"]


class StructureEntry(UserDict[str, Any]):
    """One structure as a dict (BrainGlobe's ``Structure``): ``acronym``, ``id``, ``name``,
    ``structure_id_path``, ``rgb_triplet``, ``mesh_filename``, and ``mesh``, read on first use.
    """

    def __getitem__(self, key: str) -> Any:
        if key == "mesh" and self.data.get("mesh") is None:
            self.data["mesh"] = self._read_mesh()
        return self.data[key]

    #: Reads the structure's mesh from its atlas (set by :class:`StructuresDict`); None:
    #: read ``mesh_filename`` with meshio.
    loader: Callable[[int], Any] | None = None

    def _read_mesh(self) -> Any:
        from atlasmith.formats import load_mesh_file

        filename = self.data.get("mesh_filename")
        if filename is None:
            warnings.warn(f"No mesh filename for region {self.data['acronym']}", stacklevel=3)
            return None
        if self.loader is not None:
            return self.loader(int(self.data["id"]))
        return load_mesh_file(filename, self.data["acronym"])


def structure_id(tree: StructureTree, key: Any) -> int:
    """BrainGlobe's structure key rule: anything ``int()`` accepts is an id, else an acronym."""
    try:
        sid = int(key)
    except ValueError:
        return tree[key].id if isinstance(key, str) else _not_found(key)
    if sid not in tree:
        _not_found(key)
    return sid


def _not_found(key: Any) -> int:
    raise StructureNotFoundError(
        f"no structure {key!r} in this atlas: use an id (int) or an acronym (str) listed in "
        "atlas.lookup_df."
    )


class StructuresDict(Mapping[int, StructureEntry]):
    """Structures by id or acronym (BrainGlobe's ``StructuresDict``); entries built on demand.

    Keys (and iteration) are ids. ``structures[k]`` accepts an id (``997``, ``997.0``,
    ``"997"``, ``np.uint32(997)``) or an acronym; unknown -> StructureNotFoundError (a
    KeyError), ``None`` -> TypeError, as in BrainGlobe.
    """

    def __init__(
        self,
        structures_list: list[dict[str, Any]],
        tree: StructureTree | Callable[[], StructureTree],
        mesh_path: Callable[[int], Path],
        load_mesh: Callable[[int], Any] | None = None,
    ) -> None:
        self._list = structures_list
        self._tree_source = tree
        self._mesh_path = mesh_path
        self._load_mesh = load_mesh
        self._entries: dict[int, StructureEntry] = {}

    @cached_property
    def _tree(self) -> StructureTree:
        source = self._tree_source
        return source if isinstance(source, StructureTree) else source()

    def __getitem__(self, key: Any) -> StructureEntry:
        sid = structure_id(self._tree, key)
        entry = self._entries.get(sid)
        if entry is None:
            raw = self._list[self._tree.index(sid)]
            own = self._mesh_path(sid)
            mesh_filename = raw.get("mesh_filename", own)
            entry = StructureEntry(**{**raw, "mesh_filename": mesh_filename}, mesh=None)
            if mesh_filename == own:  # the atlas's own mesh: read by its format
                entry.loader = self._load_mesh
            self._entries[sid] = entry
        return entry

    def __iter__(self) -> Iterator[int]:
        return iter(self._tree.ids.tolist())

    def __len__(self) -> int:
        return len(self._tree)

    def __contains__(self, key: object) -> bool:
        return key in self._tree

    @property
    def data(self) -> dict[int, StructureEntry]:
        """Every entry, by id."""
        return {sid: self[sid] for sid in self}

    @property
    def acronym_to_id_map(self) -> dict[str, int]:
        """Acronym -> id."""
        return {s.acronym: s.id for s in self._tree}

    @cached_property
    def tree(self) -> Tree:
        """The hierarchy as a treelib Tree (BrainGlobe's)."""
        return self._tree.to_treelib()

    def __repr__(self) -> str:
        return str(self.tree.show(stdout=False))


class AdditionalRefDict(UserDict[str, Any]):
    """Additional reference stacks by name, memory-mapped on first access.

    As in BrainGlobe, an unknown name warns and returns None.
    """

    def __init__(
        self,
        references_list: Sequence[str],
        data_path: Path,
        read: Callable[[str], npt.NDArray[Any]],
    ) -> None:
        super().__init__()
        self.references_list = list(references_list)
        self.data_path = Path(data_path)
        self._read = read
        for name in self.references_list:
            self.data[name] = None

    def __getitem__(self, ref_name: str) -> Any:
        if ref_name not in self.references_list:
            warnings.warn(
                f"No reference named {ref_name} (available: {self.references_list})",
                stacklevel=2,
            )
            return None
        if self.data[ref_name] is None:
            self.data[ref_name] = self._read(ref_name)
        return self.data[ref_name]
