"""The structure hierarchy: validated once from ``structures.json``, then queried in O(1).

:class:`StructureTree` is built in O(N) from BrainGlobe's structure list and enforces the tree
rules (each broken rule raises its own :class:`~atlasmith.errors.HierarchyError`):

1. every entry has exactly BrainGlobe's five keys with the right types;
2. no structure has id 0 (0 means "no structure" in annotations), ids fit uint32;
3. ids are unique; 4. acronyms are unique;
5. ``rgb_triplet`` is three ints in 0..255;
6. every ``structure_id_path`` ends at the structure's own id;
7. exactly one root (the one structure whose path has length 1);
8. every path starts at the root; 9. every parent (``path[-2]``) exists;
10. every path is its parent's path plus its own id.

For vectorised queries structures get a *compact index*: ``1 + position in the list``, with 0
for "no structure". Label volumes (ids reach 614,454,277 in Allen's atlas) are mapped to
compact indices with :meth:`StructureTree.compact`, then any per-structure table (members of a
subtree, ancestor at a level, colours...) is applied with one gather.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from atlasmith._labels import LabelMap
from atlasmith.errors import HierarchyError, StructureNotFoundError

if TYPE_CHECKING:  # pragma: no cover
    from treelib.tree import Tree

__all__ = ["Structure", "StructureTree"]

_KEYS = ("acronym", "id", "name", "structure_id_path", "rgb_triplet")
_UINT32_MAX = 2**32 - 1


@dataclass(frozen=True)
class Structure:
    """One brain structure (an entry of ``structures.json``).

    Parameters
    ----------
    acronym, name : str
        Short and full name.
    id : int
        The structure's label value in the annotation.
    structure_id_path : tuple of int
        Ids from the root to this structure, inclusive.
    rgb_triplet : tuple of 3 int
        Display colour.
    """

    acronym: str
    id: int
    name: str
    structure_id_path: tuple[int, ...]
    rgb_triplet: tuple[int, int, int]

    @property
    def parent_id(self) -> int | None:
        """Id of the parent structure, None for the root."""
        path = self.structure_id_path
        return path[-2] if len(path) > 1 else None

    def to_dict(self) -> dict[str, Any]:
        """BrainGlobe's five keys, with plain ints and lists (JSON-ready)."""
        return {
            "acronym": self.acronym,
            "id": self.id,
            "name": self.name,
            "structure_id_path": list(self.structure_id_path),
            "rgb_triplet": list(self.rgb_triplet),
        }


def _where(i: int, entry: Mapping[str, Any] | None = None) -> str:
    label = ""
    if entry is not None and isinstance(entry.get("acronym"), str):
        label = f" ({entry['acronym']!r}, id {entry.get('id')!r})"
    return f"structure #{i}{label}"


def _summarise(items: Sequence[str], shown: int = 5) -> str:
    """The first ``shown`` items, then how many more: an error stays a few lines long."""
    head = ", ".join(items[:shown])
    rest = len(items) - shown
    return f"{head} and {rest} more ({len(items)} in all)" if rest > 0 else head


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def _all_ints(values: list[Any] | tuple[Any, ...]) -> bool:
    """Every value is an int (numpy ints too, bools not); fast for plain ints."""
    return set(map(type, values)) <= {int} or all(_is_int(v) for v in values)


def _parse_entry(i: int, entry: Any) -> Structure:
    """Check one entry's keys and types (rules 1, 2, 5, 6) and build its Structure."""
    if not isinstance(entry, Mapping):
        raise HierarchyError(f"{_where(i)}: expected a mapping, got {type(entry).__name__}.")
    missing = [k for k in _KEYS if k not in entry]
    if missing:
        raise HierarchyError(
            f"{_where(i, entry)} is missing {missing}: each structure needs exactly {list(_KEYS)}."
        )
    sid, path, rgb = entry["id"], entry["structure_id_path"], entry["rgb_triplet"]
    for key in ("acronym", "name"):
        if not isinstance(entry[key], str) or not entry[key]:
            raise HierarchyError(
                f"{_where(i, entry)}: {key} must be a non-empty string, got {entry[key]!r}."
            )
    if not _is_int(sid):
        raise HierarchyError(f"{_where(i, entry)}: id must be an int, got {sid!r}.")
    if sid == 0:
        raise HierarchyError(
            f"{_where(i, entry)} has id 0, which annotations use for 'no structure'. Give it "
            "another id."
        )
    if not 0 < sid <= _UINT32_MAX:
        raise HierarchyError(
            f"{_where(i, entry)}: id must be in 1..{_UINT32_MAX} (uint32 labels), got {sid}."
        )
    if not isinstance(path, list | tuple) or not path or not _all_ints(path):
        raise HierarchyError(
            f"{_where(i, entry)}: structure_id_path must be a non-empty list of ids, got {path!r}."
        )
    if path[-1] != sid:
        raise HierarchyError(
            f"{_where(i, entry)}: structure_id_path {list(path)} must end with the structure's "
            f"own id {sid}."
        )
    rgb_ok = isinstance(rgb, list | tuple) and len(rgb) == 3
    if not rgb_ok or not _all_ints(rgb) or not 0 <= min(rgb) <= max(rgb) <= 255:
        raise HierarchyError(
            f"{_where(i, entry)}: rgb_triplet must be three ints in 0..255, got {rgb!r}."
        )
    return Structure(
        acronym=entry["acronym"],
        id=int(sid),
        name=entry["name"],
        structure_id_path=tuple(map(int, path)),
        rgb_triplet=(int(rgb[0]), int(rgb[1]), int(rgb[2])),
    )


