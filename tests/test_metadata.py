"""AtlasMetadata: parsing the real bundled metadata, validation errors, round trips."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, strategies as st

from atlasmith.errors import MetadataError
from atlasmith.metadata import METADATA_KEYS, AtlasMetadata


def _real(bundled_data: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((bundled_data / "metadata.json").read_text())
    return data


def test_reads_the_real_bundled_metadata(bundled_data: Path) -> None:
    meta = AtlasMetadata.from_file(bundled_data / "metadata.json")
    assert meta.name == "allen_mouse"
    assert meta.resolution == (100.0, 100.0, 100.0)
    assert meta.shape == (132, 80, 114)
    assert meta.symmetric is True
    assert meta.version == "1.2"
    assert meta.additional_references == ()
    assert meta.atlas_packager is None
    assert list(meta.extra) == ["trasform_to_bg"]  # the legacy key survives
    assert meta.atlas_name == "allen_mouse_100um"
    assert meta.folder_name == "allen_mouse_100um_v1.2"


def test_to_dict_has_brainglobe_key_order_then_extras(bundled_data: Path) -> None:
    raw = _real(bundled_data)
    out = AtlasMetadata.from_dict(raw).to_dict()
    assert list(out)[: len(METADATA_KEYS)] == list(METADATA_KEYS)
    assert list(out)[len(METADATA_KEYS) :] == ["trasform_to_bg"]
    assert {k: v for k, v in out.items() if k in raw} == raw


def test_is_frozen(bundled_data: Path) -> None:
    meta = AtlasMetadata.from_dict(_real(bundled_data))
    with pytest.raises(dataclasses.FrozenInstanceError):
        meta.name = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        meta.extra["license"] = "x"  # type: ignore[index]


@pytest.mark.parametrize(
    "key", ["name", "citation", "atlas_link", "species", "symmetric", "resolution",
            "orientation", "version", "shape"]
)  # fmt: skip
def test_missing_key_is_named(bundled_data: Path, key: str) -> None:
    raw = _real(bundled_data)
    del raw[key]
    with pytest.raises(MetadataError, match=repr(key)):
        AtlasMetadata.from_dict(raw)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("name", "Allen_Mouse"),
        ("name", ""),
        ("citation", 3),
        ("symmetric", "yes"),
        ("symmetric", 1),
        ("resolution", [100.0, 100.0]),
        ("resolution", [100.0, -1.0, 100.0]),
        ("resolution", [100.0, True, 100.0]),
        ("resolution", "100"),
        ("shape", [132, 80.5, 114]),
        ("shape", [132, 0, 114]),
        ("version", "1"),
        ("version", 1.2),
        ("orientation", "abc"),
        ("orientation", "aas"),
        ("additional_references", "cells"),
        ("additional_references", ["a", "a"]),
        ("additional_references", [1]),
        ("atlas_packager", 5),
    ],
)
def test_bad_value_is_named_with_expected_and_got(
    bundled_data: Path, key: str, value: object
) -> None:
    raw = _real(bundled_data)
    raw[key] = value
    with pytest.raises(MetadataError, match=f"metadata key '{key}': expected .*got"):
        AtlasMetadata.from_dict(raw)


def test_not_a_mapping() -> None:
    with pytest.raises(MetadataError, match="JSON object"):
        AtlasMetadata.from_dict([1, 2])  # type: ignore[arg-type]


def test_missing_and_corrupt_files(tmp_path: Path) -> None:
    with pytest.raises(MetadataError, match="does not exist"):
        AtlasMetadata.from_file(tmp_path / "metadata.json")
    (tmp_path / "metadata.json").write_text("{not json")
    with pytest.raises(MetadataError, match="not valid JSON"):
        AtlasMetadata.from_file(tmp_path / "metadata.json")


_names = st.from_regex(r"[a-z][a-z0-9]{0,6}_[a-z][a-z0-9-]{0,8}", fullmatch=True)
_text = st.text(min_size=1, max_size=30)
_pos = st.floats(min_value=0.5, max_value=1000, allow_nan=False)


@st.composite
def _metadata_dicts(draw: st.DrawFn) -> dict[str, Any]:
    d: dict[str, Any] = {
        "name": draw(_names),
        "citation": draw(_text),
        "atlas_link": draw(_text),
        "species": draw(_text),
        "symmetric": draw(st.booleans()),
        "resolution": draw(st.lists(_pos, min_size=3, max_size=3)),
        "orientation": draw(st.sampled_from(["asr", "lpi", "ras", "sal"])),
        "version": f"{draw(st.integers(0, 9))}.{draw(st.integers(0, 99))}",
        "shape": draw(st.lists(st.integers(1, 2000), min_size=3, max_size=3)),
        "additional_references": draw(st.lists(_names, max_size=3, unique=True)),
        "atlas_packager": draw(st.none() | _text),
    }
    extra = draw(st.dictionaries(st.from_regex(r"x_[a-z]{1,5}", fullmatch=True), st.integers()))
    d.update(extra)
    return d


@given(_metadata_dicts())
def test_round_trips_through_json(d: dict[str, Any]) -> None:
    meta = AtlasMetadata.from_dict(d)
    again = AtlasMetadata.from_dict(json.loads(json.dumps(meta.to_dict())))
    assert again == meta
    assert meta.to_dict() == d  # these dicts are already in BrainGlobe's key order


def test_hashable_and_extra_compared(bundled_data: Path) -> None:
    raw = _real(bundled_data)
    meta = AtlasMetadata.from_dict(raw)
    assert hash(meta) == hash(AtlasMetadata.from_dict(raw))
    assert meta != AtlasMetadata.from_dict({**raw, "license": "CC-BY-4.0"})


@pytest.mark.parametrize("key", ["citation", "atlas_link", "species"])
def test_empty_credit_strings_are_allowed(bundled_data: Path, key: str) -> None:
    raw = _real(bundled_data)
    raw[key] = ""
    assert getattr(AtlasMetadata.from_dict(raw), key) == ""
