"""BrainGlobe's dict-like views of an atlas: ``atlas.structures`` (:class:`StructuresDict` of
:class:`StructureEntry`) and ``atlas.additional_references`` (:class:`AdditionalRefDict`).

They behave as BrainGlobe 2.3.1's: entries are built on demand, meshes and stacks are read on
first access, unknown keys raise the same builtin exceptions, and ``atlas.structures`` may be
changed in memory (items set, deleted, popped...; an entry's values edited). Changes stay in
that object: they are never written to disk, and other objects reading the same atlas do not
see them. The ``*_by_entries`` functions answer hierarchy queries from the entries as they are
now, as BrainGlobe does; :class:`atlasmith.Atlas` uses them once anything was changed
(:meth:`StructuresDict.pristine` says when), and its lookup tables otherwise.
"""

from __future__ import annotations

import warnings
from collections import UserDict
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from atlasmith.errors import StructureNotFoundError
from atlasmith.hierarchy import Structure, StructureTree
from atlasmith.statistics import row_blocks

if TYPE_CHECKING:  # pragma: no cover
    from treelib.tree import Tree

__all__ = [
    "AdditionalRefDict",
    "StructureEntry",
    "StructuresDict",
    "ancestors_by_entries",
    "descendants_by_entries",
    "mask_by_entries",
    "structure_id",
]


class StructureEntry(UserDict[str, Any]):
    """One structure as a dict (BrainGlobe's ``Structure``): ``acronym``, ``id``, ``name``,
    ``structure_id_path``, ``rgb_triplet``, ``mesh_filename``, and ``mesh``, read on first use.
    """

    #: Reads one of the atlas's own meshes by structure id (set by :class:`StructuresDict`);
    #: used while ``mesh_filename`` is still the path of ``own_mesh``.
    loader: Callable[[int], Any] | None = None
    #: (id, path) of the atlas's own mesh this entry was made with.
    own_mesh: tuple[int, Path] | None = None

    def __getitem__(self, key: str) -> Any:
        if key == "mesh" and self.data.get("mesh") is None:
            self.data["mesh"] = self._read_mesh()
        return self.data[key]

    def _read_mesh(self) -> Any:
        from atlasmith.formats import load_mesh_file

        filename = self.data.get("mesh_filename")
        if filename is None:
            warnings.warn(f"No mesh filename for region {self.data['acronym']}", stacklevel=3)
            return None
        own = self.own_mesh
        # an edited mesh_filename is read as given, as BrainGlobe reads it (an edited id is not
        # a reason to read another structure's mesh)
        if self.loader is not None and own is not None and filename == own[1]:
            return self.loader(own[0])
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


def _not_found(key: Any) -> Any:
    kind = "with acronym " if isinstance(key, str) else ""
    raise StructureNotFoundError(
        f"no structure {kind}{key!r} in this atlas: use an id (int) or an acronym (str) listed "
        "in atlas.lookup_df."
    )


def _unchanged(entry: StructureEntry, stored: Structure) -> bool:
    """Whether an entry still has the id, acronym and path the atlas's files give it."""
    data = entry.data
    try:
        path = data.get("structure_id_path", ())
        return bool(
            data.get("id") == stored.id
            and data.get("acronym") == stored.acronym
            and tuple(path) == stored.structure_id_path
        )
    except (TypeError, ValueError):  # a value edited into something that does not compare
        return False