def _check_unique(structures: list[Structure]) -> tuple[dict[int, int], dict[str, int]]:
    """Rules 3 and 4; return id -> index and acronym -> index."""
    by_id: dict[int, int] = {}
    by_acronym: dict[str, int] = {}
    for i, s in enumerate(structures):
        if s.id in by_id:
            raise HierarchyError(
                f"id {s.id} is used twice (structures #{by_id[s.id]} and #{i}, acronym "
                f"{s.acronym!r}): ids must be unique. Give each structure its own id."
            )
        if s.acronym in by_acronym:
            raise HierarchyError(
                f"acronym {s.acronym!r} is used twice (structures #{by_acronym[s.acronym]} and "
                f"#{i}): acronyms must be unique, as they are lookup keys."
            )
        by_id[s.id] = i
        by_acronym[s.acronym] = i
    return by_id, by_acronym


def _find_root(structures: list[Structure]) -> int:
    """Rule 7: exactly one structure whose path has length 1."""
    roots = [i for i, s in enumerate(structures) if len(s.structure_id_path) == 1]
    if not roots:
        raise HierarchyError(
            "the structure list has no root: exactly one structure must have a "
            "structure_id_path of length 1 (e.g. [997] for Allen's 'root')."
        )
    if len(roots) > 1:
        found = _summarise([repr(structures[i].acronym) for i in roots])
        raise HierarchyError(
            f"the structure list has {len(roots)} roots ({found}): exactly one structure may "
            "have a structure_id_path of length 1; the others need a path from that root."
        )
    return roots[0]


def _check_paths(structures: list[Structure], by_id: dict[int, int], root_id: int) -> None:
    """Rules 8, 9 and 10."""
    orphans = [s for s in structures if s.parent_id is not None and s.parent_id not in by_id]
    if len(orphans) > 1:  # e.g. a parent left out: all its children are named, in summary
        listed = _summarise([f"{s.acronym!r} (parent id {s.parent_id})" for s in orphans])
        raise HierarchyError(
            f"{len(orphans)} structures have a parent that is not in the structure list: "
            f"{listed}. Add the parents or fix their structure_id_path."
        )
    for i, s in enumerate(structures):
        path = s.structure_id_path
        if path[0] != root_id:
            raise HierarchyError(
                f"{_where(i, s.to_dict())}: structure_id_path {list(path)} must start at the "
                f"root id {root_id}."
            )
        parent = s.parent_id
        if parent is None:
            continue
        if parent not in by_id:
            raise HierarchyError(
                f"{_where(i, s.to_dict())}: its parent id {parent} (from structure_id_path "
                f"{list(path)}) is not in the structure list. Add the parent or fix the path."
            )
        parent_path = structures[by_id[parent]].structure_id_path
        if path[:-1] != parent_path:
            raise HierarchyError(
                f"{_where(i, s.to_dict())}: structure_id_path {list(path)} is not its parent's "
                f"path {list(parent_path)} followed by its own id {s.id}."
            )


