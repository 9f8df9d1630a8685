"""atlasmith build: real Allen 100 um data -> BrainGlobe v1.2 folder + reproducible archive.

Every bad input gets its own error, and no folder, archive or temporary folder is left.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner

from atlasmith.build import BuildResult, build_atlas
from atlasmith.cli import main
from atlasmith.errors import (
    AtlasExistsError,
    HierarchyError,
    MeshError,
    OrientationError,
    ScriptError,
    SourceError,
    ValidationError,
)
from atlasmith.formats import readme_text
from atlasmith.package import verify_folder
from atlasmith.validation import validate_folder

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data"
ALLEN = REPO / "atlas_scripts" / "allen_mouse.py"
DSURQE = REPO / "atlas_scripts" / "dsurqe_mouse.py"

# A script in BrainGlobe's guide style reading the real bundled Allen 100 um data; each bad
# input case edits one line of it.
SCRIPT = """
import json
import numpy as np
import nrrd
import tifffile
from atlasmith.sources import Source

__version__ = 0
ATLAS_NAME = "test_mouse"
SPECIES = "Mus musculus"
ATLAS_LINK = "https://example.org/test"
CITATION = "unpublished"
ATLAS_PACKAGER = "tester"
ORIENTATION = "asr"
ROOT_ID = 997
RES_UM = 100
SOURCES = {
    "annotation": Source("allen_mouse_100um/annotation_100um.nrrd",
        sha256="c11678acc9d614e3bd152d2d811086d98bca7d18234c32df70fab5d286f39da7"),
    "reference": Source("allen_mouse_100um/reference.tiff",
        sha256="8137e914edfecd29f97310937d080c8c1e54909dc885108b4643820e9c2ae6d3"),
    "structures": Source("allen_mouse_100um/structures.json",
        sha256="7157e6130b354f6bebc21aa79f882274cbbe253ac916d97123805af3b4ff8abd"),
}

def load_reference(ctx):
    ref = tifffile.imread(ctx.source("reference"))
    return ref  # EDIT-REFERENCE

def load_annotation(ctx):
    ann = nrrd.read(str(ctx.source("annotation")))[0].astype(np.int64)
    return ann  # EDIT-ANNOTATION

def load_structures(ctx):
    s = json.loads(ctx.source("structures").read_text())
    return s  # EDIT-STRUCTURES

def load_hemispheres(ctx):
    h = np.ones((132, 80, 114), np.uint8); h[:, :, :57] = 2
    return h  # EDIT-HEMISPHERES