class StructuresDict(MutableMapping[int, StructureEntry]):
    """Structures by id or acronym (BrainGlobe's ``StructuresDict``); entries built on demand.

    Keys (and iteration) are ids. ``structures[k]`` accepts an id (``997``, ``997.0``,
    ``"997"``, ``np.uint32(997)``) or an acronym (through :attr:`acronym_to_id_map`); unknown
    -> StructureNotFoundError (a KeyError), ``None`` -> TypeError, as in BrainGlobe.
    ``k in structures`` is True for ids and, unlike BrainGlobe, for acronyms too.

    As BrainGlobe's, it is a mutable mapping: ``structures[k] = v``, ``del``, ``pop``,
    ``popitem``, ``update``, ``setdefault``, ``clear`` and ``copy`` work on this object's own
    dict (keys stored as given, as BrainGlobe stores them), and entries may be edited in place.
    Nothing is written back to the atlas's files.
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
        # None until the mapping is first reached as a dict (``data``, a change, a copy);
        # from then on it is the mapping, as BrainGlobe's ``data`` is
        self._data: dict[Any, Any] | None = None
        self._stored_acronyms: dict[str, int] = {}

    @cached_property
    def _tree(self) -> StructureTree:
        source = self._tree_source
        return source if isinstance(source, StructureTree) else source()

    @cached_property
    def acronym_to_id_map(self) -> dict[str, int]:
        """Acronym -> id, the map acronym keys go through (a plain dict, as BrainGlobe's)."""
        self._stored_acronyms = {s.acronym: s.id for s in self._tree}
        return dict(self._stored_acronyms)

    # --- reading -----------------------------------------------------------------------------

    def __getitem__(self, key: Any) -> StructureEntry:
        try:
            sid = int(key)
        except ValueError:  # not a number: an acronym (TypeError, e.g. for None, propagates)
            if key not in self.acronym_to_id_map:
                _not_found(key)
            sid = int(self.acronym_to_id_map[key])
        if self._data is not None:
            if sid not in self._data:
                _not_found(key)
            entry: StructureEntry = self._data[sid]
            return entry
        found = self._entries.get(sid)
        return found if found is not None else self._new_entry(sid, key)

    def _new_entry(self, sid: int, key: Any) -> StructureEntry:
        if sid not in self._tree:
            _not_found(key)
        raw = self._list[self._tree.index(sid)]
        own = self._mesh_path(sid)
        # lists copied: editing an entry must not reach the structure list other readers share
        values = {k: list(v) if isinstance(v, list) else v for k, v in raw.items()}
        mesh_filename = values.setdefault("mesh_filename", own)
        entry = StructureEntry(**values, mesh=None)
        if mesh_filename == own:  # the atlas's own mesh: read by its format
            entry.loader, entry.own_mesh = self._load_mesh, (sid, own)
        self._entries[sid] = entry
        return entry

    def __iter__(self) -> Iterator[int]:
        return iter(self._data if self._data is not None else self._tree.ids.tolist())

    def __len__(self) -> int:
        return len(self._data) if self._data is not None else len(self._tree)

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):  # atlasmith's extension: acronyms are members too
            key = self.acronym_to_id_map.get(key, key)
        return key in (self._data if self._data is not None else self._stored_ids)

    @cached_property
    def _stored_ids(self) -> frozenset[int]:
        return frozenset(self._tree.ids.tolist())

    @property
    def data(self) -> dict[Any, Any]:
        """The mapping as a dict, by id: BrainGlobe's ``data``, live (changing it changes this
        mapping). Builds every entry on first use."""
        if self._data is None:
            self._data = {sid: self[sid] for sid in self._tree.ids.tolist()}
        return self._data

    # --- changing (BrainGlobe's StructuresDict is a UserDict) -----------------------------

    def __setitem__(self, key: Any, value: Any) -> None:
        self.data[key] = value

    def __delitem__(self, key: Any) -> None:
        del self.data[key]  # the key as given, as BrainGlobe deletes it (no acronym lookup)

    def copy(self) -> StructuresDict:
        """A copy with its own mapping holding the same entry objects (as BrainGlobe's)."""
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone._data = dict(self.data)
        clone._entries = dict(self._entries)
        return clone

    __copy__ = copy

    def pristine(self) -> bool:
        """Whether the mapping still holds the atlas's own entries, with the ids, acronyms and
        paths its files give them (then the stored hierarchy answers for it)."""
        if self._data is not None and not self._same_members():
            return False
        if "acronym_to_id_map" in self.__dict__ and (
            self.acronym_to_id_map != self._stored_acronyms
        ):
            return False
        return all(_unchanged(e, self._tree[sid]) for sid, e in self._entries.items())

    def _same_members(self) -> bool:
        data = self._data or {}
        return len(data) == len(self._tree) and all(
            data.get(sid) is self._entries.get(sid) for sid in self._tree.ids.tolist()
        )

    # --- the stored hierarchy ------------------------------------------------------------

    @cached_property
    def tree(self) -> Tree:
        """The hierarchy as a treelib Tree (BrainGlobe's), as stored: edits do not change it."""
        return self._tree.to_treelib()

    def __repr__(self) -> str:
        return str(self.tree.show(stdout=False))


# --- hierarchy queries on edited entries (BrainGlobe 2.3.1's semantics) --------------------


def ancestors_by_entries(structures: Mapping[Any, Any], structure: Any) -> list[Any]:
    """Acronyms of the ids on the structure's ``structure_id_path``, itself excluded, each
    looked up in ``structures`` as it is now."""
    path = structures[structure]["structure_id_path"]
    return [structures[a]["acronym"] for a in path[:-1]]


def descendants_by_entries(structures: Mapping[Any, Any], structure: Any) -> list[Any]:
    """Acronyms of every entry whose ancestors (:func:`ancestors_by_entries`) include the
    structure's acronym, in mapping order. One pass over the entries (not over voxels)."""
    acronym = structures[structure]["acronym"]
    return [
        structures[key]["acronym"]
        for key in list(structures)
        if acronym in ancestors_by_entries(structures, key)
    ]


def mask_by_entries(
    structures: Mapping[Any, Any],
    structure: Any,
    annotation: npt.NDArray[Any],
    shape: tuple[int, ...],
) -> npt.NDArray[Any]:
    """BrainGlobe 2.3.1's structure mask from the entries as they are now: the entry's ``id``
    on the voxels labelled with its id or its descendants' ids, 0 elsewhere (a ``shape``
    array of the annotation's dtype). One vectorised pass over the annotation, a block of rows
    at a time (no full-size temporary)."""
    value = structures[structure]["id"]
    labels = [structures[a]["id"] for a in descendants_by_entries(structures, structure)]
    mask = np.zeros(shape, annotation.dtype)
    for start, block in row_blocks(annotation):
        mask[start : start + len(block)][np.isin(block, [*labels, value])] = value
    return mask


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
