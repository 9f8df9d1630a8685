"""Size limits: how much atlasmith reads, unpacks, accepts or keeps free, in one place.

Every cap that protects a process or a disk from an oversized or hostile input is defined
here, so that the client, the repository and the server agree and a change is made once.
"""

from __future__ import annotations

__all__ = [
    "DISK_MARGIN_BYTES",
    "MAX_ARCHIVE_MEMBERS",
    "MAX_EXTRACTED_BYTES",
    "MAX_PUBLISHED_BYTES",
    "MAX_SMALL_FILE_BYTES",
    "MAX_YANK_REASON_CHARS",
    "SPOOL_BYTES",
]

#: Unpacked size of one archive that a client installs (decompression bombs stop there);
#: a 10 um Allen atlas with meshes is about 10 GB. The config key ``max_archive_bytes``
#: (``ATLASMITH_MAX_ARCHIVE_BYTES``) overrides it.
MAX_EXTRACTED_BYTES = 64 * 1024**3
#: Members of one archive (a package has a few thousand meshes at most: Allen's 840
#: structures make 850 members); more is refused, by a publisher before anything is written.
MAX_ARCHIVE_MEMBERS = 50_000
#: Largest archive (and unpacked content) a repository accepts from a publisher or an upload.
MAX_PUBLISHED_BYTES = 20 * 1024**3
#: Largest small repository file read whole into memory (``index.json``, ``.conf``).
MAX_SMALL_FILE_BYTES = 64 * 1024**2
#: Longest yank reason a repository accepts (the CLI and the server refuse more): it is shown
#: on the atlas's web page and in every warning and error about the version.
MAX_YANK_REASON_CHARS = 1000
#: Free space kept on a disk after a download or an extracted file.
DISK_MARGIN_BYTES = 64 * 1024**2
#: Size up to which a file read from a remote repository is kept in memory, not on disk.
SPOOL_BYTES = 64 * 1024**2
#: Seconds ``atlasmith serve`` gives a connection to send a complete request head (after it
#: opens, or after the previous response): idle or trickling connections are closed then.
SERVER_HEADER_TIMEOUT_S = 10.0
#: Seconds ``atlasmith serve`` waits for a client that reads nothing of its answer (the
#: connection's buffers full) before closing the connection: a download read slower than
#: about 1 kB/s, or not at all, cannot hold a connection and its open file for ever.
SERVER_SEND_TIMEOUT_S = 60.0
#: Downloads by the client: an attempt slower than this on average after the grace period
#: is abandoned and counts as a failure (the bytes received are kept for the next attempt),
#: so a server that trickles an answer cannot keep a command waiting for ever.
DOWNLOAD_MIN_BYTES_PER_S = 1_000
DOWNLOAD_GRACE_S = 60.0
#: Connections ``atlasmith serve`` keeps open at most (lowered to fit the process's file
#: descriptor limit); beyond it the longest-idle connection is closed first.
SERVER_MAX_CONNECTIONS = 900
#: Uploads to ``atlasmith serve``: seconds without a byte of the body before it is refused
#: (408), and the average rate it must keep after a grace period (a 20 GB archive at this rate
#: takes 5.8 days; a trickling client is cut off).
BODY_IDLE_S = 60.0
BODY_GRACE_S = 60.0
BODY_MIN_BYTES_PER_S = 40_000
