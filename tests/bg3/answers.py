"""Run inside BrainGlobe 3.0.2's own virtual environment (never imports atlasmith).

Usage: python answers.py REQUEST.json OUT.npz

REQUEST: {"brainglobe_dir": ..., "atlas": "allen_mouse_100um", "points": "points.npy",
"masks": ["CH", ...], "meshes": ["CH", ...]} (or {"manifest": path} to open a v3 atlas by
its manifest with ``core.Atlas``). Writes what BrainGlobe 3.0.2 answers: structure ids and
acronyms at the points, the masks, the meshes' points and cells, the structure list.
"""

import json
import sys
from pathlib import Path

import numpy as np

KEYS = ("acronym", "id", "name", "structure_id_path", "rgb_triplet")  # not "mesh": lazy


def _plain(value: object) -> object:
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value.item() if hasattr(value, "item") else value


def main() -> None:
    request = json.loads(Path(sys.argv[1]).read_text())
    if "manifest" in request:
        from brainglobe_atlasapi.core import Atlas

        atlas = Atlas(Path(request["manifest"]))
    else:
        from brainglobe_atlasapi import BrainGlobeAtlas

        atlas = BrainGlobeAtlas(
            request["atlas"], brainglobe_dir=request["brainglobe_dir"], check_latest=False
        )
    points = np.load(request["points"])
    out = {
        "ids": np.array([atlas.structure_from_coords(tuple(p)) for p in points]),
        "acronyms": np.array(
            [atlas.structure_from_coords(tuple(p), as_acronym=True) for p in points]
        ),
        "annotation": np.asarray(atlas.annotation),
        "reference": np.asarray(atlas.reference),
        "hemispheres": np.asarray(atlas.hemispheres),
        "structures": np.array(
            json.dumps(
                [{key: _plain(atlas.structures[s][key]) for key in KEYS} for s in atlas.structures]
            )
        ),
        "metadata": np.array(
            json.dumps(
                {
                    k: atlas.metadata[k]
                    for k in ("name", "resolution", "shape", "symmetric", "orientation")
                }
            )
        ),
    }
    for name in request.get("masks", []):
        out[f"mask_{name}"] = np.asarray(atlas.get_structure_mask(name))
    for name in request.get("meshes", []):
        mesh = atlas.mesh_from_structure(name)
        out[f"mesh_points_{name}"] = np.asarray(mesh.points)
        out[f"mesh_cells_{name}"] = np.asarray(mesh.cells[0].data)
    np.savez(sys.argv[2], **out)


if __name__ == "__main__":
    main()
