"""Validation of atlas packages: every check, one report, used as a gate.

:func:`validate_folder` runs every check on a BrainGlobe-format folder (ours or BrainGlobe's)
and returns a :class:`ValidationReport`; it never raises on bad data. The checks are those of
BrainGlobe 2.3.1's ``validate_atlases.py`` that mean something for a single package (files,
root mesh against the annotation extent, image dimensions, additional references, mesh and
structure sets, reference pixel range, unique acronyms, atlas name), plus ours: metadata
types, citation, structure tree rules, dtypes, annotation not empty, every label has a
structure, hemisphere values and sides, mirror symmetry over the whole volume (BrainGlobe
compares one pair of voxels), every mesh inside the volume and the manifest hashes when a
``manifest.json`` is present. The checks of the stacks' content come from
:mod:`atlasmith._stack_checks`, which the build also runs on its inputs before any work.
BrainGlobe's check that the name is in its hard-coded list of official atlases is left out: it
fails every new atlas.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import numpy.typing as npt

from atlasmith import _stack_checks
from atlasmith._types import ProgressCallback
from atlasmith.errors import AtlasmithError, ValidationError
from atlasmith.formats import MESHES, METADATA, REQUIRED_STACKS, STRUCTURES, V1Folder, stack_file
from atlasmith.meshes.obj import obj_bounds, obj_bounds_many
from atlasmith.orientation import ATLAS_ORIENTATION
from atlasmith.statistics import labelled_along, row_blocks, unknown_labels, value_range

__all__ = [
    "CheckResult",
    "ValidationReport",
    "require_valid",
    "validate_archive",
    "validate_folder",
]

_REQUIRED_FILES = (*(stack_file(n) for n in REQUIRED_STACKS), METADATA, STRUCTURES)
_STRUCTURE_KEYS = ("acronym", "id", "name", "structure_id_path", "rgb_triplet")
_EXTENT_TOLERANCE_VOXELS = 10  # BrainGlobe's root mesh vs annotation tolerance


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check: its name, whether it passed, and what it found."""

    name: str
    ok: bool
    message: str


@dataclass(frozen=True)
class ValidationReport:
    """Every check's result for one package (``target``: the folder or archive checked)."""

    results: tuple[CheckResult, ...]
    target: str = "atlas package"

    @property
    def ok(self) -> bool:
        """True when every check passed."""
        return all(r.ok for r in self.results)

    @property
    def failures(self) -> tuple[CheckResult, ...]:
        """The checks that failed."""
        return tuple(r for r in self.results if not r.ok)

    def render(self) -> str:
        """A plain-text report: one line per check, then a summary line."""
        lines = [f"Validation of {self.target}"]
        lines += [f"  {'PASS' if r.ok else 'FAIL'}  {r.name}: {r.message}" for r in self.results]
        n_fail = len(self.failures)
        summary = "all checks passed" if n_fail == 0 else f"{n_fail} check(s) failed"
        lines.append(f"{len(self.results)} checks, {summary}.")
        return "\n".join(lines)


def require_valid(report: ValidationReport) -> None:
    """Raise ValidationError (carrying ``report``) when any check failed."""
    if not report.ok:
        names = ", ".join(r.name for r in report.failures)
        raise ValidationError(
            f"{report.target} failed validation ({names}). Fix the inputs and build again.\n"
            + report.render(),
            report,
        )


class _CheckFailed(Exception):
    """A check's failure, with its message."""


def _need(condition: bool, message: str) -> None:
    if not condition:
        raise _CheckFailed(message)


class _Package(V1Folder):
    """The folder under validation: lazily read, shared by the checks."""

    @cached_property
    def mesh_ids(self) -> dict[int, Path]:
        _need(self.mesh_folder.is_dir(), f"there is no {MESHES}/ folder")
        misnamed = self.misnamed_mesh_files()
        _need(
            not misnamed, f"mesh file {misnamed[0].name if misnamed else ''} is not named <id>.obj"
        )
        return self.mesh_files()

    @cached_property
    def voxel_size(self) -> npt.NDArray[np.float64]:
        return np.asarray(self.resolution, dtype=np.float64)


# --- the checks ------------------------------------------------------------------------


def check_files(p: _Package) -> str:
    missing = [n for n in _REQUIRED_FILES if not (p.path / n).is_file()]
    missing += [] if p.mesh_folder.is_dir() else [f"{MESHES}/"]
    _need(not missing, f"missing {missing}")
    return "annotation, reference, metadata, structures and meshes/ are present"


def check_metadata(p: _Package) -> str:
    meta = p.metadata
    _need(
        meta.orientation == ATLAS_ORIENTATION,
        f"orientation is {meta.orientation!r}, expected {ATLAS_ORIENTATION!r}",
    )
    return f"{meta.name} v{meta.version}, keys and types valid"


