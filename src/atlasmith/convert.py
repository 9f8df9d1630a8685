"""Convert an atlas between BrainGlobe's two generations.

- v1.2 (a folder or its ``.tar.gz``) -> BrainGlobe 3 components in ``OUT/brainglobe-atlasapi/``
  (version ``3.<minor>``): the source is validated first, then written through the same
  :class:`~atlasmith.formats.V3Writer` as a build.
- BrainGlobe 3 -> BrainGlobe 3: re-packages an atlas BrainGlobe's own packager wrote into
  atlasmith's layout, with every file's sha256 in its manifest.
- BrainGlobe 3 (atlasmith's, or one BrainGlobe 3.0.2's packager wrote) -> a v1.2 folder and
  archive in ``OUT`` (version ``1.<minor>``), for tools pinned to brainglobe-atlasapi 2.3.1:
  read through :class:`~atlasmith.formats.V3Atlas` (every piece checked against the manifest's
  sha256 when it has them) and written through the build's own :func:`write_package` (so the
  folder is validated, previewed and archived like any build).

Stacks and structures come through identical; meshes are decoded from Draco (16-bit
quantization: within half a step, ``extent / 131070``, of the OBJ they came from) or encoded
from OBJ. Everything is written in a temporary folder and moved into place when complete.
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from atlasmith._fs import temporary_folder
from atlasmith._types import PathLike
from atlasmith.errors import ConfigError, MissingFileError
from atlasmith.formats import (
    V3_ROOT,
    AtlasFiles,
    V1Folder,
    V3Atlas,
    V3Layout,
    check_v3_free,
    find_manifest,
    install_v3,
    v3_version,
)
from atlasmith.names import ARCHIVE_SUFFIX, parse_version

__all__ = ["convert_atlas"]


def _v1_version(version: str) -> str:
    """``"3.2"`` -> ``"1.2"``."""
    return f"1.{parse_version(version)[1]}"


def _open_source(source: Path, work: Path) -> AtlasFiles:
    """The atlas at ``source``: a v3 manifest or version folder, a v1.2 folder, or a v1.2
    archive (extracted safely into ``work``). A v1.2 source is validated first."""
    from atlasmith.validation import require_valid, validate_folder

    if find_manifest(source) is not None:
        return V3Atlas(source)
    if source.is_file() and source.name.endswith(ARCHIVE_SUFFIX):
        from atlasmith.package import safe_extract

        source = safe_extract(source, work)
    elif not source.is_dir():
        raise MissingFileError(
            f"{source} is not an atlas: give a v1.2 folder or .tar.gz archive, or a BrainGlobe 3 "
            "manifest (.../brainglobe-atlasapi/atlases/<atlas>/<version>/manifest.json) or its "
            "folder."
        )
    require_valid(validate_folder(source))
    return V1Folder(source)


def _to_v3(files: AtlasFiles, out: Path, overwrite: bool, workers: int) -> Path:
    meta = files.metadata
    root = out / V3_ROOT
    check_v3_free(root, V3Layout(meta.atlas_name, v3_version(meta.version)), overwrite)
    out.mkdir(parents=True, exist_ok=True)
    with temporary_folder(out, f"{meta.atlas_name}.convert-") as staging:
        return install_v3(files, staging, root, overwrite, workers)


def _to_v1(files: AtlasFiles, out: Path, overwrite: bool, workers: int) -> Path:
    """Write a v3 atlas as a v1.2 folder + archive through the build's writer."""
    from atlasmith.build import write_package
    from atlasmith.inputs import AtlasInputs

    meta = replace(files.metadata, version=_v1_version(files.metadata.version))
    with tempfile.TemporaryDirectory(prefix="atlasmith-convert-") as tmp:
        meshes = _meshes_as_obj(files, Path(tmp))
        stacks: dict[str, Any] = {
            name: np.asarray(files.stack(name)) for name in meta.additional_references
        }
        inputs = AtlasInputs(
            metadata=meta,
            tree=files.tree,
            reference=np.asarray(files.reference),
            annotation=np.asarray(files.annotation),
            hemispheres=None if meta.symmetric else np.asarray(files.stack("hemispheres")),
            additional_references=stacks,
            meshes=meshes,
            mesh_transform=None,  # decoded into package OBJ files already
            removed=(),
        )
        out.mkdir(parents=True, exist_ok=True)
        info = {"converted_from": {"format": files.format_name, "path": str(files.path)}}
        result = write_package(
            inputs, out, build_info=info, overwrite=overwrite, workers=workers, formats="v1"
        )
    assert result.folder is not None
    return result.folder


def _meshes_as_obj(files: AtlasFiles, folder: Path) -> dict[int, Path]:
    """Every mesh of ``files`` decoded (and checked) into ``folder/<id>.obj``."""
    from atlasmith.meshes.obj import obj_bytes

    written = {}
    for sid in sorted(files.mesh_files()):
        if sid not in files.tree:
            continue
        points, faces = files.read_mesh(sid)
        path = folder / f"{sid}.obj"
        path.write_bytes(obj_bytes(points, faces, decimals=4))
        written[sid] = path
    return written


def convert_atlas(
    source: PathLike,
    to: str,
    out_dir: PathLike,
    *,
    overwrite: bool = False,
    workers: int = 2,
) -> Path:
    """Convert an atlas to the other BrainGlobe format.

    Parameters
    ----------
    source : str or Path
        A v1.2 folder or ``.tar.gz`` archive, or a BrainGlobe 3 atlas (its manifest or its
        version folder).
    to : {"v1", "v3"}
        The format to write.
    out_dir : str or Path
        v1: the folder that receives ``<name>_<res>um_v1.<minor>/`` and its archive; v3: the
        folder that receives (or holds) ``brainglobe-atlasapi/`` (a ``brainglobe_dir``).
    overwrite : bool
        Replace an existing output.
    workers : int
        Threads (v3) or processes (v1 previews and checks) to use.

    Returns
    -------
    Path
        The v1.2 folder, or the v3 manifest.

    Raises
    ------
    ConfigError
        ``to`` is neither v1 nor v3.
    MissingFileError, AtlasFormatError, IntegrityError, ValidationError, HierarchyError
        The source is not a readable, valid atlas (naming the file).
    AtlasExistsError
        The output exists and ``overwrite`` is False.
    """
    if to not in ("v1", "v3"):
        raise ConfigError(f"--to must be v1 or v3, not {to!r}.")
    out = Path(out_dir)
    with tempfile.TemporaryDirectory(prefix="atlasmith-source-") as work:
        files = _open_source(Path(source), Path(work))
        files.metadata  # noqa: B018 - parse (and check) before any long work
        files.tree  # noqa: B018
        if to == "v3":  # from v3 too: re-packages a BrainGlobe-made atlas with its checksums
            return _to_v3(files, out, overwrite, workers)
        if isinstance(files, V1Folder):
            raise ConfigError(f"{source} is already a v1.2 atlas: nothing to convert.")
        return _to_v1(files, out, overwrite, workers)
