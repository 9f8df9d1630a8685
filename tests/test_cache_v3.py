"""The cache installs where both BrainGlobe generations look: the v1.2 folder in
``<brainglobe_dir>/NAME_vM.m/`` and the same atlas as BrainGlobe 3 components in
``<brainglobe_dir>/brainglobe-atlasapi/``, ``last_versions.conf`` in both places;
``brainglobe_dir`` from BrainGlobe's own ``bg_config.conf``."""

from __future__ import annotations

import configparser
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from atlasmith.atlas import Atlas
from atlasmith.cache import AtlasCache
from atlasmith.cli import main
from atlasmith.config import brainglobe_dir, load_settings
from atlasmith.errors import ConfigError, IntegrityError
from test_cache import NAME, assert_clean_state, make_cache

V3 = "brainglobe-atlasapi"


def _conf(path: Path) -> dict[str, str]:
    config = configparser.ConfigParser()
    config.read(path)
    return dict(config["atlases"]) if config.has_section("atlases") else {}


def _v3_manifest(cache_dir: Path, version: str) -> Path:
    return cache_dir / V3 / "atlases" / NAME / version.replace(".", "_") / "manifest.json"


# --- where: BrainGlobe's own brainglobe_dir ------------------------------------------------


def _write_bg_config(folder: Path, brainglobe: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "bg_config.conf").write_text(
        f"[default_dirs]\nbrainglobe_dir = {brainglobe}\ninterm_download_dir = {brainglobe}\n"
    )


def test_cache_defaults_to_brainglobes_own_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ATLASMITH_CACHE_DIR")
    config = tmp_path / "bgconfig"
    monkeypatch.setenv("BRAINGLOBE_CONFIG_DIR", str(config))
    assert brainglobe_dir() is None
    assert load_settings().cache_dir == Path("~/.brainglobe").expanduser()
    _write_bg_config(config, tmp_path / "atlases here")
    assert load_settings().cache_dir == tmp_path / "atlases here"
    monkeypatch.setenv("ATLASMITH_CACHE_DIR", str(tmp_path / "mine"))  # atlasmith's own wins
    assert load_settings().cache_dir == tmp_path / "mine"
    assert load_settings(cache_dir=tmp_path / "cli").cache_dir == tmp_path / "cli"


def test_unreadable_brainglobe_config_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ATLASMITH_CACHE_DIR")
    monkeypatch.setenv("BRAINGLOBE_CONFIG_DIR", str(tmp_path))
    (tmp_path / "bg_config.conf").write_text("brainglobe_dir = /x\n[no section end")
    with pytest.raises(ConfigError, match=r"bg_config.conf \(BrainGlobe's config\)"):
        load_settings()


# --- what: both generations, from every kind of install --------------------------------------


def test_archive_install_writes_both_generations(
    packages: dict[str, Path], cache_dir: Path
) -> None:
    cache = make_cache("http://127.0.0.1:9/", cache_dir)
    installed = cache.install_archive(packages["1.2"])
    manifest = _v3_manifest(cache_dir, "3.2")
    assert manifest.is_file()
    assert _conf(cache_dir / "last_versions.conf") == {NAME: "1.2"}
    assert _conf(cache_dir / V3 / "atlases" / "last_versions.conf") == {NAME: "3.2"}
    assert [a.path for a in cache.installed_v3()] == [manifest]
    v1, v3 = Atlas(installed.path), Atlas(manifest)
    points = np.random.default_rng(0).integers(0, v1.shape, size=(2000, 3))
    assert np.array_equal(v1.structure_from_coords(points), v3.structure_from_coords(points))
    assert cache.verify(NAME) == []
    assert_clean_state(cache_dir)


def test_another_version_replaces_the_v3_copy_too(
    packages: dict[str, Path], cache_dir: Path
) -> None:
    cache = make_cache("http://127.0.0.1:9/", cache_dir)
    cache.install_archive(packages["1.2"])
    old = json.loads(_v3_manifest(cache_dir, "3.2").read_text())
    cache.install_archive(packages["1.1"])
    assert [a.version for a in cache.installed_v3()] == ["3.1"]
    assert not _v3_manifest(cache_dir, "3.2").parent.exists()
    for key in ("template", "annotation_set", "terminology", "coordinate_space"):
        assert not (cache_dir / V3 / old[key]["location"][1:]).exists(), key
    assert _conf(cache_dir / "last_versions.conf") == {NAME: "1.2"}  # the newer one known
    assert_clean_state(cache_dir)


def test_components_of_other_atlases_are_left_alone(
    packages: dict[str, Path], cache_dir: Path
) -> None:
    cache = make_cache("http://127.0.0.1:9/", cache_dir)
    cache.install_archive(packages["1.2"])
    shared = cache_dir / V3 / "templates" / "allen_mouse-template" / "3_2"  # BrainGlobe's naming
    shared.mkdir(parents=True)
    manifest = _v3_manifest(cache_dir, "3.2")
    listed = json.loads(manifest.read_text())
    listed["template"]["location"] = "/templates/allen_mouse-template/3_2"
    manifest.write_text(json.dumps(listed))
    cache.remove(NAME)
    assert shared.is_dir()  # maybe another resolution's: not this atlas's to delete
    assert cache.installed_v3() == []
    assert cache.installed() == []