class StructureTree:
    """A validated structure hierarchy with O(1) lookups and tables for vectorised queries.

    Build it with :meth:`from_list`. Structures keep their input order; ``structures[i]`` has
    compact index ``i + 1``.

    Examples
    --------
    >>> tree = StructureTree.from_list([
    ...     {"acronym": "root", "id": 997, "name": "root", "structure_id_path": [997],
    ...      "rgb_triplet": [255, 255, 255]},
    ...     {"acronym": "grey", "id": 8, "name": "Grey", "structure_id_path": [997, 8],
    ...      "rgb_triplet": [191, 218, 227]}])
    >>> tree.ancestors(8), tree.descendants(997), tree["grey"].id
    ([997], [8], 8)
    >>> tree.compact(np.array([0, 8, 997, 5])).tolist()
    [0, 2, 1, 0]
    """

    def __init__(
        self,
        structures: tuple[Structure, ...],
        by_id: dict[int, int],
        by_acronym: dict[str, int],
        root_index: int,
    ) -> None:
        """Use :meth:`from_list`; this trusts its (already validated) arguments."""
        self.structures = structures
        self._by_id = by_id
        self._by_acronym = by_acronym
        self.root = structures[root_index]
        self.ids = np.fromiter((s.id for s in structures), dtype=np.int64, count=len(structures))
        self._children: list[list[int]] = [[] for _ in structures]
        for s in structures:
            if s.parent_id is not None:
                self._children[by_id[s.parent_id]].append(s.id)

    @classmethod
    def from_list(cls, structures: Iterable[Mapping[str, Any]]) -> StructureTree:
        """Validate a BrainGlobe structure list (the tree rules above) and build the tree.

        Raises
        ------
        HierarchyError
            Naming the first broken rule, the structure and what to change.
        """
        if isinstance(structures, str | bytes | Mapping):
            raise HierarchyError(
                f"expected a list of structure mappings, got {type(structures).__name__}."
            )
        parsed = [_parse_entry(i, entry) for i, entry in enumerate(structures)]
        if not parsed:
            raise HierarchyError("the structure list is empty: it needs at least a root.")
        by_id, by_acronym = _check_unique(parsed)
        root_index = _find_root(parsed)
        _check_paths(parsed, by_id, parsed[root_index].id)
        return cls(tuple(parsed), by_id, by_acronym, root_index)

    # --- mapping-like access -------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.structures)

    def __iter__(self) -> Iterator[Structure]:
        return iter(self.structures)

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            return key in self._by_acronym
        return _is_int(key) and int(key) in self._by_id  # type: ignore[call-overload]

    def __getitem__(self, key: int | str) -> Structure:
        """The structure with this id (int) or acronym (str)."""
        return self.structures[self.index(key)]

    def __repr__(self) -> str:
        return f"StructureTree({len(self)} structures, root {self.root.acronym!r} ({self.root.id}))"

    def index(self, key: int | str) -> int:
        """Position in ``structures`` of the structure with this id or acronym."""
        found = self._by_acronym.get(key) if isinstance(key, str) else None
        if found is None and _is_int(key):
            found = self._by_id.get(int(key))
        if found is None:
            raise StructureNotFoundError(
                f"no structure with {'acronym' if isinstance(key, str) else 'id'} {key!r} in "
                f"this hierarchy ({len(self)} structures, root {self.root.acronym!r}). Check "
                "the spelling, or look it up in the atlas's lookup_df."
            )
        return found

    # --- relations -----------------------------------------------------------------------

    def parent(self, sid: int | str) -> int | None:
        """Id of the parent, None for the root."""
        return self[sid].parent_id

    def children(self, sid: int | str) -> list[int]:
        """Ids of the direct children, in input order."""
        return list(self._children[self.index(sid)])

    def ancestors(self, sid: int | str) -> list[int]:
        """Ids of the ancestors, root first, the structure itself excluded."""
        return list(self[sid].structure_id_path[:-1])

    def descendants(self, sid: int | str) -> list[int]:
        """Ids of every descendant, in input order, the structure itself excluded."""
        found: list[int] = []
        stack = list(self._children[self.index(sid)])
        while stack:
            child = stack.pop()
            found.append(self._by_id[child])
            stack.extend(self._children[self._by_id[child]])
        return [self.structures[i].id for i in sorted(found)]

    def depth(self, sid: int | str) -> int:
        """Hierarchy level: 0 for the root."""
        return len(self[sid].structure_id_path) - 1

    @cached_property
    def depths(self) -> npt.NDArray[np.int64]:
        """Depth per compact index (length N + 1; entry 0, "no structure", is -1)."""
        out = np.empty(len(self) + 1, dtype=np.int64)
        out[0] = -1
        out[1:] = [len(s.structure_id_path) - 1 for s in self.structures]
        return out

    @property
    def max_depth(self) -> int:
        """Deepest hierarchy level."""
        return int(self.depths.max())

    # --- tables for vectorised queries ---------------------------------------------------

    @cached_property
    def parent_compact(self) -> npt.NDArray[np.int64]:
        """Compact index of each compact index's parent (root and 0 map to themselves)."""
        out = np.arange(len(self) + 1, dtype=np.int64)
        for i, s in enumerate(self.structures):
            if s.parent_id is not None:
                out[i + 1] = self._by_id[s.parent_id] + 1
        return out

    @cached_property
    def ancestor_table(self) -> npt.NDArray[np.int64]:
        """Ancestor at each level, as compact indices: shape (max_depth + 1, N + 1).

        ``ancestor_table[k, c]`` is the compact index of the ancestor at level ``k`` of the
        structure with compact index ``c``, or ``c`` itself when its depth is ``<= k`` (so a
        query deeper than a structure stays on it). Column 0 ("no structure") is 0 throughout.
        """
        depths, parent = self.depths, self.parent_compact
        table = np.empty((self.max_depth + 1, len(self) + 1), dtype=np.int64)
        current = np.arange(len(self) + 1, dtype=np.int64)
        for level in range(self.max_depth, -1, -1):
            current = np.where(depths[current] > level, parent[current], current)
            table[level] = current
        return table

    def member_lut(self, sid: int | str) -> npt.NDArray[np.bool_]:
        """Boolean table over compact indices: True for ``sid`` and each of its descendants."""
        index = self.index(sid)
        level = len(self.structures[index].structure_id_path) - 1
        lut: npt.NDArray[np.bool_] = self.ancestor_table[level] == index + 1
        lut[0] = False
        return lut

    @cached_property
    def _label_map(self) -> LabelMap:
        return LabelMap(self.ids)

    def compact(self, labels: npt.ArrayLike) -> npt.NDArray[np.unsignedinteger[Any]]:
        """Map label values to compact indices (0 for 0 and for labels of no structure).

        Works in one pass, in blocks, for any shape; returns uint16 (or uint32 for more than
        65,534 structures) of the same shape.
        """
        lm = self._label_map
        return lm.map(np.asarray(labels), np.arange(len(self) + 1, dtype=lm.dtype))

    def map_labels(
        self, labels: npt.ArrayLike, values: npt.ArrayLike, out: npt.NDArray[Any] | None = None
    ) -> npt.NDArray[Any]:
        """``values[compact(label)]`` for each label, in one blocked pass (no compact copy).

        ``values`` has one entry per compact index (length N + 1; entry 0 is used for 0 and
        for labels of no structure), e.g. a :meth:`member_lut` or a row of
        :attr:`ancestor_table`. ``out``: where to write the result (a C-contiguous array of
        the labels' shape and the values' dtype, e.g. rows of a larger result).
        """
        table = np.asarray(values)
        if table.shape != (len(self) + 1,):
            raise ValueError(
                f"values must have one entry per compact index ({len(self) + 1}), got shape "
                f"{table.shape}."
            )
        return self._label_map.map(np.asarray(labels), table, out)

    def present(self, labels: Iterable[int]) -> tuple[StructureTree, list[Structure]]:
        """Keep the structures with voxels (given ``labels``) in them or in a descendant.

        Returns the kept tree (input order) and the removed structures.
        """
        found = self.compact(np.fromiter((int(x) for x in labels), dtype=np.int64))
        keep = np.zeros(len(self) + 1, dtype=bool)
        keep[self.ancestor_table[:, np.unique(found)].ravel()] = True
        kept = [s for i, s in enumerate(self.structures) if keep[i + 1]]
        removed = [s for i, s in enumerate(self.structures) if not keep[i + 1]]
        if not kept:
            raise HierarchyError(
                "none of the structures has voxels in the annotation: nothing would be kept."
            )
        return StructureTree.from_list([s.to_dict() for s in kept]), removed

    def to_list(self) -> list[dict[str, Any]]:
        """BrainGlobe's structure list (JSON-ready), in input order."""
        return [s.to_dict() for s in self.structures]

    def preorder(self) -> list[int]:
        """Ids in pre-order depth-first order, children in input order (BrainGlobe's order)."""
        order: list[int] = []
        stack = [self.root.id]
        while stack:
            sid = stack.pop()
            order.append(sid)
            stack.extend(reversed(self._children[self._by_id[sid]]))
        return order

    def postorder(self) -> list[int]:
        """Ids in post-order depth-first order (each structure after its descendants,
        children in input order): BrainGlobe 3's order of the 4-D structure masks."""
        order: list[int] = []
        stack: list[tuple[int, bool]] = [(self.root.id, False)]
        while stack:
            sid, expanded = stack.pop()
            if expanded:
                order.append(sid)
                continue
            stack.append((sid, True))
            stack.extend((c, False) for c in reversed(self._children[self._by_id[sid]]))
        return order

    def to_treelib(self) -> Tree:
        """A treelib Tree as BrainGlobe builds it: tags ``"acronym (id)"``, identifiers = ids."""
        from treelib.tree import Tree

        tree = Tree()
        for sid in self.preorder():
            s = self[sid]
            tree.create_node(
                tag=f"{s.acronym} ({sid})",
                identifier=sid,  # type: ignore[arg-type]  # BrainGlobe uses int identifiers
                parent=s.parent_id,  # type: ignore[arg-type]
            )
        return tree
