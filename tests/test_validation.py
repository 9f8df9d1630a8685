"""Validation checks on real packages: the bundled Allen folder, corrupted one way at a time."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile

from atlasmith.errors import ValidationError
from atlasmith.validation import require_valid, validate_archive, validate_folder


def _failed(folder: Path) -> set[str]:
    return {r.name for r in validate_folder(folder).failures}


def test_example_folder_fails_only_on_missing_meshes(example_atlas_dir: Path) -> None:
    report = validate_folder(example_atlas_dir)
    # the bundled fixture carries 3 of BrainGlobe's meshes, not one per structure
    assert {r.name for r in report.failures} == {"mesh_files", "mesh_extents"}
    assert "837 structure(s) without a mesh" in report.render()
    assert len(report.results) == 20
    with pytest.raises(ValidationError, match="mesh_files") as info:
        require_valid(report)
    assert info.value.report is report


def _edit_json(path: Path, change: object) -> None:
    data = json.loads(path.read_text())
    change(data)  # type: ignore[operator]
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(
    ("change", "check", "message"),
    [
        (lambda m: m.update(orientation="lpi"), "metadata", "'lpi', expected 'asr'"),
        (lambda m: m.update(citation="Someone 2020"), "citation", "DOI"),
        (lambda m: m.update(name="Allen"), "metadata", "lowercase"),
        (lambda m: m.update(shape=[10, 10, 10]), "image_dimensions", "(10, 10, 10)"),
        (lambda m: m.update(symmetric=False), "hemispheres", "without hemispheres.tiff"),
    ],
)
def test_metadata_corruptions_fail_their_check(
    example_atlas_copy: Path, change: object, check: str, message: str
) -> None:
    _edit_json(example_atlas_copy / "metadata.json", change)
    report = validate_folder(example_atlas_copy)
    failure = next(r for r in report.failures if r.name == check)
    assert message in failure.message


def test_duplicate_acronym_and_unknown_label(example_atlas_copy: Path) -> None:
    _edit_json(example_atlas_copy / "structures.json", lambda s: s[5].update(acronym="grey"))
    annotation = tifffile.imread(example_atlas_copy / "annotation.tiff")
    annotation[60, 40, 50] = 123456
    tifffile.imwrite(example_atlas_copy / "annotation.tiff", annotation)
    failed = _failed(example_atlas_copy)
    assert {"unique_acronyms", "structures", "annotation_labels"} <= failed


def test_hemisphere_values_and_orientation(example_atlas_copy: Path) -> None:
    _edit_json(example_atlas_copy / "metadata.json", lambda m: m.update(symmetric=False))
    shape = tifffile.imread(example_atlas_copy / "annotation.tiff").shape
    hemi = np.ones(shape, np.uint8)
    hemi[:, :, : shape[2] // 2] = 2  # asr: axis 2 runs right -> left, right at low indices
    tifffile.imwrite(example_atlas_copy / "hemispheres.tiff", hemi)
    assert not {"hemispheres", "orientation_sanity"} & _failed(example_atlas_copy)
    tifffile.imwrite(example_atlas_copy / "hemispheres.tiff", hemi[:, :, ::-1].copy())
    assert "orientation_sanity" in _failed(example_atlas_copy)
    hemi[0, 0, 0] = 3
    tifffile.imwrite(example_atlas_copy / "hemispheres.tiff", hemi)
    assert "hemispheres" in _failed(example_atlas_copy)


def test_dark_float_cast_reference_fails(example_atlas_copy: Path) -> None:
    tifffile.imwrite(example_atlas_copy / "reference.tiff", np.ones((132, 80, 114), np.uint16))
    assert "reference_pixels" in _failed(example_atlas_copy)


def test_mesh_outside_volume(example_atlas_copy: Path) -> None:
    (example_atlas_copy / "meshes" / "385.obj").write_text("v 0 0 0\nv 1e6 0 0\nv 0 1 1\nf 1 2 3\n")
    assert "mesh_bounds" in _failed(example_atlas_copy)


def test_not_a_folder_and_broken_archive(tmp_path: Path) -> None:
    assert not validate_folder(tmp_path / "missing").ok
    bad = tmp_path / "x.tar.gz"
    bad.write_bytes(b"not a tar")
    report = validate_archive(bad)
    assert not report.ok
    assert report.failures[0].name == "archive"
