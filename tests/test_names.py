"""Names and versions: BrainGlobe's naming, atlas, folder and archive names, versions."""

from __future__ import annotations

import pytest
from brainglobe_atlasapi import utils as bg_utils

from atlasmith.errors import ArchiveError, MetadataError, ScriptError, UnknownAtlasError
from atlasmith.names import (
    archive_name,
    atlas_name,
    atlas_name_from_repr,
    check_atlas_name,
    check_base_name,
    folder_name,
    format_resolution,
    parse_atlas_name,
    parse_version,
    split_archive_name,
    split_folder_name,
)


@pytest.mark.parametrize(
    ("name", "res", "major", "minor"),
    [("allen_mouse", 25, None, None), ("allen_mouse", 25, 1, 2), ("kim_dev_mouse", 31.5, 1, 3),
     ("kocher_bumblebee", 2.542, None, None)],
)  # fmt: skip
def test_atlas_name_from_repr_matches_brainglobe(
    name: str, res: float, major: int | None, minor: int | None
) -> None:
    ours = atlas_name_from_repr(name, float(res), major, minor)
    assert ours == bg_utils.atlas_name_from_repr(name, res, major, minor)


@pytest.mark.parametrize(
    "text", ["allen_mouse_25um", "allen_mouse_25um_v1.2", "kim_dev_mouse_e11-5_mri-adc_31.5um",
             "kocher_bumblebee_2.542um_v1.0"]
)  # fmt: skip
def test_parse_atlas_name_matches_brainglobe(text: str) -> None:
    name, res, version = parse_atlas_name(text)
    bg = bg_utils.atlas_repr_from_name(text)
    assert name == bg["name"]
    assert res == float(bg["resolution"])
    expected = None if bg["major_vers"] is None else f"{bg['major_vers']}.{bg['minor_vers']}"
    assert version == expected
    assert atlas_name_from_repr(name, res, *(version.split(".") if version else ())) == text


@pytest.mark.parametrize("text", ["allen_mouse", "allen_mouse_25", "_25um", "allen_mouse_25um_v1"])
def test_parse_atlas_name_rejects(text: str) -> None:
    with pytest.raises(MetadataError, match="not an atlas name"):
        parse_atlas_name(text)


@pytest.mark.parametrize(
    ("um", "text"), [(100.0, "100"), (100, "100"), (31.5, "31.5"), (2.542, "2.542"), (0.5, "0.5")]
)
def test_format_resolution(um: float, text: str) -> None:
    assert format_resolution(um) == text


@pytest.mark.parametrize("um", [0, -1.0, float("nan"), float("inf")])
def test_format_resolution_rejects(um: float) -> None:
    with pytest.raises(MetadataError, match="positive finite"):
        format_resolution(um)


def test_names_compose_and_split_back() -> None:
    atlas = atlas_name("kim_dev_mouse_e11-5_mri-adc", 31.5)
    assert atlas == "kim_dev_mouse_e11-5_mri-adc_31.5um"
    assert folder_name(atlas, "1.10") == f"{atlas}_v1.10"
    assert split_folder_name(folder_name(atlas, "1.10")) == (atlas, "1.10")
    assert split_archive_name(archive_name(atlas, "1.10")) == (atlas, "1.10")


@pytest.mark.parametrize(
    "folder",
    ["notes", "allen_mouse_v1.2", "allen_mouse_25um", "allen_mouse_25um_v1", ".x_25um_v1.2"],
)
def test_split_folder_name_rejects_what_is_no_atlas_folder(folder: str) -> None:
    assert split_folder_name(folder) is None


@pytest.mark.parametrize(
    "name",
    ["allen_mouse_25um.zip", "allen_mouse_25um_v1.2.tgz", "../x_25um_v1.2.tar.gz", "x.tar.gz"],
)
def test_split_archive_name_rejects(name: str) -> None:
    with pytest.raises(ArchiveError, match="not an atlas archive name"):
        split_archive_name(name)


def test_versions_compare_numerically_and_bad_ones_are_refused() -> None:
    assert parse_version("1.10") > parse_version("1.9") > parse_version("0.99")
    for bad in ("1", "1.2.3", "v1.2", "1.x", ""):
        with pytest.raises(MetadataError, match="not an atlas data version"):
            parse_version(bad)


@pytest.mark.parametrize("name", ["allen_mouse", "Allen_mouse_25um", "../x_25um", "a/b_25um", ""])
def test_check_atlas_name_refuses_what_cannot_be_an_atlas_name(name: str) -> None:
    with pytest.raises(UnknownAtlasError, match="not a valid atlas name") as caught:
        check_atlas_name(name)
    assert isinstance(caught.value, ValueError)  # as BrainGlobe's "is not a valid atlas name!"


@pytest.mark.parametrize("name", ["allen", "allen_mouse_25um", "Allen_mouse", "allen__mouse"])
def test_check_base_name_refuses(name: str) -> None:
    with pytest.raises(ScriptError, match="author_species"):
        check_base_name(name)
