"""RepositoryIndex: parsing, ordering, latest, yanking and the BrainGlobe .conf rendering."""

from __future__ import annotations

import configparser
import json

import pytest
from hypothesis import given, strategies as st

from atlasmith.errors import AtlasExistsError, AtlasNotFoundError, RepositoryError
from atlasmith.names import parse_version
from atlasmith.repository import IndexEntry, RepositoryIndex


def entry(name: str = "allen_mouse_25um", version: str = "1.2", **kw: object) -> IndexEntry:
    fields: dict[str, object] = {
        "archive": f"{name}_v{version}.tar.gz",
        "sha256": "ab" * 32,
        "size": 10,
        "published": "2026-11-24T21:00:00Z",
    }
    fields.update(kw)
    return IndexEntry(atlas_name=name, version=version, **fields)  # type: ignore[arg-type]


def test_versions_compare_numerically() -> None:
    index = RepositoryIndex((entry(version="1.9"), entry(version="1.10"), entry(version="1.2")))
    assert [e.version for e in index.versions("allen_mouse_25um")] == ["1.2", "1.9", "1.10"]
    latest = index.latest("allen_mouse_25um")
    assert latest is not None
    assert latest.version == "1.10"
    assert parse_version("2.0") > parse_version("1.99")


def test_latest_ignores_yanked_but_exact_version_stays() -> None:
    index = RepositoryIndex((entry(version="1.2"), entry(version="1.3")))
    yanked = index.with_yanked("allen_mouse_25um", "1.3", reason="wrong annotation")
    assert yanked.entry("allen_mouse_25um").version == "1.2"
    assert yanked.entry("allen_mouse_25um", "1.3").yanked
    assert yanked.entry("allen_mouse_25um", "1.3").yank_reason == "wrong annotation"
    assert not index.entry("allen_mouse_25um", "1.3").yanked  # the original is unchanged
    only_yanked = yanked.with_yanked("allen_mouse_25um", "1.2")
    assert only_yanked.latest("allen_mouse_25um") is None
    assert "allen_mouse_25um" not in only_yanked.render_conf()
    with pytest.raises(AtlasNotFoundError, match="yanked"):
        only_yanked.entry("allen_mouse_25um")


def test_every_version_yanked_names_each_reason_and_the_exact_install() -> None:
    index = RepositoryIndex((entry(version="1.1"), entry(version="1.2")), "https://atlases.org")
    index = index.with_yanked("allen_mouse_25um", "1.1")
    index = index.with_yanked("allen_mouse_25um", "1.2", reason="wrong orientation")
    with pytest.raises(AtlasNotFoundError) as raised:
        index.entry("allen_mouse_25um")
    message = str(raised.value)
    assert "\n" not in message
    assert "has no version" not in message
    assert "1.2 (wrong orientation), 1.1 (no reason given)" in message
    assert "`atlasmith install allen_mouse_25um --version 1.2`" in message
    assert "fetch('allen_mouse_25um', '1.2')" in message
    assert index.entry("allen_mouse_25um", "1.1").yanked  # named exactly, still there


def test_yanking_again_keeps_the_reason_and_unyanking_offers_it_again() -> None:
    index = RepositoryIndex((entry(version="1.2"), entry(version="1.3")))
    first = index.with_yanked("allen_mouse_25um", "1.3", reason="wrong annotation")
    for again in (None, "", "  "):
        kept = first.with_yanked("allen_mouse_25um", "1.3", again)
        assert kept.entry("allen_mouse_25um", "1.3").yank_reason == "wrong annotation"
        assert kept == first
    changed = first.with_yanked("allen_mouse_25um", "1.3", "mislabelled hemispheres")
    assert changed.entry("allen_mouse_25um", "1.3").yank_reason == "mislabelled hemispheres"
    back = changed.with_unyanked("allen_mouse_25um", "1.3")
    assert back == index  # offered again, its reason dropped
    assert back.entry("allen_mouse_25um").version == "1.3"
    assert "allen_mouse_25um = 1.3" in back.render_conf()
    assert back.with_unyanked("allen_mouse_25um", "1.3") == back  # not yanked: unchanged
    stored = json.loads(back.to_json())["atlases"]["allen_mouse_25um"]["versions"]["1.3"]
    assert "yank_reason" not in stored
    with pytest.raises(AtlasNotFoundError, match="no version '7.0'"):
        back.with_unyanked("allen_mouse_25um", "7.0")


