"""The main job, end to end, as the README's first command runs it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from atlasmith import Atlas
from atlasmith.cli import main
from atlasmith.package import sha256_file, verify_folder


def test_demo_builds_publishes_serves_fetches_and_queries(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    result = CliRunner().invoke(main, ["demo", "--workdir", str(workdir)])
    assert result.exit_code == 0, result.output

    archive = workdir / "build" / "allen_mouse_100um_v1.2.tar.gz"
    published = workdir / "repository" / archive.name
    assert f"sha256 {sha256_file(archive)}" in result.output
    assert sha256_file(published) == sha256_file(archive)
    index = json.loads((workdir / "repository" / "index.json").read_text())
    entry = index["atlases"]["allen_mouse_100um"]["versions"]["1.2"]
    assert entry["sha256"] == sha256_file(archive)
    assert "allen_mouse_100um = 1.2" in (workdir / "repository" / "last_versions.conf").read_text()
    assert "serving the repository at http://127.0.0.1:" in result.output

    installed = workdir / "cache" / "allen_mouse_100um_v1.2"
    assert verify_folder(installed) == []  # what the client installed is what was built
    atlas = Atlas(installed)
    assert atlas.atlas_metadata.citation in result.output
    acronym = atlas.structure_from_coords((66, 40, 57), as_acronym=True)
    assert f"-> {acronym} ({atlas.structures[acronym]['name']}), left hemisphere" in result.output
    ch_voxels = int(np.count_nonzero(atlas.get_structure_mask("CH")))
    assert f"CH (Cerebrum) with its descendants: {ch_voxels:,} voxels" in result.output

    # the build says what it does while it runs (no 45 s of silence)
    assert "    meshes " in result.output
    assert "    writing stacks and tables" in result.output

    # run again in the same folder: the previous demo is replaced, the archive is the same
    again = CliRunner().invoke(main, ["demo", "--workdir", str(workdir)])
    assert again.exit_code == 0, again.output
    assert f"replacing the previous demo in {workdir}" in again.output
    assert f"sha256 {sha256_file(archive)}" in again.output


def test_demo_refuses_a_folder_it_did_not_make(tmp_path: Path) -> None:
    workdir = tmp_path / "mine"
    workdir.mkdir()
    (workdir / "notes.txt").write_text("keep me")
    result = CliRunner().invoke(main, ["demo", "--workdir", str(workdir)])
    assert result.exit_code == 1
    assert "not made by `atlasmith demo`" in result.output
    assert "Traceback" not in result.output
    assert sorted(p.name for p in workdir.iterdir()) == ["notes.txt"]
