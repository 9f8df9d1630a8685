"""Preview figures of an atlas: section sheets and mesh sheets (PNG, matplotlib Agg).

A *section sheet* shows frontal (coronal), sagittal and horizontal sections of the reference
with the annotation drawn over it in each structure's ``rgb_triplet`` and outlined. Every
panel carries anatomical direction labels derived from the metadata orientation through
brainglobe-space, and the slice index: an atlas whose data does not match its declared
orientation shows a brain on its side or upside down under labels that say otherwise.

A *mesh sheet* shows the root mesh and the top-level regions (children of the root) seen from
three directions, drawn as an orthographic projection with per-face shading (painter's
algorithm), so no display or OpenGL is needed.

The panel layout and its labels are also written into each PNG as a text chunk
(``atlasmith:panels``, JSON), so programs can check what a figure claims.
"""

from atlasmith.previews._layout import (
    OVERLAY_ALPHA,
    PanelLayout,
    load_atlas_files,
    read_panels,
    root_structure,
    section_layout,
    top_level_structures,
    viewer_side,
)
from atlasmith.previews._meshes import MeshReader, render_mesh_sheet
from atlasmith.previews._sections import (
    colour_lut,
    label_colours,
    render_section_sheet,
    sheet_checklist,
    slice_positions,
    write_package_preview,
)

__all__ = [
    "OVERLAY_ALPHA",
    "MeshReader",
    "PanelLayout",
    "colour_lut",
    "label_colours",
    "load_atlas_files",
    "read_panels",
    "render_mesh_sheet",
    "render_section_sheet",
    "root_structure",
    "section_layout",
    "sheet_checklist",
    "slice_positions",
    "top_level_structures",
    "viewer_side",
    "write_package_preview",
]