def check_atlas_name(p: _Package) -> str:
    from atlasmith.names import check_base_name

    meta = p.metadata
    check_base_name(meta.name, "metadata name")
    if p.path.name.startswith(meta.atlas_name + "_v"):
        _need(
            p.path.name == meta.folder_name,
            f"folder is {p.path.name!r}, metadata says {meta.folder_name!r}",
        )
    return f"{meta.atlas_name} is a valid atlas name"


def check_citation(p: _Package) -> str:
    from atlasmith.metadata import check_citation as check_cite

    check_cite(p.metadata_dict.get("citation"), "metadata citation")
    return "citation has a DOI or is 'unpublished'"


def check_structures(p: _Package) -> str:
    bad = [
        i
        for i, s in enumerate(p.structures_list)
        if not isinstance(s, dict) or tuple(s) != _STRUCTURE_KEYS
    ]
    _need(not bad, f"structures {bad[:5]} do not have exactly the keys {list(_STRUCTURE_KEYS)}")
    tree = p.tree
    _need("root" in tree, "no structure has the acronym 'root' (BrainGlobe requires it)")
    return f"{len(tree)} structures form one valid tree rooted at {tree.root.acronym!r}"


def check_unique_acronyms(p: _Package) -> str:
    acronyms = [s.get("acronym") for s in p.structures_list]
    dupes = sorted({str(a) for a in acronyms if acronyms.count(a) > 1})
    _need(not dupes, f"duplicate acronyms {dupes[:10]}")
    return "acronyms are unique"


def check_image_dimensions(p: _Package) -> str:
    shape = tuple(p.metadata_dict["shape"])
    _need(p.reference.shape == shape, f"reference shape {p.reference.shape} != metadata {shape}")
    _need(p.annotation.shape == shape, f"annotation shape {p.annotation.shape} != {shape}")
    return f"reference and annotation are {shape}"


def check_dtypes(p: _Package) -> str:
    _need(p.reference.dtype == np.uint16, f"reference is {p.reference.dtype}, expected uint16")
    _need(p.annotation.dtype == np.uint32, f"annotation is {p.annotation.dtype}, expected uint32")
    return "reference uint16, annotation uint32"


def _require(finding: _stack_checks.Finding) -> str:
    _need(finding.ok, finding.message)
    return finding.message


def check_reference_pixels(p: _Package) -> str:
    return _require(_stack_checks.reference_range_finding(p.reference))


def check_annotation_not_empty(p: _Package) -> str:
    # a block of rows at a time, stopping at the first labelled one: ``any`` of the whole
    # memory-mapped stack would map all of it (4.8 GB at 10 um)
    labelled = any(bool(part.any()) for _, part in row_blocks(p.annotation))
    _need(labelled, "the annotation has no labelled voxel")
    return "annotation has labelled voxels"


def check_annotation_labels(p: _Package) -> str:
    unknown = unknown_labels(p.annotation, p.tree)
    _need(not unknown, f"labels with no structure: {list(unknown[:10])}")
    return "every annotation label has a structure"


def check_hemispheres(p: _Package) -> str:
    path = p.path / stack_file("hemispheres")
    if p.metadata_dict.get("symmetric", True):
        return "symmetric atlas: hemispheres are synthesised by readers"
    _need(path.is_file(), f"asymmetric atlas without {path.name}")
    hemi = p.stack("hemispheres")
    _need(hemi.shape == p.annotation.shape, f"hemispheres shape {hemi.shape} != annotation")
    _need(hemi.dtype == np.uint8, f"hemispheres is {hemi.dtype}, expected uint8")
    top = int(value_range(hemi)[1])
    _need(top <= 2, f"hemisphere values other than 0, 1, 2: max {top}")
    return "values in {0, 1, 2}: " + _require(_stack_checks.hemisphere_values_finding(hemi))


def check_orientation_sanity(p: _Package) -> str:
    _need(p.metadata_dict.get("orientation") == ATLAS_ORIENTATION, "stacks are not declared 'asr'")
    if p.metadata_dict.get("symmetric", True):
        return "declared 'asr'"
    return _require(_stack_checks.hemisphere_sides_finding(p.stack("hemispheres")))


def check_annotation_symmetry(p: _Package) -> str:
    if not p.metadata_dict.get("symmetric", True):
        return "asymmetric atlas (hemispheres.tiff): mirror symmetry not required"
    return _require(_stack_checks.symmetry_finding(p.annotation))


def check_additional_references(p: _Package) -> str:
    names = p.metadata_dict.get("additional_references", [])
    for name in names:
        stack = p.stack(name)
        _need(stack.shape == p.reference.shape, f"{name}.tiff shape {stack.shape} != reference")
        _need(stack.dtype == np.uint16, f"{name}.tiff is {stack.dtype}, expected uint16")
        _require(_stack_checks.additional_reference_finding(name, stack, p.reference))
    return f"{len(names)} additional reference(s) valid"


def check_mesh_files(p: _Package) -> str:
    missing = [int(i) for i in p.tree.ids if int(i) not in p.mesh_ids]
    _need(not missing, f"{len(missing)} structure(s) without a mesh, e.g. {missing[:10]}")
    return f"every structure has meshes/<id>.obj ({len(p.mesh_ids)} meshes)"