def test_install_format_v1_writes_no_v3(packages: dict[str, Path], cache_dir: Path) -> None:
    result = CliRunner().invoke(
        main,
        ["install", str(packages["1.2"]), "--cache-dir", str(cache_dir), "--format", "v1"],
    )
    assert result.exit_code == 0, result.output
    assert (cache_dir / f"{NAME}_v1.2").is_dir()
    assert not (cache_dir / V3).exists()
    assert _conf(cache_dir / "last_versions.conf") == {NAME: "1.2"}


def test_bundle_install_writes_both_confs(
    packages: dict[str, Path], tmp_path: Path, cache_dir: Path
) -> None:
    from test_download import write_repository

    bundle = write_repository(tmp_path / "bundle", [packages["1.1"], packages["1.2"]])
    cache = make_cache("http://127.0.0.1:9/", cache_dir, formats=("v1", "v3"))
    cache.install(str(bundle))
    assert _conf(cache_dir / V3 / "atlases" / "last_versions.conf") == {NAME: "3.2"}
    assert _conf(cache_dir / "last_versions.conf") == {NAME: "1.2"}


def test_install_a_v3_atlas(allen_all_build: Any, cache_dir: Path) -> None:
    cache = make_cache("http://127.0.0.1:9/", cache_dir)
    (installed,) = cache.install(str(allen_all_build.v3_manifest.parent))
    assert installed.path == cache_dir / "allen_mouse_100um_v1.2"
    manifest = _v3_manifest(cache_dir, "3.2")
    assert json.loads(manifest.read_text()) == json.loads(allen_all_build.v3_manifest.read_text())
    assert_clean_state(cache_dir)


def test_damaged_v3_atlas_installs_nothing(
    allen_all_build: Any, tmp_path: Path, cache_dir: Path
) -> None:
    root = tmp_path / V3
    shutil.copytree(allen_all_build.v3_manifest.parents[3], root)
    manifest = root / "atlases" / NAME / "3_2" / "manifest.json"
    listed = json.loads(manifest.read_text())
    mesh = next(k for k in listed["atlasmith"]["files"] if k.endswith("/mesh/672"))
    data = bytearray((root / mesh).read_bytes())
    data[100] ^= 0x10
    (root / mesh).write_bytes(bytes(data))
    cache = make_cache("http://127.0.0.1:9/", cache_dir)
    with pytest.raises(IntegrityError, match="mesh/672 is damaged"):
        cache.install(str(manifest))
    assert cache.installed() == []
    assert cache.installed_v3() == []
    assert not (cache_dir / V3).exists()
    assert not (cache_dir / "last_versions.conf").exists()


def test_verify_finds_a_damaged_v3_file(packages: dict[str, Path], cache_dir: Path) -> None:
    cache = make_cache("http://127.0.0.1:9/", cache_dir)
    cache.install_archive(packages["1.2"])
    listed = json.loads(_v3_manifest(cache_dir, "3.2").read_text())["atlasmith"]["files"]
    chunk = next(k for k in listed if "annotations_compressed.ome.zarr/s0/c/" in k)
    (cache_dir / V3 / chunk).write_bytes(b"not a chunk")
    problems = cache.verify(NAME)
    assert len(problems) == 1
    assert chunk in problems[0]


# --- BrainGlobe 2.3.1 (in this venv) opens it offline with check_latest=True -------------------


def test_brainglobe_2_3_1_opens_the_install_offline(
    packages: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import brainglobe_atlasapi.config as bg2_config
    from brainglobe_atlasapi import BrainGlobeAtlas as BG2

    monkeypatch.delenv("ATLASMITH_CACHE_DIR")
    where, config = tmp_path / "brainglobe", tmp_path / "bgconfig"
    monkeypatch.setenv("BRAINGLOBE_CONFIG_DIR", str(config))
    # 2.3.1 reads BRAINGLOBE_CONFIG_DIR once, when imported (maybe by an earlier test)
    monkeypatch.setattr(bg2_config, "CONFIG_DIR", config)
    monkeypatch.setattr(bg2_config, "CONFIG_PATH", config / "bg_config.conf")
    _write_bg_config(config, where)
    cache = AtlasCache(load_settings(repository="http://127.0.0.1:9/"))
    assert cache.root == where
    cache.install_archive(packages["1.2"])
    atlas = BG2(NAME, check_latest=True)  # its remote check fails here: it reads the conf
    assert atlas.local_full_name == f"{NAME}_v1.2"
    assert atlas.structure_from_coords((66, 40, 57)) == Atlas(
        where / f"{NAME}_v1.2"
    ).structure_from_coords((66, 40, 57))
