"""Derive the bundled 100 um annotation from Allen's official 25 um file (every 4th voxel).

Run from the repository root with ../shared/data beside it:
    python data/allen_mouse_100um/make_annotation.py
"""

from pathlib import Path

import nrrd

SOURCE = Path("../shared/data/allen_ccf2017_25um/annotation_25.nrrd")
TARGET = Path(__file__).with_name("annotation_100um.nrrd")

data, header = nrrd.read(str(SOURCE))
sub = data[::4, ::4, ::4].copy()
header = {
    "space": header.get("space", "left-posterior-superior"),
    "space directions": [[100.0, 0, 0], [0, 100.0, 0], [0, 0, 100.0]],
    "space origin": [0.0, 0.0, 0.0],
    "encoding": "gzip",
}
nrrd.write(str(TARGET), sub, header, compression_level=9)
print(TARGET, sub.shape, sub.dtype)
