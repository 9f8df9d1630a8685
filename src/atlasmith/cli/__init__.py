"""The ``atlasmith`` command line: each command parses its options, calls one library function
and prints the result; atlasmith's errors become one clear message (exit status 1).

Commands by user: the packager's (``_generate``), the maintainer's (``_publish``) and the
user's (``_client``). Library modules are imported inside the commands, so that
``atlasmith --help`` stays fast.
"""

from __future__ import annotations

import click

from atlasmith._version import __version__
from atlasmith.cli._client import (
    brainglobe_env_command,
    info_command,
    install_command,
    list_command,
    remove_command,
    update_command,
    verify_command,
)
from atlasmith.cli._generate import (
    build_command,
    convert_command,
    demo_command,
    inspect_command,
    meshes_command,
    new_script_command,
    validate_command,
)
from atlasmith.cli._publish import (
    publish_command,
    release_command,
    serve_command,
    token_group,
    unyank_command,
    yank_command,
)

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="atlasmith")
def main() -> None:
    """Package, publish, download and query brain atlases (BrainGlobe format)."""
    from atlasmith import _signals

    _signals.install()  # SIGTERM ends a command through its cleanups, as Ctrl-C does


for _command in (
    demo_command,
    build_command,
    convert_command,
    validate_command,
    new_script_command,
    meshes_command,
    inspect_command,
    serve_command,
    publish_command,
    release_command,
    yank_command,
    unyank_command,
    token_group,
    list_command,
    install_command,
    update_command,
    remove_command,
    verify_command,
    info_command,
    brainglobe_env_command,
):
    main.add_command(_command)
