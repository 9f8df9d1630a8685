"""Neuroglancer's own Python server (the neuroglancer PyPI package) showing atlasmith's v3
annotation + meshes, served by a plain CORS HTTP server on loopback. Prints the viewer URL."""

import http.server
import sys
import threading
import time
from pathlib import Path

import neuroglancer

tree = Path(sys.argv[1])


class Handler(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *a, **k):
        super().__init__(*a, directory=str(tree), **k)

    def end_headers(self):
        self.send_header("Access-Control-Allow-Origin", "*")
        super().end_headers()

    def log_message(self, *a):
        pass


data = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
threading.Thread(target=data.serve_forever, daemon=True).start()
source = (
    f"precomputed://http://127.0.0.1:{data.server_port}/annotation-sets/"
    "allen_mouse_100um-annotation/3_2/annotations.precomputed"
)
neuroglancer.set_server_bind_address("127.0.0.1")
viewer = neuroglancer.Viewer()
with viewer.txn() as s:
    s.dimensions = neuroglancer.CoordinateSpace(
        names=["x", "y", "z"], units="nm", scales=[100000] * 3
    )
    s.layers["allen_mouse_100um annotation (atlasmith v3)"] = neuroglancer.SegmentationLayer(
        source=source, segments=[672, 1089, 549, 512], selected_alpha=0.5
    )
    s.position = [57, 40, 66]
    s.layout = "4panel"
    s.projection_scale = 230
    s.cross_section_scale = 0.22
    s.projection_orientation = [0.35, -0.3, -0.1, 0.88]
print(viewer.get_viewer_url(), flush=True)
time.sleep(float(sys.argv[2]))
