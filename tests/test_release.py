"""Releases: build and publish every new script version once; report scripts that changed
without a version bump instead of republishing them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from atlasmith.release import decide, find_scripts, release
from atlasmith.repository import IndexEntry, LocalRepository

REPO = Path(__file__).resolve().parents[1]

# A small real atlas script: the bundled Allen 100 um data, its labels merged into their
# depth-2 ancestors (CH, BS, CB...) so that the build meshes ~17 structures, not 840.
SCRIPT = """
import json
import numpy as np
from atlasmith.sources import Source

__version__ = {minor}
ATLAS_NAME = "release_mouse"
SPECIES = "Mus musculus"
ATLAS_LINK = "http://www.brain-map.org"
CITATION = "Wang et al 2020, https://doi.org/10.1016/j.cell.2020.04.007"
ATLAS_PACKAGER = "atlasmith tests"
ORIENTATION = "asr"
ROOT_ID = 997
RES_UM = 100
SOURCES = {{
    "annotation": Source(
        "allen_mouse_100um/annotation_100um.nrrd",
        sha256="c11678acc9d614e3bd152d2d811086d98bca7d18234c32df70fab5d286f39da7",
    ),
    "reference": Source(
        "allen_mouse_100um/reference.tiff",
        sha256="8137e914edfecd29f97310937d080c8c1e54909dc885108b4643820e9c2ae6d3",
    ),
    "structures": Source(
        "allen_mouse_100um/structures.json",
        sha256="7157e6130b354f6bebc21aa79f882274cbbe253ac916d97123805af3b4ff8abd",
    ),
}}
{extra}

def load_reference(ctx):
    import tifffile
    return tifffile.imread(ctx.source("reference"))


def load_structures(ctx):
    structures = json.loads(ctx.source("structures").read_text())
    return [s for s in structures if len(s["structure_id_path"]) <= 3]


def load_annotation(ctx):
    import nrrd
    annotation, _ = nrrd.read(str(ctx.source("annotation")))
    structures = json.loads(ctx.source("structures").read_text())
    ancestor = {{s["id"]: s["structure_id_path"][:3][-1] for s in structures}}
    labels, inverse = np.unique(annotation, return_inverse=True)
    mapped = np.array([ancestor.get(int(v), 0) for v in labels], dtype=np.uint32)
    return mapped[inverse].reshape(annotation.shape)
"""


def write_script(folder: Path, minor: int, extra: str = "") -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / "release_mouse.py"
    path.write_text(SCRIPT.format(minor=minor, extra=extra))
    return path


def test_release_publishes_once_then_reports_changes(tmp_path: Path) -> None:
    scripts, repo = tmp_path / "scripts", LocalRepository(tmp_path / "repo")
    write_script(scripts, minor=0)
    (scripts / "_helpers.py").write_text("# not an atlas script\n")
    data = REPO / "data"
    first = release(scripts, repo, source_dir=data)
    assert [o.status for o in first.outcomes] == ["published"]
    assert first.ok
    entry = repo.read_index().entry("release_mouse_100um")
    assert entry.version == "1.0"
    assert entry.build["script"]["name"] == "release_mouse.py"

    second = release(scripts, repo, source_dir=data)
    assert [o.status for o in second.outcomes] == ["skipped"]
    assert "Nothing to publish" in second.render()
    assert repo.read_index() == LocalRepository(tmp_path / "repo").read_index()

    write_script(scripts, minor=0, extra="# a fix, but no version bump\n")
    changed = release(scripts, repo, source_dir=data)
    assert [o.status for o in changed.outcomes] == ["changed"]
    assert not changed.ok
    assert "bump __version__" in changed.render()
    assert [e.version for e in repo.read_index().versions("release_mouse_100um")] == ["1.0"]

    write_script(scripts, minor=1, extra="# a fix, version bumped\n")
    bumped = release(scripts, repo, source_dir=data)
    assert [o.status for o in bumped.outcomes] == ["published"]
    assert repo.read_index().entry("release_mouse_100um").version == "1.1"


def test_broken_script_is_reported_and_others_still_release(tmp_path: Path) -> None:
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "broken_mouse.py").write_text("__version__ = 'x'\n")
    report = release(scripts, LocalRepository(tmp_path / "repo"))
    assert [o.status for o in report.outcomes] == ["failed"]
    assert not report.ok
    assert "broken_mouse.py" in report.render()


def test_decide_is_pure() -> None:
    entry = IndexEntry(
        atlas_name="a_mouse_100um",
        version="1.0",
        archive="a_mouse_100um_v1.0.tar.gz",
        sha256="ab" * 32,
        size=1,
        published="2026-01-01T00:00:00Z",
        build={"script": {"name": "a.py", "sha256": "cd" * 32}},
    )
    assert decide("cd" * 32, entry)[0] == "skip"
    assert decide("ef" * 32, entry)[0] == "changed"
    assert decide("ef" * 32, None)[0] == "publish"


@pytest.mark.slow
def test_release_of_the_bundled_scripts_publishes_each_once(tmp_path: Path) -> None:
    scripts = REPO / "atlas_scripts"
    repo = LocalRepository(tmp_path / "repo")
    first = release(scripts, repo, source_dir=REPO / "data")
    assert first.ok, first.render()
    assert len(first.published) == len(find_scripts(scripts)) == 3
    assert len(repo.read_index().names()) == 3
    again = release(scripts, repo, source_dir=REPO / "data")
    assert again.published == []
    assert {o.status for o in again.outcomes} == {"skipped"}
    assert "Nothing to publish" in again.render()


def test_release_command_reports_and_fails_on_broken_scripts(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from atlasmith.cli import main

    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "broken_mouse.py").write_text("__version__ = 'x'\n")
    command = ["release", str(scripts), "--to", str(tmp_path / "repo"), "--new-repository"]
    result = CliRunner().invoke(main, command)
    assert result.exit_code == 1
    assert "failed" in result.output
    assert "broken_mouse.py" in result.output


def test_release_reports_each_step_with_the_meshes_counted_from_the_start(
    tmp_path: Path,
) -> None:
    scripts, repo = tmp_path / "scripts", LocalRepository(tmp_path / "repo")
    write_script(scripts, minor=0)
    calls: list[tuple[str, int, int]] = []
    report = release(
        scripts, repo, source_dir=REPO / "data", progress=lambda *call: calls.append(call)
    )
    assert report.ok, report.render()
    prefix = "release_mouse_100um 1.0: "
    assert all(step.startswith(prefix) for step, _, _ in calls)
    steps = list(dict.fromkeys(step.removeprefix(prefix) for step, _, _ in calls))
    archive = "release_mouse_100um_v1.0.tar.gz"
    assert steps[0] == "loading script"
    assert steps[-2:] == [f"checking {archive}", f"storing {archive}"]
    meshes = [(done, total) for step, done, total in calls if step == prefix + "meshes"]
    entry = repo.read_index().entry("release_mouse_100um")
    assert entry.structures is not None
    structures = len(json.loads((tmp_path / "repo" / entry.structures).read_text()))
    # the step opens, then its total comes at once, before any mesh is made, and stays
    assert meshes[:2] == [(0, 0), (0, structures)]
    assert all(total == structures for _, total in meshes[1:])
    assert [done for done, _ in meshes[1:]] == sorted(done for done, _ in meshes[1:])
    assert meshes[-1] == (structures, structures)
