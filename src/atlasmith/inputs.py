"""The inputs of an atlas package, checked and converted before anything is written.

1. :func:`load_raw_atlas` runs an atlas script's loaders into a :class:`RawAtlas` (source
   orientation, any dtype).
2. :func:`prepare_inputs` checks every input (shapes, dtypes, NaN, label values, hemispheres,
   the structure tree, labels without a structure), converts dtypes safely, drops structures
   without voxels and reorients the stacks to "asr": an :class:`AtlasInputs`, ready to be
   written in any atlas format. It then runs the checks the finished package would fail
   (:mod:`atlasmith._stack_checks`: mirror symmetry, hemisphere sides, reference range; a
   root named 'root'; a supplied mesh per structure), so no bad input is found only after
   the meshes were made.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from atlasmith.errors import HierarchyError, ScriptError, ValidationError
from atlasmith.formats import read_stack
from atlasmith.hierarchy import Structure, StructureTree
from atlasmith.metadata import AtlasMetadata, check_citation
from atlasmith.names import check_base_name
from atlasmith.orientation import ATLAS_ORIENTATION
from atlasmith.statistics import label_counts, label_histogram, row_blocks, value_range

__all__ = [
    "AtlasInputs",
    "RawAtlas",
    "as_annotation",
    "as_hemispheres",
    "as_reference",
    "check_package_inputs",
    "load_raw_atlas",
    "prepare_inputs",
]

Array = npt.NDArray[Any]

_UINT16_MAX = 2**16 - 1
_UINT32_MAX = 2**32 - 1


@dataclass(frozen=True)
class RawAtlas:
    """Everything a package is made of, as the packager supplies it (source orientation).

    ``resolution`` is in "asr" axis order (as BrainGlobe's ``wrapup_atlas_from_data`` expects);
    ``meshes`` are supplied mesh files (um, source orientation; voxel units when
    ``scale_meshes``, multiplied by the source-order resolution, or by
    ``mesh_source_resolution`` when given) or None to generate them from the annotation.
    """

    name: str
    citation: str
    atlas_link: str
    species: str
    packager: str | None
    orientation: str
    root_id: int
    resolution: tuple[float, float, float]
    minor_version: int | str
    reference: Any
    annotation: Any
    structures: Any
    hemispheres: Any = None
    additional_references: Mapping[str, Any] = field(default_factory=dict)
    meshes: Mapping[int, Path] | None = None
    scale_meshes: bool = False
    mesh_source_resolution: tuple[float, ...] | None = None
    extra_metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AtlasInputs:
    """Checked inputs in the package format: "asr", uint16/uint32/uint8, a valid tree."""

    metadata: AtlasMetadata
    tree: StructureTree
    reference: Array
    annotation: Array
    hemispheres: Array | None
    additional_references: Mapping[str, Array]
    meshes: Mapping[int, Path] | None
    # (source orientation, source extent um, scale); None: the meshes are package OBJ files
    # already ("asr" um), copied as they are
    mesh_transform: tuple[str, Array, Array] | None
    removed: tuple[Structure, ...]


# --- 1. the script's loaders -----------------------------------------------------------


def load_raw_atlas(script: Any, ctx: Any) -> RawAtlas:
    """Run an :class:`~atlasmith.script.AtlasScript`'s loaders for one context.

    Raises
    ------
    ScriptError
        A loader fails, a required loader returns None, or ``load_meshes`` returns something
        other than ``{structure id: path}``.
    MeshError
        A path ``load_meshes`` returns is missing or not an OBJ mesh with faces.
    """

    def optional(loader: str, default: Any) -> Any:
        return script.call(loader, ctx) if script.has(loader) else default

    def required(loader: str, what: str) -> Any:
        # checked here, so the error names the loader (not "got shape ()" at the stacks' check)
        result = script.call(loader, ctx)
        if result is None:
            raise ScriptError(
                f"{loader}() of atlas script {script.path} returned None; it must return {what}."
                " Add the missing `return` to the loader."
            )
        return result

    return RawAtlas(
        name=script.name,
        citation=script.citation,
        atlas_link=script.atlas_link,
        species=script.species,
        packager=script.packager,
        orientation=script.orientation,
        root_id=script.root_id,
        resolution=ctx.resolution,
        minor_version=script.minor_version,
        reference=required("load_reference", "the reference as a 3D array"),
        annotation=required("load_annotation", "the annotation as a 3D array of labels"),
        structures=required("load_structures", "the list of structure dicts"),
        hemispheres=optional("load_hemispheres", None),
        additional_references=optional("load_additional_references", {}) or {},
        meshes=_supplied_meshes(optional("load_meshes", None), script.path),
        extra_metadata={"license": script.license} if script.license else {},
    )


def _supplied_meshes(meshes: Any, script_path: Path) -> dict[int, Path] | None:
    """Check what ``load_meshes`` returned: ids to existing OBJ files, each with faces.

    Done as soon as the loader returns, so that a bad path fails before the stacks are
    checked and written, not as a traceback in the middle of the build.
    """
    if meshes is None:
        return None
    from atlasmith.errors import MeshError  # made on first use: it imports meshio
    from atlasmith.meshes.obj import read_obj

    where = f"load_meshes() of atlas script {script_path}"
    if not isinstance(meshes, Mapping):
        raise ScriptError(
            f"{where} returned a {type(meshes).__name__}; it must return a dict "
            "{structure id: path of an OBJ file}."
        )
    checked = {}
    for sid, path in meshes.items():
        if isinstance(sid, bool) or not isinstance(sid, int | np.integer):
            raise ScriptError(f"{where} returned the key {sid!r}; keys must be structure ids.")
        file = Path(path)
        if not file.is_file():
            raise MeshError(
                f"{where}: the mesh of structure {sid}, {file}, does not exist. Return paths "
                "to existing OBJ files (or leave load_meshes out to generate the meshes)."
            )
        try:
            vertices, faces = read_obj(file)
        except MeshError as err:
            raise MeshError(f"{where}: the mesh of structure {sid}: {err}") from err
        if not len(faces):  # any text without 'v'/'f' lines "parses"; a mesh has faces
            raise MeshError(
                f"{where}: the mesh of structure {sid}, {file}, is not an OBJ mesh (it has "
                f"{len(vertices)} vertices and no faces). Return OBJ files."
            )
        checked[int(sid)] = file
    return checked


def _bad_stack(name: str, problem: str) -> ValidationError:
    return ValidationError(f"input {name}: {problem}. Fix the loader that returns it.")


def _as_3d(stack: Any, name: str) -> Array:
    if isinstance(stack, str | Path):
        stack = read_stack(Path(stack))
    if stack is None:
        raise _bad_stack(name, "got None; expected a non-empty 3D array")
    # a memory-mapped stack stays one (np.asarray would make it a plain view of the mapping),
    # so that passes over it let its pages go (atlasmith._pages): 7.2 GB at 10 um otherwise
    array = stack if isinstance(stack, np.memmap) else np.asarray(stack)
    if array.ndim != 3 or 0 in array.shape:
        raise _bad_stack(name, f"expected a non-empty 3D array, got shape {array.shape}")
    if array.dtype.kind not in "buif":
        raise _bad_stack(name, f"expected numbers, got dtype {array.dtype}")
    return array


def as_reference(stack: Any, name: str = "reference") -> Array:
    """Convert an intensity stack to uint16 safely.

    Integers in 0..65535 are kept as they are; floats (and integers outside that range) are
    rescaled linearly from their min..max onto 0..65535. NaN or infinite values are an error.
    """
    array = _as_3d(stack, name)
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise _bad_stack(name, f"{bad} voxel(s) are NaN or infinite; expected finite values")
    low, high = value_range(array)
    if array.dtype.kind in "bui" and low >= 0 and high <= _UINT16_MAX:
        return array.astype(np.uint16, copy=False)
    if high == low:
        return np.zeros(array.shape, np.uint16)
    scaled = (array.astype(np.float64) - float(low)) * (_UINT16_MAX / (float(high) - float(low)))
    return np.rint(scaled).astype(np.uint16)


def _integral(array: Array) -> bool:
    return bool(np.isfinite(array).all() and np.array_equal(array, np.floor(array)))


def _as_labels(stack: Any, name: str, maximum: int, dtype: type[np.unsignedinteger[Any]]) -> Array:
    array = _as_3d(stack, name)
    if array.dtype.kind == "f" and not _integral(array):
        raise _bad_stack(name, "has non-integer (or NaN) values; labels must be integers")
    low, high = value_range(array)
    if low < 0 or high > maximum:
        raise _bad_stack(name, f"values span {low}..{high}; expected integers in 0..{maximum}")
    return array.astype(dtype, copy=False)


def as_annotation(stack: Any) -> Array:
    """Convert a label volume to uint32; non-integral, negative or too large values raise."""
    array = _as_labels(stack, "annotation", _UINT32_MAX, np.uint32)
    if not any(part.any() for _, part in row_blocks(array)):
        raise _bad_stack("annotation", "is empty (every voxel is 0); expected labelled voxels")
    return array


def as_hemispheres(stack: Any) -> Array:
    """Convert a hemispheres stack to uint8; values other than 0, 1 (left), 2 (right) raise."""
    array = _as_labels(stack, "hemispheres", 2**8 - 1, np.uint8)
    values = np.flatnonzero(label_histogram(array, 2**8))
    if values.max() > 2:
        raise _bad_stack(
            "hemispheres", f"has values {values.tolist()}; expected 0, 1 (left) and 2 (right)"
        )
    return array


def _check_shapes(stacks: Mapping[str, Array]) -> None:
    shapes = {name: a.shape for name, a in stacks.items()}
    if len(set(shapes.values())) > 1:
        raise ValidationError(
            f"input stacks differ in shape: {shapes}. Reference, annotation, hemispheres and "
            "additional references must cover the same voxel grid."
        )


def _tree(raw: RawAtlas, annotation: Array) -> tuple[StructureTree, tuple[Structure, ...]]:
    """Validate the structures, check every label has one, drop those without voxels."""
    tree = StructureTree.from_list(raw.structures)
    if tree.root.id != raw.root_id:
        raise HierarchyError(
            f"ROOT_ID is {raw.root_id} but the root of the structure list is "
            f"{tree.root.acronym!r} ({tree.root.id}). Make them agree."
        )
    if "root" not in tree:  # BrainGlobe's readers and validation look the root up by it
        raise HierarchyError(
            f"no structure has the acronym 'root': BrainGlobe requires it (readers ask for "
            f"'root' by name). Name the root structure ({tree.root.acronym!r}, id "
            f"{tree.root.id}) 'root'."
        )
    counts, unknown = label_counts(annotation, tree)
    if unknown:
        raise ValidationError(
            f"annotation labels {list(unknown[:20])} ({len(unknown)} in all) have no structure "
            "in the structure list. Add them to the structures, or set those voxels to 0."
        )
    present = np.flatnonzero(counts[1:])
    kept, removed = tree.present(tree.ids[present].tolist())
    return kept, tuple(removed)


def _metadata(
    raw: RawAtlas, shape: tuple[int, ...], symmetric: bool, refs: Sequence[str]
) -> AtlasMetadata:
    check_base_name(raw.name, "atlas name")
    check_citation(raw.citation, "citation")
    return AtlasMetadata.from_dict(
        {
            "name": raw.name,
            "citation": raw.citation,
            "atlas_link": raw.atlas_link,
            "species": raw.species,
            "symmetric": symmetric,
            "resolution": [float(r) for r in raw.resolution],
            "orientation": ATLAS_ORIENTATION,
            "version": f"1.{raw.minor_version}",
            "shape": [int(s) for s in shape],
            "additional_references": list(refs),
            "atlas_packager": raw.packager,
            **dict(raw.extra_metadata),
        }
    )


def _mesh_transform(raw: RawAtlas, source_shape: tuple[int, ...]) -> tuple[str, Array, Array]:
    """Source orientation, source extent (um, voxel centres) and the scale of supplied meshes."""
    from atlasmith.orientation import axis_map

    order, _ = axis_map(raw.orientation, ATLAS_ORIENTATION)
    res_source = np.empty(3)
    res_source[list(order)] = raw.resolution  # asr axis k is source axis order[k]
    if raw.mesh_source_resolution is not None:
        res_source = np.asarray(raw.mesh_source_resolution, dtype=np.float64)
    extent = (np.asarray(source_shape) - 1) * res_source
    scale = res_source if raw.scale_meshes else np.ones(3)
    return raw.orientation, extent, scale


def prepare_inputs(raw: RawAtlas) -> AtlasInputs:
    """Check and convert every input; raise a specific error on the first problem.

    Raises
    ------
    ValidationError
        Bad stacks (shape, dtype, NaN, labels, hemisphere values, labels without structure).
    HierarchyError
        A structure list that breaks the tree rules, or a ROOT_ID that is not its root.
    ScriptError, MetadataError, OrientationError
        Bad constants (name, citation, resolution, orientation).
    """
    from atlasmith.orientation import check_origin, reorient_stack
    from atlasmith.script import as_resolution

    as_resolution(list(raw.resolution), "resolution")
    check_origin(raw.orientation)
    stacks = {"reference": as_reference(raw.reference), "annotation": as_annotation(raw.annotation)}
    if raw.hemispheres is not None:
        stacks["hemispheres"] = as_hemispheres(raw.hemispheres)
    refs = {
        k: as_reference(v, f"additional reference {k!r}")
        for k, v in raw.additional_references.items()
    }
    _check_shapes({**stacks, **refs})
    tree, removed = _tree(raw, stacks["annotation"])

    def asr(a: Array) -> Array:
        if raw.orientation == ATLAS_ORIENTATION and a.flags.c_contiguous:
            return a  # as it is: a memory-mapped stack stays one (see _as_3d)
        return np.ascontiguousarray(reorient_stack(a, raw.orientation, ATLAS_ORIENTATION))

    annotation = asr(stacks["annotation"])
    inputs = AtlasInputs(
        metadata=_metadata(raw, annotation.shape, raw.hemispheres is None, list(refs)),
        tree=tree,
        reference=asr(stacks["reference"]),
        annotation=annotation,
        hemispheres=asr(stacks["hemispheres"]) if "hemispheres" in stacks else None,
        additional_references={k: asr(v) for k, v in refs.items()},
        meshes=None if raw.meshes is None else {int(k): Path(v) for k, v in raw.meshes.items()},
        mesh_transform=_mesh_transform(raw, stacks["annotation"].shape),
        removed=removed,
    )
    check_package_inputs(inputs, raw.orientation)
    return inputs


def check_package_inputs(inputs: AtlasInputs, orientation: str | None = None) -> None:
    """Run, on the inputs, the checks a finished package of them would fail.

    ``orientation``: the source orientation, to name axes in the packager's terms.

    Raises
    ------
    ValidationError
        A reference below 128 everywhere, an additional reference equal to the reference, a
        hemispheres stack without both sides or with the sides swapped, labels that are not
        mirror-symmetric in an atlas without hemispheres, or a structure without a supplied
        mesh.
    """
    from atlasmith import _stack_checks as checks

    # (what the message is about, the finding); an additional reference's message names it
    findings = [("input reference: ", checks.reference_range_finding(inputs.reference))]
    for name, stack in inputs.additional_references.items():
        findings.append(
            ("input ", checks.additional_reference_finding(name, stack, inputs.reference))
        )
    if inputs.hemispheres is None:
        symmetry = checks.symmetry_finding(inputs.annotation, orientation)
        findings.append(("input annotation: ", symmetry))
    else:
        sides = checks.hemisphere_values_finding(inputs.hemispheres)
        if sides.ok:
            sides = checks.hemisphere_sides_finding(inputs.hemispheres, orientation)
        findings.append(("input hemispheres: ", sides))
    for about, finding in findings:
        if not finding.ok:
            raise ValidationError(about + finding.message)
    _check_supplied_meshes(inputs)


def _check_supplied_meshes(inputs: AtlasInputs) -> None:
    """Every structure with voxels needs a mesh when the meshes are supplied."""
    if inputs.meshes is None:
        return
    missing = [int(i) for i in inputs.tree.ids if int(i) not in inputs.meshes]
    if missing:
        raise ValidationError(
            f"the supplied meshes (load_meshes) lack {len(missing)} structure(s) with voxels, "
            f"e.g. {missing[:10]}: every structure needs meshes/<id>.obj. Supply a mesh for "
            "each of them, or none, to generate every mesh from the annotation."
        )
