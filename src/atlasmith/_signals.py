"""Ctrl-C and SIGTERM end a command through its cleanups, never in the middle of a fork.

:func:`install` (the CLI calls it) makes SIGTERM raise ``SystemExit(143)`` in the main
thread, as Ctrl-C raises ``KeyboardInterrupt``, so temporary folders, partial files and worker
processes are cleaned up as for any error. Python runs a signal's handler between two
bytecodes of the main thread, wherever that is: inside the callbacks that run around a
``fork`` (where an exception is printed and ignored, so the command would go on) or half way
through starting a process pool. :func:`deferred` marks such a stretch: a signal arriving
inside it is raised when it ends.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

__all__ = ["deferred", "install"]

_deferring = 0
_pending: int | None = None


def install() -> None:
    """Handle SIGTERM and SIGINT as described above (main thread only; else nothing)."""
    if threading.current_thread() is not threading.main_thread():
        return
    signal.signal(signal.SIGTERM, _handle)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _handle)


def _handle(signum: int, frame: FrameType | None) -> None:
    global _pending
    if _deferring:
        _pending = signum
        return
    _raise(signum)


def _raise(signum: int) -> None:
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM while the block runs (main thread), then raise them."""
    global _deferring, _pending
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1
        if not _deferring and _pending is not None:
            signum, _pending = _pending, None
            _raise(signum)