"""


def _write_script(tmp_path: Path, old: str, new: str) -> Path:
    assert old in SCRIPT, old
    path = tmp_path / "test_mouse.py"
    path.write_text(SCRIPT.replace(old, new))
    return path


BAD_INPUTS = [
    # (what, old text, new text, error, message)
    ("structure id 0", "return s  #", "s[5]['id'] = 0; return s  #", HierarchyError, "has id 0"),
    (
        "two roots",
        "return s  #",
        "s[1]['structure_id_path'] = [8]; return s  #",
        HierarchyError,
        "2 roots",
    ),
    ("no root", "return s  #", "return s[1:]  #", HierarchyError, "no root"),
    (
        "path not starting at the root",
        "return s  #",
        "s[2]['structure_id_path'][0] = 8; return s  #",
        HierarchyError,
        "must start at the root id 997",
    ),
    (
        "path not ending at its id",
        "return s  #",
        "s[2]['structure_id_path'] = [997, 8]; return s  #",
        HierarchyError,
        "must end with the structure's own id 567",
    ),
    (
        "missing parent",
        "return s  #",
        "del s[1]; return s  #",
        HierarchyError,
        r"3 structures have a parent that is not in the structure list: 'CH' \(parent id 8\)",
    ),
    (
        "duplicate ids",
        "return s  #",
        "s.append(dict(s[4], acronym='copy')); return s  #",
        HierarchyError,
        "id 695 is used twice",
    ),
    (
        "duplicate acronyms",
        "return s  #",
        "s[3]['acronym'] = 'grey'; return s  #",
        HierarchyError,
        "acronym 'grey' is used twice",
    ),
    (
        "labels with no structure",
        "return ann  #",
        "ann[60, 40, 50] = 123456; return ann  #",
        ValidationError,
        r"annotation labels \[123456\] .* have no structure",
    ),
    (
        "non-integer annotation",
        "return ann  #",
        "return ann + 0.5  #",
        ValidationError,
        "non-integer",
    ),
    (
        "negative annotation",
        "return ann  #",
        "ann[0, 0, 0] = -1; return ann  #",
        ValidationError,
        "values span -1..",
    ),
    (
        "annotation too large for uint32",
        "return ann  #",
        "ann[0, 0, 0] = 2**32; return ann  #",
        ValidationError,
        "expected integers in 0..4294967295",
    ),
    (
        "shapes differ",
        "return ref  #",
        "return ref[:-1]  #",
        ValidationError,
        "differ in shape",
    ),
    (
        "hemisphere values",
        "return h  #",
        "h[0, 0, 0] = 3; return h  #",
        ValidationError,
        r"has values \[1, 2, 3\]; expected 0, 1 \(left\) and 2 \(right\)",
    ),
    (
        "invalid orientation",
        'ORIENTATION = "asr"',
        'ORIENTATION = "asx"',
        OrientationError,
        "invalid orientation 'asx'",
    ),
    ("resolution not positive", "RES_UM = 100", "RES_UM = -100", ScriptError, "RES_UM"),
    (
        "missing metadata constant",
        'SPECIES = "Mus musculus"',
        "",
        ScriptError,
        r"lacks \['SPECIES'\]",
    ),
    (
        "citation without DOI",
        'CITATION = "unpublished"',
        'CITATION = "Wang et al 2020, Cell"',
        ScriptError,
        "must contain a DOI",
    ),
    (
        "invalid atlas name",
        'ATLAS_NAME = "test_mouse"',
        'ATLAS_NAME = "testmouse"',
        ScriptError,
        "author_species",
    ),
    (
        "NaN in the reference",
        "return ref  #",
        "ref = ref.astype(float); ref[1, 2, 3] = np.nan; return ref  #",
        ValidationError,
        "1 voxel.s. are NaN or infinite",
    ),
    (
        "infinite reference",
        "return ref  #",
        "ref = ref.astype(float); ref[1, 2, 3] = np.inf; return ref  #",
        ValidationError,
        "NaN or infinite",
    ),
    ("empty annotation", "return ann  #", "return ann * 0  #", ValidationError, "is empty"),
    (
        "wrong source hash",
        'sha256="c1167',
        'sha256="d1167',
        SourceError,
        "annotation_100um.nrrd has sha256 c1167.*, expected d1167",
    ),
    (
        "three constant mistakes, all in one error",
        "RES_UM = 100",
        'RES_UM = 0\nROOT_ID = 0\nCITATION = "Wang 2020"',
        ScriptError,
        r"has 3 problems:\n  - CITATION must contain a DOI.*\n  - .*ROOT_ID.*\n  - .*RES_UM",
    ),
    (
        "load_reference returns None",
        "return ref  #",
        "return None  #",
        ScriptError,
        r"load_reference\(\) of atlas script .* returned None; it must return the reference",
    ),
    (
        "load_annotation returns None",
        "return ann  #",
        "ann = None  #",
        ScriptError,
        r"load_annotation\(\) of atlas script .* returned None; it must return the annotation",
    ),
    (
        "load_structures returns None",
        "return s  #",
        "s = None  #",
        ScriptError,
        r"load_structures\(\) .* returned None; it must return the list of structure dicts",
    ),
    (
        "an additional reference is None",
        "def load_hemispheres(ctx):",
        "def load_additional_references(ctx):\n    return {'t2': None}\n\n"
        "def load_hemispheres(ctx):",
        ValidationError,
        "input additional reference 't2': got None; expected a non-empty 3D array",
    ),
    (
        "load_meshes returns a missing file",
        "def load_hemispheres(ctx):",
        "def load_meshes(ctx):\n    return {997: ctx.script_dir / 'none.obj'}\n\n"
        "def load_hemispheres(ctx):",
        MeshError,
        r"load_meshes\(\) of atlas script .*: the mesh of structure 997, .*none.obj, does not ex",
    ),
    (
        "load_meshes returns a file that is not a mesh",
        "def load_hemispheres(ctx):",
        "def load_meshes(ctx):\n    return {997: ctx.source('structures')}\n\n"
        "def load_hemispheres(ctx):",
        MeshError,
        r"the mesh of structure 997, .*structures.json, is not an OBJ mesh",
    ),
    (
        "unknown mesh parameter",
        "ROOT_ID = 997",
        'ROOT_ID = 997\nMESH_PARAMETERS = {"smoothing": 4}',
        ScriptError,
        "unexpected keyword argument 'smoothing'.*among: smoothing_um, cluster_um",
    ),
    (
        "ROOT_ID not the root",
        "ROOT_ID = 997",
        "ROOT_ID = 8",
        HierarchyError,
        "ROOT_ID is 8 but the root",
    ),
]


@pytest.mark.parametrize(
    ("old", "new", "error", "message"),
    [case[1:] for case in BAD_INPUTS],
    ids=[case[0] for case in BAD_INPUTS],
)
def test_bad_input_has_its_own_error_and_leaves_nothing(
    tmp_path: Path, old: str, new: str, error: type[Exception], message: str
) -> None:
    script = _write_script(tmp_path, old, new)
    out = tmp_path / "out"
    with pytest.raises(error, match=message):
        build_atlas(script, out, source_dir=DATA)
    assert not out.exists() or list(out.iterdir()) == []


# --- input problems a finished package would fail: found before any work ------------------

EARLY_FAILURES = [
    # (what, old text, new text, error, message): each was found only by the final
    # validation, after the stacks, previews and meshes were written
    (
        "a 0..1 reference cast to integers",
        "return ref  #",
        "return (ref / ref.max()).astype(np.uint16)  #",
        ValidationError,
        r"input reference: every reference voxel is below 128 \(max 1\).*Return the image as "
        "floats",
    ),
    (
        "an additional reference that is the reference",
        "def load_hemispheres(ctx):",
        "def load_additional_references(ctx):\n    return {'t2': load_reference(ctx)}\n\n"
        "def load_hemispheres(ctx):",
        ValidationError,
        "additional reference 't2' is the reference itself: return the other image",
    ),
    (
        "an empty hemispheres stack",
        "return h  #",
        "return h * 0  #",
        ValidationError,
        r"input hemispheres: the hemispheres stack is empty \(every voxel is 0\); expected 1 for "
        r"the left hemisphere and 2 for the right \(BrainGlobe's values",
    ),
    (
        "a hemispheres stack with one side",
        "return h  #",
        "h[h > 0] = 1; return h  #",
        ValidationError,
        r"has left \(1\) voxels but no right \(2\) voxel; expected 1 for the left",
    ),
    (
        "hemisphere values swapped",
        "return h  #",
        "return 3 - h  #",
        ValidationError,
        r"the left hemisphere \(1\) lies on the right.*Either the hemisphere values are swapped "
        r"\(BrainGlobe: 1 = left, 2 = right\), or ORIENTATION 'asr' has the wrong left/right",
    ),
    (
        "no hemispheres and the left-right axis declared as anterior-posterior",
        "def load_hemispheres(ctx):",  # a later ORIENTATION wins, and no hemispheres
        'ORIENTATION = "rsa"\n\n\ndef _not_a_loader(ctx):',
        ValidationError,
        r"input annotation: only \d+\.\d% of labelled voxels have the same label as their mirror"
        r".*mirror-symmetric along source axis 2 \(which ORIENTATION 'rsa' calls "
        r"anterior-posterior\) instead.*ORIENTATION is probably wrong.*load_hemispheres",
    ),
    (
        "no structure named root",
        "return s  #",
        "s[0]['acronym'] = 'brain'; return s  #",
        HierarchyError,
        r"no structure has the acronym 'root'.*Name the root structure \('brain', id 997\) 'root'",
    ),
    (
        "supplied meshes lacking structures",
        "def load_hemispheres(ctx):",
        "def load_meshes(ctx):\n"
        "    return {997: ctx.source('structures').parent / 'meshes' / '1097.obj'}\n\n"
        "def load_hemispheres(ctx):",
        ValidationError,
        r"the supplied meshes \(load_meshes\) lack \d+ structure\(s\) with voxels, e\.g\. \[8, ",
    ),
]


@pytest.mark.parametrize(
    ("old", "new", "error", "message"),
    [case[1:] for case in EARLY_FAILURES],
    ids=[case[0] for case in EARLY_FAILURES],
)
def test_inputs_a_package_would_fail_are_refused_before_any_work(
    tmp_path: Path, old: str, new: str, error: type[Exception], message: str
) -> None:
    """Each problem the final validation found after the meshes is now refused while the
    inputs are checked, with a message that says what to change: no stack written, no mesh
    started, nothing left."""
    script = _write_script(tmp_path, old, new)
    out = tmp_path / "out"
    steps: list[str] = []
    with pytest.raises(error, match=re.compile(message, re.DOTALL)):
        build_atlas(script, out, source_dir=DATA, progress=lambda s, d, t: steps.append(s))
    assert steps[-1] == "checking inputs"  # neither "writing stacks and tables" nor "meshes"
    assert not out.exists() or list(out.iterdir()) == []


AAL = REPO / "atlas_scripts" / "aal_human.py"
# the obvious packaging of AAL: one structure per AAL label (left and right copies apart) and
# no hemispheres stack; appended to the bundled script, so its sources and reference stay
AAL_SIDED = """

