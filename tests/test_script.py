"""Atlas scripts: loading, constants, sources with sha256, the new-script template."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from atlasmith.cli import main
from atlasmith.errors import (
    AtlasExistsError,
    OfflineError,
    OrientationError,
    ScriptError,
    SourceError,
)
from atlasmith.script import load_script, make_context, write_script_template
from atlasmith.sources import Source, SourceResolver

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "atlas_scripts"
ANNOTATION_SHA = "c11678acc9d614e3bd152d2d811086d98bca7d18234c32df70fab5d286f39da7"
REFERENCE_SHA = "8137e914edfecd29f97310937d080c8c1e54909dc885108b4643820e9c2ae6d3"
STRUCTURES_SHA = "7157e6130b354f6bebc21aa79f882274cbbe253ac916d97123805af3b4ff8abd"

MINIMAL = """
__version__ = 1
ATLAS_NAME = "test_mouse"
SPECIES = "Mus musculus"
ATLAS_LINK = "https://example.org"
CITATION = "unpublished"
ATLAS_PACKAGER = "tester"
ORIENTATION = "asr"
ROOT_ID = 997
RES_UM = 100
def load_reference(ctx): raise RuntimeError("not used")
def load_annotation(ctx): raise RuntimeError("boom")
def load_structures(ctx): return []
"""


def _script(tmp_path: Path, text: str = MINIMAL, **replace: str) -> Path:
    for old, new in replace.items():
        text = text.replace(old, new)
    path = tmp_path / "atlas.py"
    path.write_text(text)
    return path


def test_bundled_scripts_parse() -> None:
    allen = load_script(SCRIPTS / "allen_mouse.py")
    assert (allen.name, allen.version, allen.root_id) == ("allen_mouse", "1.2", 997)
    assert [r[0] for r in allen.resolutions] == [100.0, 50.0, 25.0]
    assert allen.pick_resolution(None) == (100.0, 100.0, 100.0)
    assert allen.pick_resolution(25) == (25.0, 25.0, 25.0)
    assert allen.license is not None
    assert load_script(SCRIPTS / "aal_human.py").orientation == "lpi"
    assert load_script(SCRIPTS / "dsurqe_mouse.py").orientation == "ipl"
    with pytest.raises(
        ScriptError, match=r"cannot build at 10 um; it offers \['100', '50', '25'\]"
    ):
        allen.pick_resolution(10)


@pytest.mark.parametrize(
    ("old", "new", "error", "message"),
    [
        ('CITATION = "unpublished"', 'CITATION = "Smith 2020"', ScriptError, "must contain a DOI"),
        ('ATLAS_NAME = "test_mouse"', 'ATLAS_NAME = "Test"', ScriptError, "author_species"),
        ('ATLAS_NAME = "test_mouse"', 'ATLAS_NAME = "a_b_25um"', ScriptError, "resolution suffix"),
        ("RES_UM = 100", "RES_UM = 0", ScriptError, "RES_UM: expected a positive number"),
        ("RES_UM = 100", "RES_UM = (10, -1, 10)", ScriptError, "RES_UM"),
        ('ORIENTATION = "asr"', 'ORIENTATION = "aar"', OrientationError, "invalid orientation"),
        ('SPECIES = "Mus musculus"\n', "", ScriptError, r"lacks \['SPECIES'\]"),
        ("ROOT_ID = 997", "ROOT_ID = 0", ScriptError, "ROOT_ID"),
        ('ATLAS_LINK = "https://example.org"', 'ATLAS_LINK = "example"', ScriptError, "ATLAS_LINK"),
        ("__version__ = 1", "__version__ = -1", ScriptError, "__version__"),
        ("RES_UM = 100", "RES_UM = 100\nRESOLUTIONS = [50, 100]", ScriptError, "first entry"),
        ("def load_structures", "def other", ScriptError, r"lacks \['load_structures'\]"),
        ("RES_UM = 100", "RES_UM = 100\n1/0", ScriptError, "failed to import: ZeroDivisionError"),
    ],
)
def test_bad_constants(
    tmp_path: Path, old: str, new: str, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        load_script(_script(tmp_path, **{old: new}))


def test_every_constant_problem_comes_in_one_error(tmp_path: Path) -> None:
    script = _script(
        tmp_path,
        **{
            'ATLAS_LINK = "https://example.org"': 'ATLAS_LINK = "example"',
            'ORIENTATION = "asr"': 'ORIENTATION = "aar"',
            "ROOT_ID = 997": "ROOT_ID = 0",
            'SPECIES = "Mus musculus"\n': "",
        },
    )
    with pytest.raises(ScriptError) as caught:
        load_script(script)
    lines = str(caught.value).splitlines()
    assert "has 4 problems" in lines[0]
    problems = [line for line in lines if line.startswith("  - ")]
    assert len(problems) == 4
    expected = (
        "lacks ['SPECIES']",
        "ATLAS_LINK: expected",
        "orientation 'aar'",
        "ROOT_ID: expected",
    )
    for text in expected:
        assert sum(text in line for line in problems) == 1, text


def test_bad_source_entries_are_named(tmp_path: Path) -> None:
    script = _script(tmp_path, **{"RES_UM = 100": "RES_UM = 100\nSOURCES = {'a': 'x.nrrd'}"})
    with pytest.raises(ScriptError, match=r"SOURCES: expected string keys .*\{'a': 'x.nrrd'\}"):
        load_script(script)


def test_loader_errors_name_the_loader(tmp_path: Path) -> None:
    script = load_script(_script(tmp_path))
    ctx = make_context(script, script.default_resolution, None)
    with pytest.raises(
        ScriptError, match=r"load_annotation\(\) of atlas script .* RuntimeError: boom"
    ):
        script.call("load_annotation", ctx)


def test_missing_script(tmp_path: Path) -> None:
    with pytest.raises(ScriptError, match="does not exist"):
        load_script(tmp_path / "nope.py")


# --- sources ---------------------------------------------------------------------------


def test_source_lookup_order_and_hash(tmp_path: Path, bundled_data: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    (second / "allen").mkdir(parents=True)
    shutil.copy(bundled_data / "annotation_100um.nrrd", second / "allen" / "ann.nrrd")
    sources = {"ann": Source("allen/ann.nrrd", sha256=ANNOTATION_SHA)}
    resolver = SourceResolver(sources, [first, second], cache_dir=tmp_path / "cache")
    assert resolver.path("ann") == second / "allen" / "ann.nrrd"
    assert resolver.resolved == {"ann": second / "allen" / "ann.nrrd"}
    # a wrong copy found first is an error, not skipped
    (first / "allen").mkdir(parents=True)
    (first / "allen" / "ann.nrrd").write_bytes(b"not the annotation")
    fresh = SourceResolver(sources, [first, second], cache_dir=tmp_path / "cache")
    wrong = hashlib.sha256(b"not the annotation").hexdigest()
    with pytest.raises(SourceError, match=f"has sha256 {wrong}, expected {ANNOTATION_SHA}"):
        fresh.path("ann")


def test_source_in_cache_and_missing(
    tmp_path: Path, bundled_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    (cache / ANNOTATION_SHA).mkdir(parents=True)
    shutil.copy(bundled_data / "annotation_100um.nrrd", cache / ANNOTATION_SHA / "ann.nrrd")
    found = SourceResolver({"a": Source("x/ann.nrrd", ANNOTATION_SHA)}, [], cache_dir=cache)
    assert found.path("a") == cache / ANNOTATION_SHA / "ann.nrrd"
    missing = SourceResolver({"a": Source("x/other.nrrd", "0" * 64)}, [tmp_path], cache_dir=cache)
    with pytest.raises(SourceError, match="was not found; looked at: .*--source-dir"):
        missing.path("a")
    with pytest.raises(SourceError, match="does not declare"):
        missing.path("b")
    monkeypatch.setenv("ATLASMITH_OFFLINE", "1")
    remote = Source("x/other.nrrd", "0" * 64, url="https://example.org/other.nrrd")
    with pytest.raises(OfflineError, match="ATLASMITH_OFFLINE is set"):
        SourceResolver({"a": remote}, [tmp_path], cache_dir=cache).path("a")


def test_sources_are_downloaded_unless_offline_and_verified(
    tmp_path: Path, bundled_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from test_download import RepoServer

    served = tmp_path / "served"
    served.mkdir()
    shutil.copy(bundled_data / "annotation_100um.nrrd", served / "ann.nrrd")
    (served / "other.nrrd").write_bytes(b"a different file")
    server = RepoServer(served).start()
    try:
        good = Source("x/ann.nrrd", ANNOTATION_SHA, url=server.url + "ann.nrrd")
        bad = Source("x/other.nrrd", ANNOTATION_SHA, url=server.url + "other.nrrd")
        sources = {"good": good, "bad": bad}
        cache = tmp_path / "cache"
        # "false" is a valid way to say "not offline" (it was once read as offline)
        monkeypatch.setenv("ATLASMITH_OFFLINE", "false")
        found = SourceResolver(sources, [tmp_path / "nowhere"], cache_dir=cache).path("good")
        assert found == cache / ANNOTATION_SHA / "ann.nrrd"
        assert hashlib.sha256(found.read_bytes()).hexdigest() == ANNOTATION_SHA
        with pytest.raises(SourceError, match="not the file the script declares"):
            SourceResolver(sources, [], cache_dir=tmp_path / "cache2").path("bad")
        assert not any(p.is_file() for p in (tmp_path / "cache2").rglob("*"))
        monkeypatch.setenv("ATLASMITH_OFFLINE", "true")
        with pytest.raises(OfflineError, match="offline mode is on"):
            SourceResolver(sources, [], cache_dir=tmp_path / "cache3").path("good")
        assert server.gets("ann.nrrd") == [None]  # one download, none while offline
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("../x", "0" * 64), "relative POSIX path"),
        (("/abs", "0" * 64), "relative POSIX path"),
        (("x", "ABC"), "64 lowercase hex"),
        (("x", "0" * 64, "ftp://x"), "http"),
    ],
)
def test_bad_source_declarations(args: tuple[str, ...], message: str) -> None:
    with pytest.raises(SourceError, match=message):
        Source(*args)


def test_script_finds_project_data(monkeypatch: pytest.MonkeyPatch) -> None:
    script = load_script(SCRIPTS / "allen_mouse.py")
    ctx = make_context(script, script.default_resolution, None)
    expected = REPO / "data" / "allen_mouse_100um" / "annotation_100um.nrrd"
    assert ctx.source("annotation_100") == expected
    monkeypatch.setenv("ATLASMITH_OFFLINE", "1")
    with pytest.raises(OfflineError, match="annotation_25.nrrd.*Pass --source-dir"):
        ctx.source("annotation_25")  # only under --source-dir (../shared/data), or downloaded


# --- the template ----------------------------------------------------------------------


def test_template_is_a_valid_script(tmp_path: Path) -> None:
    path = write_script_template("smith_axolotl", tmp_path)
    script = load_script(path)
    assert script.name == "smith_axolotl"
    assert set(script.loaders) == {"load_reference", "load_annotation", "load_structures"}
    ctx = make_context(script, script.default_resolution, None)
    with pytest.raises(ScriptError, match="NotImplementedError"):
        script.call("load_reference", ctx)
    with pytest.raises(AtlasExistsError):
        write_script_template("smith_axolotl", tmp_path)
    with pytest.raises(ScriptError, match="author_species"):
        write_script_template("Smith", tmp_path)


def test_new_script_cli(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["new-script", "doe_rat", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "doe_rat.py").is_file()
    again = runner.invoke(main, ["new-script", "doe_rat", "--out", str(tmp_path)])
    assert again.exit_code == 1
    assert "already exists" in again.output


def test_new_script_takes_the_name_with_or_without_py(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["new-script", "doe_rat.py", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert [p.name for p in tmp_path.iterdir()] == ["doe_rat.py"]  # not doe_rat.py.py
    assert load_script(tmp_path / "doe_rat.py").name == "doe_rat"
    again = runner.invoke(main, ["new-script", "doe_rat", "--out", str(tmp_path)])
    assert again.exit_code == 1  # the same file
    assert "already exists" in again.output


def test_template_builds_once_its_loaders_are_filled_in(tmp_path: Path) -> None:
    from atlasmith.build import build_atlas

    path = write_script_template("smith_mouse", tmp_path)
    text = path.read_text()
    crop = "[60:80, 20:40, 42:72]"  # a real block of the Allen volumes, centred left-right
    fills = {
        "read your reference image, e.g. from ctx.source('reference')": (
            f"import tifffile; return tifffile.imread(ctx.source('reference')){crop}"
        ),
        "read your annotation, e.g. from ctx.source('annotation')": (
            f"import nrrd; return nrrd.read(str(ctx.source('annotation')))[0]{crop}"
        ),
        "return your structures": (
            "import json; return json.loads(ctx.source('structures').read_text())"
        ),
    }
    for message, code in fills.items():
        text = text.replace(f'raise NotImplementedError("{message}")', code)
    text = text.replace(
        "SOURCES: dict[str, Source] = {",
        "SOURCES: dict[str, Source] = {\n"
        f'    "reference": Source("allen_mouse_100um/reference.tiff", sha256="{REFERENCE_SHA}"),\n'
        f'    "annotation": Source("allen_mouse_100um/annotation_100um.nrrd", '
        f'sha256="{ANNOTATION_SHA}"),\n'
        f'    "structures": Source("allen_mouse_100um/structures.json", '
        f'sha256="{STRUCTURES_SHA}"),',
    )
    path.write_text(text)
    result = build_atlas(path, tmp_path / "out", source_dir=REPO / "data", workers=1)
    assert result.report.ok
    assert result.folder.name == "smith_mouse_100um_v1.0"
    assert result.removed  # most of the 840 Allen structures have no voxel in the block
