"""``Atlas``: a local BrainGlobe-format atlas folder, memory-mapped, with BrainGlobe's query API.

``Atlas(path)`` reads ``metadata.json`` and ``structures.json`` and nothing else: the stacks are
memory-mapped on first use (uncompressed contiguous TIFFs, as atlasmith and BrainGlobe write
them; other TIFFs are read whole on first use), meshes are read when asked for.

It offers every member of BrainGlobe 2.3.1's ``core.Atlas`` with the same names, signatures and
results, so that code moves by changing the import, plus vectorised lookups for N points, fast
masks and per-structure statistics. The deliberate differences (CONTRACTS.md):

1. negative or out-of-range voxel coordinates raise :class:`~atlasmith.errors.CoordinateError`
   (an ``IndexError``); BrainGlobe wraps negative indices around;
2. ``hemisphere_from_coords(..., as_string=True)`` at a voxel of value 0 returns ``"outside"``;
   BrainGlobe returns ``"right"`` (with numpy 1; with numpy 2 its ``uint8(0) - 1`` wraps and
   it raises IndexError).

``atlas.structures`` may be changed in memory as BrainGlobe's (items set, deleted, popped; an
entry's ``id``, ``acronym`` or ``structure_id_path`` edited), never on disk nor for other
readers. Then ``get_structure_mask`` (v1.2 atlases), ``get_structure_ancestors``,
``get_structure_descendants``, single-point lookups and meshes answer from the entries as they
are, as 2.3.1 does; ``get_structures_at_hierarchy_level``, lookups of N points,
``structure_statistics``, the masks of BrainGlobe 3 atlases, ``tree``, ``hierarchy``,
``lookup_df`` and ``structures_list`` keep the stored hierarchy (2.3.1 keeps it for its tree,
``hierarchy``, ``lookup_df`` and ``structures_list`` too).
"""

from __future__ import annotations

import warnings
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import numpy as np
import numpy.typing as npt

from atlasmith._bg_dicts import (
    AdditionalRefDict,
    StructuresDict,
    ancestors_by_entries,
    descendants_by_entries,
    mask_by_entries,
    structure_id,
)
from atlasmith._pages import gather
from atlasmith._points import as_voxels, flat_indices
from atlasmith._types import PathLike
from atlasmith.errors import (
    HierarchyLevelError,
    StructureNotFoundError,
)
from atlasmith.formats import (
    PAGE_BYTES,
    AtlasFiles,
    V1Folder,
    V3Atlas,
    ZarrArray,
    map_pages,
    open_atlas_files,
    symmetric_hemispheres,
)
from atlasmith.hierarchy import StructureTree
from atlasmith.orientation import ATLAS_ORIENTATION

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from brainglobe_space import AnatomicalSpace
    from treelib.tree import Tree

__all__ = ["Atlas"]

_FRONTAL_AXIS = 2  # the left-right axis of "asr"
# Points from which a memory-mapped stack is read a block at a time (atlasmith._pages.gather):
# fewer fault in a few pages each, and grouping them by block would cost more than it saves.
_GATHER_POINTS = 1 << 14