def test_render_conf_is_brainglobe_ini() -> None:
    index = RepositoryIndex(
        (entry(), entry("kim_dev_mouse_e11-5_mri-adc_31.5um", "1.3"), entry(version="1.10"))
    )
    parser = configparser.ConfigParser()
    parser.read_string(index.render_conf())
    assert dict(parser["atlases"]) == {
        "allen_mouse_25um": "1.10",
        "kim_dev_mouse_e11-5_mri-adc_31.5um": "1.3",
    }


def test_json_round_trip_and_layout() -> None:
    index = RepositoryIndex(
        (entry(metadata={"species": "Mus musculus"}, preview="previews/x.png"),)
    )
    data = json.loads(index.to_json())
    assert data["format"] == "atlasmith-index/1"
    version = data["atlases"]["allen_mouse_25um"]["versions"]["1.2"]
    assert version["archive"] == "allen_mouse_25um_v1.2.tar.gz"
    assert version["yanked"] is False
    assert version["metadata"] == {"species": "Mus musculus"}
    assert RepositoryIndex.from_json(index.to_json()) == index
    assert index.to_json().endswith(b"\n")


def test_publishing_a_version_twice_is_refused() -> None:
    index = RepositoryIndex((entry(),))
    with pytest.raises(AtlasExistsError, match="immutable"):
        index.with_entry(entry(sha256="cd" * 32))


def test_missing_atlas_and_version_are_named() -> None:
    index = RepositoryIndex((entry(),))
    with pytest.raises(AtlasNotFoundError, match="available: 1.2"):
        index.entry("allen_mouse_25um", "9.9")
    with pytest.raises(AtlasNotFoundError, match="No atlas 'nope_1um'"):
        index.entry("nope_1um")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("archive", "../../etc/passwd"),
        ("sha256", "xyz"),
        ("size", -1),
        ("preview", "../secret.png"),
        ("preview", "/etc/passwd"),
    ],
)
def test_bad_entries_are_refused(field: str, value: object) -> None:
    with pytest.raises(RepositoryError, match="index.json"):
        entry(**{field: value})


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        '{"format": "something-else/1"}',
        '{"format": "atlasmith-index/1", "atlases": {"a_1um": {"versions": {"1.0": {}}}}}',
        '{"format": "atlasmith-index/1", "atlases": {"a_1um": {"versions": {"x": {}}}}}',
        '{"format": "atlasmith-index/1", "atlases": []}',
        "[]",
    ],
)
def test_damaged_index_raises_repository_error(text: str) -> None:
    with pytest.raises(RepositoryError):
        RepositoryIndex.from_json(text)


versions = st.tuples(st.integers(0, 30), st.integers(0, 300)).map(lambda t: f"{t[0]}.{t[1]}")
names = st.sampled_from(["allen_mouse_25um", "kim_mouse_10um", "whs_sd_rat_39um"])


@given(st.lists(st.tuples(names, versions, st.booleans()), max_size=12, unique_by=lambda t: t[:2]))
def test_round_trip_and_latest_invariants(items: list[tuple[str, str, bool]]) -> None:
    index = RepositoryIndex(tuple(entry(n, v, yanked=y) for n, v, y in items))
    assert RepositoryIndex.from_json(index.to_json()) == index
    for name in index.names():
        live = [parse_version(v) for n, v, y in items if n == name and not y]
        latest = index.latest(name)
        assert (latest.version_key if latest else None) == (max(live) if live else None)
