"""BrainGlobe's atlas folder, format v1.2 (brainglobe-atlasapi up to 2.3.1): read and write.

``NAME_RESum_vM.m/`` holds ``reference.tiff`` (uint16), ``annotation.tiff`` (uint32, 0 = no
structure), ``hemispheres.tiff`` (uint8, asymmetric atlases only), one ``<name>.tiff`` per
additional reference, ``structures.json``, ``structures.csv``, ``metadata.json``,
``README.txt`` and ``meshes/<id>.obj``; every stack in "asr" orientation. atlasmith adds
``manifest.json`` and ``preview.png``, which BrainGlobe ignores.
"""

from __future__ import annotations

import fcntl
import json
import os
import weakref
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy.typing as npt

from atlasmith._types import Float64Array, IntArray
from atlasmith.config import source_date_epoch
from atlasmith.errors import AtlasFormatError
from atlasmith.formats._base import AtlasFiles, load_mesh_file, read_json
from atlasmith.formats._tiff import read_stack, write_stack
from atlasmith.hierarchy import StructureTree
from atlasmith.metadata import METADATA_KEYS, AtlasMetadata

__all__ = [
    "MESHES",
    "METADATA",
    "PREVIEW",
    "README",
    "STRUCTURES",
    "STRUCTURES_CSV",
    "V1Folder",
    "readme_text",
    "stack_file",
    "structures_csv",
    "write_folder",
]

METADATA = "metadata.json"
STRUCTURES = "structures.json"
STRUCTURES_CSV = "structures.csv"
README = "README.txt"
MESHES = "meshes"
PREVIEW = "preview.png"
#: The stacks every folder has (additional references and hemispheres are optional).
REQUIRED_STACKS = ("reference", "annotation")
# README.txt lists BrainGlobe's metadata keys (not other extra keys) plus the data's licence
_README_KEYS = (*METADATA_KEYS, "license")


def stack_file(name: str) -> str:
    """The file of a stack: ``"annotation"`` -> ``"annotation.tiff"``."""
    return f"{name}.tiff"


def _read_json(path: Path) -> Any:
    return read_json(
        path,
        f"{path.parent} is not a complete atlas folder (it needs {METADATA} and {STRUCTURES}). "
        "Check the path, or re-install the atlas.",
    )


class V1Folder(AtlasFiles):
    """A BrainGlobe v1.x atlas folder (made by atlasmith or by BrainGlobe), read lazily.

    Parameters
    ----------
    path : str or Path
        The folder, e.g. ``~/.brainglobe/allen_mouse_25um_v1.2``. Nothing is read until asked.
    """

    format_name = "brainglobe-v1"

    def __init__(self, path: str | Path, pin: bool = False) -> None:
        self.path = Path(path)
        #: Where files are read from: ``path``, or, pinned, the folder itself through an open
        #: descriptor (``/proc/self/fd/N``), which follows it when an update moves it away.
        self.source = self.path
        self._pin: _Pin | None = _Pin.take(self.path) if pin else None
        if self._pin is not None:
            self.source = self._pin.path

    def close(self) -> None:
        """Let go of a pinned folder (an update may then delete the version read here)."""
        if self._pin is not None:
            self._pin.release()

    @cached_property
    def metadata_dict(self) -> dict[str, Any]:
        """``metadata.json`` as stored."""
        data = _read_json(self.source / METADATA)
        if not isinstance(data, dict):
            raise AtlasFormatError(
                f"{self.path / METADATA} must hold a JSON object, got a {type(data).__name__}. "
                "Re-install or rebuild the atlas."
            )
        return data

    @cached_property
    def structures_list(self) -> list[dict[str, Any]]:
        """``structures.json`` as stored."""
        data = _read_json(self.source / STRUCTURES)
        if not isinstance(data, list):
            raise AtlasFormatError(
                f"{self.path / STRUCTURES} must hold a JSON list of structures, got a "
                f"{type(data).__name__}. Re-install or rebuild the atlas."
            )
        return data

    def stack(self, name: str) -> npt.NDArray[Any]:
        """``<name>.tiff``, memory-mapped (read whole when it cannot be)."""
        return read_stack(self.source / stack_file(name))

    @property
    def mesh_folder(self) -> Path:
        """``meshes/``."""
        return self.path / MESHES

    def mesh_path(self, structure_id: int) -> Path:
        """``meshes/<id>.obj``."""
        return self.mesh_folder / f"{int(structure_id)}.obj"

    def mesh_files(self) -> dict[int, Path]:
        """Every ``meshes/<id>.obj`` by id (other file names are left out: see
        :meth:`misnamed_mesh_files`)."""
        return {int(p.stem): p for p in self._obj_files() if p.stem.isdigit()}

    def misnamed_mesh_files(self) -> list[Path]:
        """OBJ files in ``meshes/`` whose name is not a structure id."""
        return [p for p in self._obj_files() if not p.stem.isdigit()]

    def read_mesh(self, structure_id: int) -> tuple[Float64Array, IntArray]:
        from atlasmith.meshes.obj import read_obj

        return read_obj(self._source_of(self.mesh_path(structure_id)))

    def load_mesh(self, structure_id: int, label: object = None) -> Any:
        shown = self.mesh_path(structure_id)
        label = structure_id if label is None else label
        return load_mesh_file(self._source_of(shown), label, shown=shown)

    def _source_of(self, path: Path) -> Path:
        """Where a file of the folder (named under ``path``) is read from."""
        return self.source / path.relative_to(self.path)

    def _obj_files(self) -> list[Path]:
        """The OBJ files (named under ``path``; listed where they are read from)."""
        found = self._source_of(self.mesh_folder)
        names = sorted(p.name for p in found.glob("*.obj")) if found.is_dir() else []
        return [self.mesh_folder / name for name in names]


