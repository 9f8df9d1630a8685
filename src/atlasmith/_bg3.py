"""Point BrainGlobe 3's own client (brainglobe-atlasapi 3.x, unmodified) at an atlasmith
repository: ``atlasmith serve``, or an S3-compatible store that holds a published repository in
bucket ``brainglobe``.

BrainGlobe 3 reads ``s3://brainglobe/atlas/...`` through s3fs, which takes its endpoint from
the environment (``AWS_ENDPOINT_URL_S3``, ``FSSPEC_S3_ENDPOINT_URL``); before that it checks a
hard-coded HTTPS URL of AWS (``descriptors.remote_url_s3_http``), and its atlas listing reads
``last_versions.conf`` from that URL after checking Google. No setting selects a remote, so
:func:`use_repository` sets the environment and rebinds those two module-level values.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any
from urllib.parse import urlsplit

from atlasmith.errors import ConfigError

__all__ = ["environment", "use_repository"]

BUCKET = "brainglobe"


def _base(url: str) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(
            f"{url!r} is not a repository URL: give the server's http(s)://host:port (e.g. "
            "what `atlasmith serve` prints) or an S3 endpoint holding bucket 'brainglobe'."
        )
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def environment(url: str) -> dict[str, str]:
    """The environment variables that send BrainGlobe 3's S3 reads to ``url``."""
    base = _base(url)
    return {
        "AWS_ENDPOINT_URL_S3": base,
        "FSSPEC_S3_ENDPOINT_URL": base,
        "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
    }


def use_repository(url: str) -> None:
    """Make BrainGlobe 3's client in this process read atlases from ``url``.

    Call it once, before the first ``BrainGlobeAtlas(...)`` (or brainrender ``Scene``,
    brainrender-napari widget) of the process::

        from atlasmith.compat import use_repository
        use_repository("http://atlases.lab.example:8000")
        from brainglobe_atlasapi import BrainGlobeAtlas
        atlas = BrainGlobeAtlas("allen_mouse_25um")

    It sets ``AWS_ENDPOINT_URL_S3`` and ``FSSPEC_S3_ENDPOINT_URL`` (and ``AWS_DEFAULT_REGION``
    when unset), rebinds ``brainglobe_atlasapi.descriptors.remote_url_s3_http`` to
    ``<url>/brainglobe/atlas/{}`` (the URL 3.x checks before any download, and reads its atlas
    list from) and makes ``brainglobe_atlasapi.utils.check_internet_connection`` check
    ``<url>/`` instead of Google. Nothing else of BrainGlobe changes.

    Raises
    ------
    ConfigError
        ``url`` is not an http(s) URL, or brainglobe-atlasapi 3.x is not installed.
    """
    base = _base(url)
    try:  # whichever brainglobe-atlasapi is installed: only its 3.x has what is rebound
        brainglobe: Any = importlib.import_module("brainglobe_atlasapi")
        descriptors: Any = importlib.import_module("brainglobe_atlasapi.descriptors")
        utils: Any = importlib.import_module("brainglobe_atlasapi.utils")
    except ImportError as err:
        raise ConfigError(
            "brainglobe-atlasapi is not installed here: use_repository points BrainGlobe 3's "
            "client at a repository (pip install 'brainglobe-atlasapi>=3')."
        ) from err
    major = str(getattr(brainglobe, "__version__", "3")).split(".")[0]
    if not hasattr(descriptors, "remote_url_s3_http") or major.isdigit() and int(major) < 3:
        raise ConfigError(
            "use_repository is for brainglobe-atlasapi 3.x, which reads BrainGlobe 3 "
            "components over S3; this one is older (it reads v1.2 archives): install atlases "
            "with `atlasmith install` or open them with atlasmith's BrainGlobeAtlas instead."
        )
    os.environ.update(environment(base))
    descriptors.remote_url_s3_http = f"{base}/{BUCKET}/atlas/{{}}"
    check = utils.check_internet_connection
    if check.__defaults__:
        check.__defaults__ = (f"{base}/", *check.__defaults__[1:])
    for name in ("brainglobe_atlasapi.bg_atlas", "brainglobe_atlasapi.list_atlases"):
        module: Any = sys.modules.get(name)
        if module is not None and hasattr(module, "remote_url_s3_http"):
            module.remote_url_s3_http = descriptors.remote_url_s3_http
