"""The ``atlasmith`` command line: each command parses its options, calls one library
function and prints the result. Library modules are imported inside the commands so that
``atlasmith --help`` stays fast."""

from __future__ import annotations

import click

from atlasmith import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="atlasmith")
def main() -> None:
    """Package, publish, download and query brain atlases (BrainGlobe format)."""


# --- the main job and reading (issue 2) -------------------------------------------------

# --- generation: build, validate, new-script (issue 3) ---------------------------------

# --- meshes (issue 4) --------------------------------------------------------------------

# --- repository: serve, publish, release, yank, token (issue 5) ------------------------

# --- client: list, install, update, verify, info, remove (issue 6) ----------------------

# --- inspection (issue 7) ----------------------------------------------------------------