class Atlas:
    """A BrainGlobe-format atlas (a v1.x folder, made by atlasmith or by BrainGlobe).

    Opening reads the two JSON files only; ``reference``, ``annotation``, ``hemispheres`` and
    additional references are memory-mapped on first access (read-only arrays).

    Parameters
    ----------
    path : str, Path or AtlasFiles
        The atlas folder, e.g. ``~/.brainglobe/allen_mouse_25um_v1.2`` (read with
        :func:`atlasmith.formats.open_atlas_files`).

    Raises
    ------
    MissingFileError
        When ``metadata.json`` or ``structures.json`` is missing (a FileNotFoundError).
    MetadataError, AtlasFormatError
        When they are invalid (ValueErrors). The structure tree is checked on first use
        (HierarchyError), so that opening stays at a few milliseconds.

    Examples
    --------
    >>> atlas = Atlas(folder)  # doctest: +SKIP
    >>> atlas.structure_from_coords((66, 40, 57), as_acronym=True)  # doctest: +SKIP
    'IMD'
    >>> atlas.structure_from_coords(points_um, microns=True)  # (N, 3) -> N ids  # doctest: +SKIP
    """

    left_hemisphere_value = 1
    right_hemisphere_value = 2

    def __init__(self, path: PathLike | AtlasFiles) -> None:
        self.files = open_atlas_files(path)
        self.root_dir = self.files.path
        self.metadata: dict[str, Any] = self.files.metadata_dict
        self.atlas_metadata = self.files.metadata
        self._raw_structures = self.files.structures_list
        self.structures = StructuresDict(
            self._raw_structures, lambda: self.tree, self.files.mesh_path, self._mesh_loader()
        )
        self._own_structures = self.structures
        if "additional_references" not in self.metadata:
            warnings.warn(
                "This atlas seems to be outdated as no additional_references list is found in "
                "metadata!",
                stacklevel=2,
            )
        self.additional_references = AdditionalRefDict(
            self.atlas_metadata.additional_references, self.root_dir, self.files.stack
        )

    def _mesh_loader(self) -> Any:
        """How meshes are read: meshio on the file for v1.2 (as BrainGlobe 2.3.1; through the
        pinned folder when it is pinned), the format's own decoder otherwise (Draco for
        BrainGlobe 3)."""
        files = self.files
        if not isinstance(files, V1Folder):
            return files.load_mesh
        if files.source == files.path:
            return None
        return lambda sid: files.load_mesh(sid, label=self.tree[sid].acronym)

    def _follows_entries(self) -> bool:
        """Whether hierarchy queries must read ``structures`` as it is now (the user changed
        it or an entry in it, as BrainGlobe allows) instead of the stored hierarchy."""
        return not (self.structures is self._own_structures and self.structures.pristine())

    def close(self) -> None:
        """Stop reading this atlas: an update may then delete the version it opened (until
        then, an update moves that version aside and this object keeps reading it)."""
        self.files.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def format(self) -> str:
        """The atlas's storage format: ``"brainglobe-v1"`` or ``"brainglobe-v3"``."""
        return self.files.format_name

    # --- description ---------------------------------------------------------------------

    @cached_property
    def structures_list(self) -> list[dict[str, Any]]:
        """structures.json as read, with each structure's ``mesh_filename`` (a Path) added."""
        for struct in self._raw_structures:
            struct["mesh_filename"] = self.files.mesh_path(struct["id"])
        return self._raw_structures

    @cached_property
    def tree(self) -> StructureTree:
        """The validated hierarchy with lookup tables (atlasmith's StructureTree).

        Built (and checked against the tree rules) on first use, so that opening an atlas and
        looking up label values costs a few milliseconds; a broken structures.json raises
        HierarchyError then.
        """
        return self.files.tree

    @property
    def resolution(self) -> tuple[float, ...]:
        """Voxel size in micrometres, "asr" axis order."""
        return tuple(self.metadata["resolution"])

    @property
    def orientation(self) -> str:
        """Always ``"asr"``."""
        return ATLAS_ORIENTATION

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of every stack."""
        return tuple(self.metadata["shape"])

    @property
    def shape_um(self) -> tuple[float, ...]:
        """Extent in micrometres (shape times resolution, per axis)."""
        return tuple(s * r for s, r in zip(self.shape, self.resolution, strict=True))

    @cached_property
    def space(self) -> AnatomicalSpace:
        """brainglobe-space ``AnatomicalSpace("asr", shape, resolution)``."""
        from brainglobe_space import AnatomicalSpace

        return AnatomicalSpace(ATLAS_ORIENTATION, shape=self.shape, resolution=self.resolution)

    @property
    def hierarchy(self) -> Tree:
        """The hierarchy as a treelib Tree (``print`` shows ``root (997)`` ...)."""
        return self.structures.tree

    @cached_property
    def lookup_df(self) -> pd.DataFrame:
        """DataFrame of acronym, id, name, in structures.json order."""
        import pandas as pd

        return pd.DataFrame(
            {
                "acronym": [s["acronym"] for s in self._raw_structures],
                "id": [s["id"] for s in self._raw_structures],
                "name": [s["name"] for s in self._raw_structures],
            }
        )

    def __repr__(self) -> str:
        meta = self.atlas_metadata
        return f"Atlas({meta.folder_name!r}, path={str(self.root_dir)!r})"

    def __str__(self) -> str:
        meta = self.atlas_metadata
        lines = [
            f"{meta.atlas_name} (version {meta.version}), {meta.species}",
            f"  shape {self.shape} voxels of {self.resolution} um, orientation asr, "
            f"{'symmetric' if meta.symmetric else 'asymmetric'}, {len(self.tree)} structures",
            f"  citation: {meta.citation}",
            f"  link:     {meta.atlas_link}",
            f"  packager: {meta.atlas_packager or 'not recorded'}",
        ]
        if "license" in meta.extra:
            lines.append(f"  license:  {meta.extra['license']}")
        lines.append(f"  folder:   {self.root_dir}")
        return "\n".join(lines)

    # --- stacks ----------------------------------------------------------------------------

    @cached_property
    def reference(self) -> npt.NDArray[Any]:
        """Reference image (memory-mapped, read-only)."""
        return self.files.reference

    @cached_property
    def annotation(self) -> npt.NDArray[Any]:
        """Label image (memory-mapped, read-only); 0 = no structure."""
        return self.files.annotation

    @cached_property
    def hemispheres(self) -> npt.NDArray[Any]:
        """Hemisphere image: 1 left, 2 right (read-only).

        Asymmetric atlases read ``hemispheres.tiff``. Symmetric ones get BrainGlobe's
        synthesised split without allocating a volume (a broadcast view): voxels at index
        ``>= round(n / 2)`` on the left-right axis (Python rounding, so for odd ``n`` the
        middle plane is left when ``n / 2`` rounds down and right when it rounds up) are left.
        """
        if not self.metadata["symmetric"]:
            return self.files.stack("hemispheres")
        return symmetric_hemispheres(self.shape)

    def _values_at(self, stack: Any, flat: npt.NDArray[np.intp]) -> Any:
        if isinstance(stack, ZarrArray):  # a chunked stack: decoded once, or chunk by chunk
            return stack.take(flat)
        if isinstance(stack, np.memmap) and flat.size >= _GATHER_POINTS:
            return gather(stack, flat)  # a block at a time: the stack is never mapped whole
        if flat.size * PAGE_BYTES >= 4 * stack.nbytes:  # many points: map the pages first
            map_pages(stack)
        return stack.reshape(-1).take(flat)

    # --- point queries ---------------------------------------------------------------------

    def structure_from_coords(
        self,
        coords: Any,
        microns: bool = False,
        as_acronym: bool = False,
        hierarchy_lev: int | None = None,
        key_error_string: str = "Outside atlas",
    ) -> Any:
        """The structure at one point, or at each of N points in one vectorised call.

        Parameters
        ----------
        coords : tuple, list or array of 3, or (N, 3) array
            Voxel indices, or micrometres with ``microns=True`` (voxel ``floor(x / res)``).
        microns : bool
            Interpret ``coords`` in micrometres.
        as_acronym : bool
            Return acronyms; ``key_error_string`` where there is no structure.
        hierarchy_lev : int, optional
            Return the ancestor at this level (``structure_id_path[hierarchy_lev]``).
        key_error_string : str
            The acronym reported outside the brain.

        Returns
        -------
        One point: the annotation value (numpy scalar), an id (int) or an acronym (str), as in
        BrainGlobe. N points: an array of N (ids, or str acronyms). For N points, a point
        outside the brain gives 0 (or ``key_error_string``) with ``hierarchy_lev`` too, and a
        structure above ``hierarchy_lev`` gives itself; one point follows BrainGlobe
        (StructureNotFoundError, a KeyError, at label 0; HierarchyLevelError, an IndexError,
        when the path is shorter).

        Raises
        ------
        CoordinateError
            (an IndexError) for a point outside the volume, negative coordinates included:
            BrainGlobe wraps negative indices around (deliberate difference).
        """
        voxels, single = as_voxels(self, coords, microns)
        if single:
            rid = self.annotation[tuple(voxels[0])]
            return self._scalar_structure(rid, as_acronym, hierarchy_lev, key_error_string)
        labels = self._values_at(self.annotation, flat_indices(self, voxels, microns))
        return self._vector_structures(labels, as_acronym, hierarchy_lev, key_error_string)

    def _scalar_structure(
        self, rid: Any, as_acronym: bool, hierarchy_lev: int | None, key_error_string: str
    ) -> Any:
        if hierarchy_lev is not None:
            path = self.structures[rid]["structure_id_path"]
            try:
                rid = path[hierarchy_lev]
            except IndexError as err:
                raise HierarchyLevelError(
                    f"structure {self.structures[rid]['acronym']!r} has path {path}: it has no "
                    f"ancestor at hierarchy level {hierarchy_lev}."
                ) from err
        if not as_acronym:
            return rid
        try:
            return self.structures[rid]["acronym"]
        except KeyError:
            return key_error_string

    def _vector_structures(
        self,
        labels: npt.NDArray[Any],
        as_acronym: bool,
        hierarchy_lev: int | None,
        key_error_string: str,
    ) -> npt.NDArray[Any]:
        tree = self.tree
        if hierarchy_lev is None and not as_acronym:
            return labels
        compact = tree.compact(labels)
        if hierarchy_lev is not None:
            level = _check_level(hierarchy_lev)
            compact = tree.ancestor_table[min(level, tree.max_depth)][compact]
        table = (
            np.array([key_error_string, *(s.acronym for s in tree)])
            if as_acronym
            else np.concatenate([[0], tree.ids])
        )
        result: npt.NDArray[Any] = table[compact]
        return result

    def hemisphere_from_coords(
        self, coords: Any, microns: bool = False, as_string: bool = False
    ) -> Any:
        """The hemisphere at one point, or at each of N points (1 left, 2 right).

        Parameters
        ----------
        coords : tuple, list or array of 3, or (N, 3) array
            Voxel indices, or micrometres with ``microns=True``.
        microns : bool
            Interpret ``coords`` in micrometres.
        as_string : bool
            Return ``"left"``/``"right"``, and ``"outside"`` where the hemisphere value is 0
            (deliberate difference: BrainGlobe 2.3.1 returns ``"right"`` there with numpy 1 and
            raises IndexError with numpy 2).

        Raises
        ------
        CoordinateError
            For a point outside the volume (negative coordinates included).
        """
        voxels, single = as_voxels(self, coords, microns)
        flat = flat_indices(self, voxels, microns)  # checks the bounds
        if self.metadata["symmetric"]:
            values = self.hemispheres[0, 0][voxels[:, _FRONTAL_AXIS]]
        else:
            values = self._values_at(self.hemispheres, flat)
        if as_string:
            names = np.array(["outside", "left", "right"])
            strings = names[np.where(values <= 2, values, 0)]
            return str(strings[0]) if single else strings
        return values[0] if single else values

    # --- structures --------------------------------------------------------------------------

    def _get_from_structure(self, structure: Any, key: str) -> Any:
        """``structures[structure][key]``, or a list of them for a list or tuple."""
        if isinstance(structure, list | tuple):
            return [self._get_from_structure(s, key) for s in structure]
        return self.structures[structure][key]

    def get_structure_ancestors(self, structure: int | str) -> list[str]:
        """Acronyms of the ancestors, root first, the structure itself excluded (read from the
        edited entries once ``structures`` was changed, as BrainGlobe reads them)."""
        if self._follows_entries():
            return ancestors_by_entries(self.structures, structure)
        sid = structure_id(self.tree, structure)
        return [self.tree[a].acronym for a in self.tree.ancestors(sid)]

    def get_structure_descendants(self, structure: int | str) -> list[str]:
        """Acronyms of every descendant, in structures.json order (read from the edited
        entries once ``structures`` was changed, as BrainGlobe reads them)."""
        if self._follows_entries():
            return descendants_by_entries(self.structures, structure)
        sid = structure_id(self.tree, structure)
        return [self.tree[d].acronym for d in self.tree.descendants(sid)]

    def get_structures_at_hierarchy_level(
        self, structure: int | str, hierarchy_level: int | None = None, as_acronym: bool = False
    ) -> list[Any]:
        """Structures at one hierarchy level within the subtree of ``structure``.

        With an int level: the distinct ancestors at that level of the subtree's leaves (the
        structure itself when it is a leaf), in structures.json order (BrainGlobe's order is
        that of a set). With ``None``: the path from the root to the structure, then its
        descendants breadth-first.

        Raises
        ------
        HierarchyLevelError
            (a ValueError) for a level that is not an int, is negative, or is deeper than one
            of the leaves.
        StructureNotFoundError
            For an unknown structure.
        """
        if hierarchy_level is not None:
            _check_level(hierarchy_level)
        try:
            sid = structure_id(self.tree, structure)
        except KeyError as err:
            raise StructureNotFoundError(f"Structure '{structure}' not found in atlas") from err
        if hierarchy_level is None:
            result = [*self.tree[sid].structure_id_path, *self._breadth_first(sid)]
        else:
            result = self._level_of_leaves(sid, hierarchy_level)
        if as_acronym:
            return [self.tree[r].acronym for r in result]
        return result

    def _breadth_first(self, sid: int) -> list[int]:
        order, queue = [], [sid]
        while queue:
            children = [c for s in queue for c in self.tree.children(s)]
            order.extend(children)
            queue = children
        return order

    def _level_of_leaves(self, sid: int, level: int) -> list[int]:
        tree = self.tree
        members = tree.member_lut(sid)
        has_children = np.zeros(len(tree) + 1, dtype=bool)
        has_children[tree.parent_compact[1:]] = True
        has_children[tree.index(tree.root.id) + 1] = len(tree) > 1
        leaves = np.flatnonzero(members & ~has_children)
        if (tree.depths[leaves] < level).any():
            raise HierarchyLevelError(
                f"Structure {tree[sid].acronym} has no descendants at hierarchy level {level} "
                f"(its subtree's leaves reach level {int(tree.depths[leaves].min())} at least)."
            )
        found = np.unique(tree.ancestor_table[level, leaves])
        return [int(tree.ids[c - 1]) for c in found]

    def get_structure_mask(self, structure: int | str) -> npt.NDArray[Any]:
        """The voxels of a structure and its descendants, as the atlas's format's client
        gives them.

        - v1.2 atlas (BrainGlobe 2.3.1): the structure's id on those voxels, 0 elsewhere, in
          the annotation's dtype (2.3.1's mask is not binary). One pass over the annotation
          with a lookup table on compact labels. Once ``structures`` was changed, the ids and
          descendants are those of the entries as they are now (2.3.1's).
        - BrainGlobe 3 atlas (3.x): a binary uint8 mask (1 on those voxels), read from the
          atlas's 4-D masks (computed from the annotation when an atlas has none), by the
          stored hierarchy.
        """
        if self._follows_entries() and not isinstance(self.files, V3Atlas):
            return mask_by_entries(self.structures, structure, self.annotation, self.shape)
        sid = structure_id(self.tree, structure)
        if isinstance(self.files, V3Atlas):
            stored = self.files.structure_mask(sid)
            if stored is not None:
                return stored
            binary = self.tree.member_lut(sid).astype(np.uint8)
            computed: npt.NDArray[Any] = self.tree.map_labels(np.asarray(self.annotation), binary)
            return computed
        values = np.where(self.tree.member_lut(sid), sid, 0).astype(self.annotation.dtype)
        return _map_rows(self.annotation, self.tree, values)

    def structure_statistics(self) -> pd.DataFrame:
        """Size and position of every structure, its descendants included.

        One blocked pass over the annotation (:func:`atlasmith.statistics.structure_stats`).

        Returns
        -------
        pandas.DataFrame
            Indexed by id, in structures.json order, with ``acronym``, ``name``, ``voxels``
            (including descendants), ``own_voxels`` (labelled with the id itself),
            ``volume_mm3``, ``bbox_min_0..2`` and ``bbox_max_0..2`` (inclusive voxel indices,
            <NA> for an empty structure) and ``centroid_um_0..2`` (voxel ``i`` at
            ``i * resolution``, NaN for an empty structure).
        """
        import pandas as pd

        from atlasmith.statistics import structure_stats

        tree = self.tree
        stats = structure_stats(self.annotation, tree)
        empty = stats.voxels == 0
        columns: dict[str, Any] = {
            "acronym": [s.acronym for s in tree],
            "name": [s.name for s in tree],
            "voxels": stats.voxels,
            "own_voxels": stats.own_voxels,
            "volume_mm3": stats.voxels * (float(np.prod(self.resolution)) * 1e-9),
        }
        for axis in range(3):
            for key, bound in (("bbox_min", stats.low), ("bbox_max", stats.high)):
                values = pd.array(bound[:, axis], dtype="Int64")
                values[empty] = pd.NA
                columns[f"{key}_{axis}"] = values
            columns[f"centroid_um_{axis}"] = stats.centroid[:, axis] * self.resolution[axis]
        return pd.DataFrame(columns, index=pd.Index(tree.ids, name="id"))

    # --- meshes ------------------------------------------------------------------------------

    def mesh_from_structure(self, structure: Any) -> Any:
        """The meshio.Mesh of a structure (id or acronym), or a list for a list of them.

        Raises
        ------
        MeshError
            (a meshio.ReadError) when the mesh file is missing or unreadable.
        """
        return self._get_from_structure(structure, "mesh")

    def meshfile_from_structure(self, structure: Any) -> Any:
        """Path of a structure's mesh file (whether or not it exists), or a list of paths."""
        return self._get_from_structure(structure, "mesh_filename")

    def root_mesh(self) -> Any:
        """The mesh of the root structure."""
        return self.mesh_from_structure(self.tree.root.id)

    def root_meshfile(self) -> Path:
        """Path of the root structure's mesh file."""
        path: Path = self.meshfile_from_structure(self.tree.root.id)
        return path


def _map_rows(
    annotation: npt.NDArray[Any], tree: StructureTree, values: npt.NDArray[Any]
) -> npt.NDArray[Any]:
    """``values[compact(label)]`` over the annotation, a block of rows at a time into the
    result: no full-size temporary, and a memory-mapped annotation is never mapped whole, so
    the peak is the result plus a block (measured at 10 um, CH: 4.65 GB for a 4.59 GiB
    result; 9.2 GB with the annotation mapped whole)."""
    from atlasmith.statistics import row_blocks

    out = np.empty(annotation.shape, dtype=values.dtype)
    for start, block in row_blocks(annotation):
        tree.map_labels(block, values, out=out[start : start + len(block)])
    return out


def _check_level(level: Any) -> int:
    """An int hierarchy level >= 0 (bool excluded), else HierarchyLevelError."""
    if isinstance(level, bool) or not isinstance(level, int | np.integer):
        raise HierarchyLevelError(
            f"hierarchy_level must be an int or None, got {type(level).__name__}"
        )
    if level < 0:
        raise HierarchyLevelError("hierarchy_level must be non-negative")
    return int(level)