del load_hemispheres


def load_annotation(ctx):
    return _labels(ctx)[0]


def load_structures(ctx):
    root = {"acronym": "root", "id": ROOT_ID, "name": "root", "structure_id_path": [ROOT_ID],
            "rgb_triplet": [255, 255, 255]}
    return [root] + [
        {"acronym": name, "id": label, "name": name, "structure_id_path": [ROOT_ID, label],
         "rgb_triplet": _colour(i)}
        for i, (label, name) in enumerate(_label_table(ctx))
    ]
"""


def test_separate_left_right_labels_without_hemispheres_are_told_to_add_them(
    tmp_path: Path,
) -> None:
    """Real AAL labels (Precentral_L = 1, Precentral_R = 2 ...) packaged without
    load_hemispheres: about 3 % of labelled voxels match their mirror. The build stops before any
    work and says to provide the hemispheres (or fix the orientation)."""
    script = tmp_path / "aal_human.py"
    script.write_text(AAL.read_text() + AAL_SIDED)
    out = tmp_path / "out"
    steps: list[str] = []
    with pytest.raises(ValidationError) as info:
        build_atlas(script, out, source_dir=DATA, progress=lambda s, d, t: steps.append(s))
    message = str(info.value)
    assert re.search(
        r"only \d\.\d% of labelled voxels have the same label as their mirror", message
    )
    assert (
        "provide a hemispheres stack: load_hemispheres in the atlas script, with 1 for" in message
    )
    assert "check that ORIENTATION is right" in message
    assert "either side of the midline differ" not in message  # the old one-voxel probe
    assert steps[-1] == "checking inputs"
    assert not out.exists() or list(out.iterdir()) == []


def test_aal_with_a_wrong_left_right_letter_is_refused_before_any_work(tmp_path: Path) -> None:
    """AAL declared "rps" (its data are "lpi"): the brain is turned upside down and mirrored
    left to right, and its hemispheres (from the sided labels) end up on the wrong sides."""
    script = tmp_path / "aal_human.py"
    script.write_text(AAL.read_text().replace('ORIENTATION = "lpi"', 'ORIENTATION = "rps"'))
    out = tmp_path / "out"
    with pytest.raises(ValidationError, match="ORIENTATION 'rps' has the wrong left/right"):
        build_atlas(script, out, source_dir=DATA)
    assert not out.exists() or list(out.iterdir()) == []


# --- a real build of the bundled Allen script (100 um, from the checkout alone) -----------


@pytest.fixture(scope="module")
def allen_build(tmp_path_factory: pytest.TempPathFactory) -> BuildResult:
    return build_atlas(ALLEN, tmp_path_factory.mktemp("allen"), workers=2)


def test_allen_package_layout(allen_build: BuildResult) -> None:
    folder = allen_build.folder
    assert folder.name == "allen_mouse_100um_v1.2"
    assert allen_build.archive == folder.parent / "allen_mouse_100um_v1.2.tar.gz"
    names = {p.name for p in folder.iterdir()}
    expected = {"reference.tiff", "annotation.tiff", "structures.json", "structures.csv"}
    expected |= {"metadata.json", "README.txt", "meshes", "manifest.json"}
    assert expected <= names
    assert names - expected <= {"preview.png"}
    assert sorted(p.name for p in folder.parent.iterdir()) == [
        folder.name,
        allen_build.archive.name,
        "brainglobe-atlasapi",  # format v3 (the default writes both)
    ]
    assert allen_build.report.ok
    assert verify_folder(folder) == []
    assert re.fullmatch(r"[0-9a-f]{64}", allen_build.sha256 or "")


def test_allen_metadata_and_dropped_structures(allen_build: BuildResult) -> None:
    meta = json.loads((allen_build.folder / "metadata.json").read_text())
    assert list(meta)[:11] == [
        "name", "citation", "atlas_link", "species", "symmetric", "resolution",
        "orientation", "version", "shape", "additional_references", "atlas_packager",
    ]  # fmt: skip
    assert meta["resolution"] == [100.0, 100.0, 100.0]
    assert meta["shape"] == [132, 80, 114]
    assert (meta["version"], meta["symmetric"], meta["orientation"]) == ("1.2", True, "asr")
    assert meta["license"].startswith("Allen Institute Terms of Use")
    structures = json.loads((allen_build.folder / "structures.json").read_text())
    source = json.loads((DATA / "allen_mouse_100um" / "structures.json").read_text())
    removed = {s.id for s in allen_build.removed}
    assert removed
    assert [s for s in source if s["id"] not in removed] == structures
    annotation = tifffile.imread(allen_build.folder / "annotation.tiff")
    for sid in removed:  # neither it nor a descendant has voxels
        member = [s["id"] for s in source if sid in s["structure_id_path"]]
        assert not np.isin(annotation, member).any()
    manifest = json.loads((allen_build.folder / "manifest.json").read_text())
    assert manifest["build"]["removed_structures"] == sorted(
        removed, key=[s["id"] for s in source].index
    )
    assert manifest["build"]["sources"]["annotation_100"]["sha256"].startswith("c11678ac")
    assert "engine" in manifest["build"]["meshes"]


def test_allen_stacks_are_uncompressed_contiguous_asr(allen_build: BuildResult) -> None:
    reference_in = tifffile.imread(DATA / "allen_mouse_100um" / "reference.tiff")
    for name, dtype in (("reference.tiff", np.uint16), ("annotation.tiff", np.uint32)):
        with tifffile.TiffFile(allen_build.folder / name) as tif:
            assert all(page.compression == 1 for page in tif.pages)
            assert tif.series[0].dataoffset is not None  # contiguous: memory-mappable
        stack = tifffile.memmap(allen_build.folder / name, mode="r")
        assert (stack.dtype, stack.shape) == (dtype, (132, 80, 114))
    np.testing.assert_array_equal(
        tifffile.imread(allen_build.folder / "reference.tiff"), reference_in
    )


# treelib's save2file (inside BrainGlobe's create_readme) leaves its file handle open
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_structures_csv_and_readme_match_brainglobe(
    allen_build: BuildResult, tmp_path: Path
) -> None:
    from brainglobe_atlasapi.atlas_generation.metadata_utils import create_readme
    from brainglobe_atlasapi.atlas_generation.structure_json_to_csv import (
        convert_structure_json_to_csv,
    )

    folder = allen_build.folder
    convert_structure_json_to_csv(folder / "structures.json", tmp_path / "bg.csv", root=997)
    assert (folder / "structures.csv").read_bytes() == (tmp_path / "bg.csv").read_bytes()
    meta = json.loads((folder / "metadata.json").read_text())
    meta.pop("license")
    meta["resolution"], meta["shape"] = tuple(meta["resolution"]), tuple(meta["shape"])
    structures = json.loads((folder / "structures.json").read_text())
    create_readme(tmp_path, meta, structures)
    theirs = (tmp_path / "README.txt").read_text(encoding="utf-8").splitlines()
    ours = (folder / "README.txt").read_text(encoding="utf-8").splitlines()
    assert theirs[1].startswith("Generated on: ")
    license_line = next(i for i, line in enumerate(ours) if line.startswith("    license:"))
    assert ours[:license_line] == [theirs[0], *theirs[2 : license_line + 1]]
    assert ours[license_line + 1 :] == theirs[license_line + 1 :]


def test_readme_date_from_source_date_epoch(
    allen_build: BuildResult, monkeypatch: pytest.MonkeyPatch
) -> None:
    from atlasmith.hierarchy import StructureTree
    from atlasmith.metadata import AtlasMetadata

    meta = AtlasMetadata.from_file(allen_build.folder / "metadata.json")
    tree = StructureTree.from_list(json.loads((allen_build.folder / "structures.json").read_text()))
    assert "Generated on" not in readme_text(meta, tree)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1764000000")
    assert readme_text(meta, tree).splitlines()[1] == "Generated on: 24/11/2025"


def test_existing_output_is_refused(allen_build: BuildResult) -> None:
    # reproducibility across builds and --workers: test_atlas_scripts.py and the CLI test below
    with pytest.raises(AtlasExistsError, match="--overwrite"):
        build_atlas(ALLEN, allen_build.folder.parent)


def test_brainglobe_reader_opens_the_allen_archive(
    allen_build: BuildResult, tmp_path: Path
) -> None:
    from test_atlas_scripts import compare_with_brainglobe

    assert allen_build.archive is not None
    compare_with_brainglobe(allen_build.archive, tmp_path)


def test_cli_build_prints_sha256_and_validate(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "out"
    result = runner.invoke(main, ["build", str(DSURQE), "--out", str(out), "--workers", "2"])
    assert result.exit_code == 0, result.output
    archive = out / "dsurqe_mouse_200um_v1.0.tar.gz"
    from atlasmith.package import sha256_file

    assert f"sha256:  {sha256_file(archive)}" in result.output
    # the build ends by pointing at its section sheet, with what to look for on it
    sheet = out / "dsurqe_mouse_200um_v1.0" / "preview.png"
    assert sheet.is_file()
    checklist = result.output[result.output.index("Look at the section sheet") :].splitlines()
    assert checklist[0] == f"Look at the section sheet before you share the atlas: {sheet}"
    assert [line.split(":")[0] for line in checklist[1:]] == [
        "  - up and front",
        "  - left and right",
        "  - labels",
    ]
    assert "Upside down or back to front means ORIENTATION is wrong" in checklist[1]
    assert "hemisphere 1 lies on the side labelled left" in checklist[2]  # dsurqe: asymmetric
    assert "the annotation and the reference do not match" in checklist[3]
    checked = runner.invoke(main, ["validate", str(archive)])
    assert checked.exit_code == 0, checked.output
    assert "all checks passed" in checked.output
    (out / "dsurqe_mouse_200um_v1.0" / "reference.tiff").write_bytes(b"broken")
    failed = runner.invoke(main, ["validate", str(out / "dsurqe_mouse_200um_v1.0")])
    assert failed.exit_code == 1
    assert "FAIL  manifest: changed" in failed.output
    refused = runner.invoke(main, ["build", str(DSURQE), "--out", str(out)])
    assert refused.exit_code == 1
    assert "already exists" in refused.output
    replaced = runner.invoke(main, ["build", str(DSURQE), "--out", str(out), "--overwrite"])
    assert replaced.exit_code == 0, replaced.output
    assert f"sha256:  {sha256_file(archive)}" in result.output  # the same bytes again
    assert validate_folder(out / "dsurqe_mouse_200um_v1.0").ok
    assert sorted(p.name for p in out.iterdir()) == [
        "brainglobe-atlasapi",
        archive.name[:-7],
        archive.name,
    ]


@pytest.mark.parametrize("chosen", ["v1", "v3"])
def test_cli_build_format_writes_only_that_format(tmp_path: Path, chosen: str) -> None:
    out = tmp_path / "out"
    args = ["build", str(DSURQE), "--out", str(out), "--workers", "1", "--format", chosen]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    v3_manifest = out / "brainglobe-atlasapi/atlases/dsurqe_mouse_200um/3_0/manifest.json"
    if chosen == "v1":
        assert sorted(p.name for p in out.iterdir()) == [
            "dsurqe_mouse_200um_v1.0",
            "dsurqe_mouse_200um_v1.0.tar.gz",
        ]
        assert "v3:" not in result.output
    else:
        assert sorted(p.name for p in out.iterdir()) == ["brainglobe-atlasapi"]
        assert f"v3:      {v3_manifest}" in result.output
        assert "sha256:" not in result.output
        assert (  # no v1 folder, so no preview.png: how to get one
            "Look at the section sheet before you share the atlas: --format v3 alone keeps "
            f"none; `atlasmith convert {v3_manifest} --to v1 --out DIR` writes one"
        ) in result.output
        from atlasmith import Atlas

        assert Atlas(v3_manifest).metadata["symmetric"] is False  # dsurqe has hemispheres
    bad = CliRunner().invoke(main, [*args[:-1], "v2"])
    assert bad.exit_code == 2
    assert "'v2' is not one of 'v1', 'v3', 'all'" in bad.output


def test_cli_build_error_is_reported(tmp_path: Path) -> None:
    script = _write_script(tmp_path, "return ann  #", "return ann * 0  #")
    result = CliRunner().invoke(
        main, ["build", str(script), "--out", str(tmp_path / "o"), "--source-dir", str(DATA)]
    )
    assert result.exit_code == 1
    assert "annotation: is empty" in result.output
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_cli_build_names_a_missing_mesh_without_a_traceback(tmp_path: Path) -> None:
    script = _write_script(
        tmp_path,
        "def load_hemispheres(ctx):",
        "def load_meshes(ctx):\n    return {997: ctx.script_dir / 'none.obj'}\n\n"
        "def load_hemispheres(ctx):",
    )
    out = tmp_path / "o"
    result = CliRunner().invoke(
        main, ["build", str(script), "--out", str(out), "--source-dir", str(DATA)]
    )
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)  # reported, not a traceback
    assert "the mesh of structure 997" in result.output
    assert str(tmp_path / "none.obj") in result.output
    assert not out.exists() or not any(out.iterdir())