class _Pin:
    """A shared lock on an atlas folder, held through an open descriptor of it.

    While an :class:`~atlasmith.atlas.Atlas` holds one, an update that replaces the version
    moves the folder to the cache's trash but does not delete it (it tries an exclusive lock
    first: :func:`atlasmith._install.remove_unless_read`), and the reader goes on reading it
    through ``/proc/self/fd/N``; the next locked operation of the cache deletes it once no
    reader holds it. Linux only (elsewhere nothing is pinned, as before).
    """

    def __init__(self, descriptor: int) -> None:
        self.descriptor: int | None = descriptor
        self.path = Path(f"/proc/self/fd/{descriptor}")
        self._finalizer = weakref.finalize(self, os.close, descriptor)

    @classmethod
    def take(cls, folder: Path) -> _Pin | None:
        if not Path("/proc/self/fd").is_dir():
            return None
        try:
            descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            return None  # not a folder (yet): reading it reports what is missing
        try:
            fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:  # being deleted right now: read by path, as without a pin
            os.close(descriptor)
            return None
        return cls(descriptor)

    def release(self) -> None:
        self._finalizer()  # closes the descriptor, which drops the lock
        self.descriptor = None


# --- writing ---------------------------------------------------------------------------------


def structures_csv(tree: StructureTree) -> str:
    """``structures.csv`` as BrainGlobe writes it (sorted by name, parent id as a float)."""
    import pandas as pd

    rows = [
        {
            "acronym": s.acronym,
            "id": s.id,
            "name": s.name,
            "structure_id_path": "/" + "".join(f"{i}/" for i in s.structure_id_path),
            "parent_structure_id": s.parent_id,
        }
        for s in tree.structures
    ]
    frame = pd.DataFrame(rows).astype({"parent_structure_id": "float64"})
    return str(frame.sort_values("name").to_csv(index=False, lineterminator="\n"))


def _generated_on() -> str:
    epoch = source_date_epoch()
    if epoch is None:
        return ""
    date = datetime.fromtimestamp(epoch, tz=UTC).strftime("%d/%m/%Y")
    return f"Generated on: {date}\n"


def readme_text(metadata: AtlasMetadata, tree: StructureTree) -> str:
    """``README.txt`` in BrainGlobe's layout; the date only when SOURCE_DATE_EPOCH is set."""
    fields = {k: v for k, v in metadata.to_dict().items() if k in _README_KEYS}
    fields["resolution"], fields["shape"] = metadata.resolution, metadata.shape
    lines = "".join(f"    {key}:   {value}\n" for key, value in fields.items())
    return (
        f"-- BRAINGLOBE ATLAS --\n{_generated_on()}\n------------------------------\n\n\n"
        f"{lines}\n\n\n------------------------------\n\n\n\n\n\n"
        f"-- BRAIN STRUCTURES TREE --\n{tree.to_treelib().show(stdout=False)}"
    )


def _write_text(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8", newline="\n")


def write_folder(
    folder: Path,
    metadata: AtlasMetadata,
    tree: StructureTree,
    stacks: Mapping[str, npt.NDArray[Any]],
) -> None:
    """Write the stacks, the structure tables, the metadata and README into ``folder``.

    ``stacks`` maps stack names (``reference``, ``annotation``, ``hemispheres`` and the
    additional references) to "asr" arrays of their final dtypes. Meshes are written by
    the mesh engine into ``meshes/``.
    """
    for name, array in stacks.items():
        write_stack(folder / stack_file(name), array)
    _write_text(folder / STRUCTURES, json.dumps(tree.to_list()))
    _write_text(folder / METADATA, json.dumps(metadata.to_dict()))
    _write_text(folder / STRUCTURES_CSV, structures_csv(tree))
    _write_text(folder / README, readme_text(metadata, tree))