def check_mesh_structures(p: _Package) -> str:
    extra = sorted(i for i in p.mesh_ids if i not in p.tree)
    _need(not extra, f"meshes of unknown structures: {extra[:10]}")
    return "every mesh belongs to a structure"


def check_mesh_extents(p: _Package) -> str:
    root = p.tree.root.id
    _need(root in p.mesh_ids, f"there is no root mesh meshes/{root}.obj to compare")
    lo, hi = obj_bounds(p.mesh_ids[root])
    nz = [np.flatnonzero(along) for along in labelled_along(p.annotation)]
    vox_lo = np.array([a[0] for a in nz]) * p.voxel_size
    vox_hi = np.array([a[-1] for a in nz]) * p.voxel_size
    tol = _EXTENT_TOLERANCE_VOXELS * p.voxel_size
    bad = (np.abs(lo - vox_lo) > tol) | (np.abs(hi - vox_hi) > tol)
    _need(not bad.any(), f"root mesh spans {lo}..{hi} um, annotation {vox_lo}..{vox_hi} um")
    return "root mesh matches the annotation extent (within 10 voxels)"


def check_mesh_bounds(p: _Package) -> str:
    limit = (np.asarray(p.annotation.shape) - 1) * p.voxel_size
    margin = p.voxel_size
    ids = sorted(p.mesh_ids)
    bounds = obj_bounds_many([p.mesh_ids[sid] for sid in ids])
    outside = [
        sid
        for sid, (lo, hi) in zip(ids, bounds, strict=True)
        if (lo < -margin).any() or (hi > limit + margin).any()
    ]
    _need(not outside, f"meshes outside the volume: {outside[:10]} (more than a voxel)")
    return "every mesh lies inside the volume"


def check_manifest(p: _Package) -> str:
    from atlasmith.package import MANIFEST_NAME, verify_folder

    if not (p.path / MANIFEST_NAME).is_file():
        return f"no {MANIFEST_NAME} (not built by atlasmith): nothing to verify"
    problems = verify_folder(p.path)
    _need(not problems, "; ".join(problems[:5]))
    return "every file matches its sha256 in manifest.json"


CHECKS: tuple[Callable[[_Package], str], ...] = (
    check_files,
    check_metadata,
    check_atlas_name,
    check_citation,
    check_structures,
    check_unique_acronyms,
    check_image_dimensions,
    check_dtypes,
    check_reference_pixels,
    check_annotation_not_empty,
    check_annotation_labels,
    check_hemispheres,
    check_orientation_sanity,
    check_annotation_symmetry,
    check_additional_references,
    check_mesh_files,
    check_mesh_structures,
    check_mesh_extents,
    check_mesh_bounds,
    check_manifest,
)


def _run(check: Callable[[_Package], str], package: _Package) -> CheckResult:
    name = check.__name__.removeprefix("check_")
    try:
        return CheckResult(name, True, check(package))
    except _CheckFailed as failed:
        return CheckResult(name, False, str(failed))
    except (AtlasmithError, OSError, ValueError, KeyError, TypeError, IndexError) as err:
        return CheckResult(name, False, f"{type(err).__name__}: {err}")


def validate_folder(
    folder: str | Path, progress: ProgressCallback | None = None
) -> ValidationReport:
    """Run every check on an atlas folder.

    Parameters
    ----------
    folder : str or Path
        A BrainGlobe-format atlas folder (``NAME_RESum_vM.m``).
    progress : callable, optional
        Called as ``progress(done, total)`` before the first check and after each.

    Returns
    -------
    ValidationReport
        One :class:`CheckResult` per check; bad data never raises, it fails checks.
    """
    root = Path(folder)
    if not root.is_dir():
        return ValidationReport((CheckResult("files", False, "not a folder"),), str(root))
    package = _Package(root)
    results = []
    for done, check in enumerate(CHECKS):
        if progress is not None:
            progress(done, len(CHECKS))
        results.append(_run(check, package))
    if progress is not None:
        progress(len(CHECKS), len(CHECKS))
    return ValidationReport(tuple(results), str(root))


def validate_archive(path: str | Path) -> ValidationReport:
    """Extract an archive safely into a temporary folder and validate the package in it."""
    from atlasmith.package import safe_extract

    archive = Path(path)
    with tempfile.TemporaryDirectory(prefix="atlasmith-validate-") as tmp:
        try:
            folder = safe_extract(archive, tmp)
        except (AtlasmithError, OSError) as err:
            failed = CheckResult("archive", False, f"{type(err).__name__}: {err}")
            return ValidationReport((failed,), str(archive))
        report = validate_folder(folder)
        shutil.rmtree(folder, ignore_errors=True)
    opened = CheckResult("archive", True, "extracted safely")
    return ValidationReport((opened, *report.results), str(archive))
