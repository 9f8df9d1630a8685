"""The version of atlasmith (read by packaging, manifests, the server and the User-Agent)."""

__version__ = "0.1.0"
