"""Helpers shared by the repository, server and release tests: real packages made from the
bundled Allen 100 um atlas, renamed or re-versioned as a test needs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import tifffile

from atlasmith.package import make_archive, write_manifest

#: Depth at which the real Allen annotation is coarsened for the repository tests: meshing 840
#: structures for every package would dominate the test time; ~20 top-level regions do not.
_DEPTH = 2


def make_valid_folder(example_atlas_dir: Path, dest: Path) -> Path:
    """A complete, valid package folder from the bundled Allen 100 um data.

    The annotation is the real Allen annotation with every label replaced by its ancestor at
    depth 2 (CH, BS, CB, ...), the structure list pruned to what remains, and one real
    marching-cubes mesh (zmesh) per remaining structure, in micrometres, asr axes.
    """
    folder = dest / example_atlas_dir.name
    shutil.copytree(example_atlas_dir, folder, ignore=shutil.ignore_patterns("meshes"))
    structures = json.loads((folder / "structures.json").read_text())
    to_ancestor = {s["id"]: s["structure_id_path"][: _DEPTH + 1][-1] for s in structures}
    annotation = tifffile.imread(folder / "annotation.tiff")
    labels, inverse = np.unique(annotation, return_inverse=True)
    mapped = np.array([to_ancestor.get(int(v), 0) for v in labels], dtype=np.uint32)
    coarse = mapped[inverse].reshape(annotation.shape)
    tifffile.imwrite(folder / "annotation.tiff", coarse)
    kept = [s for s in structures if len(s["structure_id_path"]) <= _DEPTH + 1]
    present = set(np.unique(coarse).tolist())
    kept = [s for s in kept if any(i in present for i in _subtree(s["id"], kept))]
    (folder / "structures.json").write_text(json.dumps(kept, indent=4))
    _write_csv(folder / "structures.csv", kept)
    _write_meshes(folder / "meshes", coarse, kept)
    return folder


def _subtree(sid: int, structures: list[dict[str, object]]) -> list[int]:
    return [int(s["id"]) for s in structures if sid in s["structure_id_path"]]  # type: ignore[operator, call-overload]


def _write_csv(path: Path, structures: list[dict[str, object]]) -> None:
    lines = ["acronym,id,name,structure_id_path,parent_structure_id"]
    for s in structures:
        id_path = s["structure_id_path"]
        assert isinstance(id_path, list)
        parent = id_path[-2] if len(id_path) > 1 else ""
        path_text = "/" + "/".join(str(i) for i in id_path) + "/"
        lines.append(f'{s["acronym"]},{s["id"]},"{s["name"]}",{path_text},{parent}')
    path.write_text("\n".join(lines) + "\n")


def _write_meshes(out: Path, annotation: np.ndarray, structures: list[dict[str, object]]) -> None:
    import zmesh

    out.mkdir()
    resolution = 100.0
    for s in structures:
        ids = _subtree(int(s["id"]), structures)  # type: ignore[call-overload]
        mask = np.isin(annotation, ids).astype(np.uint8)
        mesher = zmesh.Mesher((resolution, resolution, resolution))
        mesher.mesh(np.asfortranarray(mask))
        mesh = mesher.get(1, normals=False, reduction_factor=4)
        (out / f"{s['id']}.obj").write_bytes(mesh.to_obj())


def make_package(
    valid_folder: Path, work: Path, name: str = "allen_mouse", version: str = "1.2"
) -> Path:
    """Write ``<name>_100um_v<version>.tar.gz`` (a real, valid package) under ``work``."""
    folder = work / f"{name}_100um_v{version}"
    shutil.copytree(valid_folder, folder)
    meta_path = folder / "metadata.json"
    metadata = json.loads(meta_path.read_text())
    metadata.update(name=name, version=version)
    meta_path.write_text(json.dumps(metadata, indent=4))
    build = {"script": {"name": f"{name}.py", "sha256": "0" * 64}, "test": True}
    write_manifest(folder, build)
    archive = make_archive(folder, work)
    shutil.rmtree(folder)
    return archive


class PackageFactory:
    """Makes each (name, version) package once per session and hands out its path."""

    def __init__(self, example_atlas_dir: Path, work: Path) -> None:
        self.work = work
        self.valid_folder = make_valid_folder(example_atlas_dir, work)
        self._made: dict[tuple[str, str], Path] = {}

    def __call__(self, name: str = "allen_mouse", version: str = "1.2") -> Path:
        key = (name, version)
        if key not in self._made:
            work = self.work / f"{name}-{version}"
            work.mkdir()
            self._made[key] = make_package(self.valid_folder, work, name, version)
        return self._made[key]


_FACTORIES: dict[Path, PackageFactory] = {}


def package_factory(example_atlas_dir: Path, work: Path) -> PackageFactory:
    """One factory per session (shared by every test module that needs packages)."""
    if example_atlas_dir not in _FACTORIES:
        _FACTORIES[example_atlas_dir] = PackageFactory(example_atlas_dir, work)
    return _FACTORIES[example_atlas_dir]
