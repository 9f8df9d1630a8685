"""brainrender 2.2.2 + brainglobe-atlasapi 3.0.2 rendering atlasmith's v3 Allen atlas, offscreen."""

import sys

import vedo

vedo.settings.multi_samples = 0  # else only outlines on these machines
from brainrender import Scene, settings  # noqa: E402

settings.OFFSCREEN = True
vedo.settings.multi_samples = 0  # brainrender sets it on import: set it again
scene = Scene(
    atlas_name="allen_mouse_100um",
    check_latest=False,
    inset=False,
    title="atlasmith v3 atlas, atlasapi 3.0.2",
)
print(
    "atlas:",
    type(scene.atlas).__mro__[1],
    scene.atlas.metadata["version"],
    scene.atlas.root_dir if hasattr(scene.atlas, "root_dir") else "",
)
scene.add_brain_region("CH", "TH", "CB", "HY", alpha=0.6)
scene.render(interactive=False, camera="three_quarters", zoom=1.3)
scene.screenshot(name=sys.argv[1])
scene.close()
