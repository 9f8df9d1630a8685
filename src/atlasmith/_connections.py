"""Connections of ``atlasmith serve``: bounded in number and in how long they may idle.

uvicorn (0.54) closes a keep-alive connection that idles after a response, but not one that
never sends a complete request head: a client that opens sockets and sends nothing, or
trickles a header a byte at a time, holds a file descriptor for ever, and about a thousand of
them stop the server (``accept`` fails, every other client times out). :class:`GuardedH11`
adds what a mature server has (nginx's ``client_header_timeout``, a connection limit):

- a request head must arrive complete within ``header_timeout`` seconds of the connection
  opening, or of the previous response ending; otherwise the connection is closed;
- at most ``max_connections`` are open: a new connection beyond that first closes the
  connection that has waited longest without sending a request, so an idle flood cannot
  lock out real clients; when every connection is busy, the new one is closed;
- a client that stops reading its answer (the transport's buffer stays over its high-water
  mark, writing paused) for ``send_timeout`` seconds is disconnected (nginx's
  ``send_timeout``): a trickled download cannot hold a connection for ever.
"""

from __future__ import annotations

import asyncio
import resource
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from atlasmith.limits import (
    SERVER_HEADER_TIMEOUT_S,
    SERVER_MAX_CONNECTIONS,
    SERVER_SEND_TIMEOUT_S,
)

__all__ = ["ACCEPT_BACKLOG", "GuardedH11", "connection_cap", "guarded_protocol"]

#: The listening socket's backlog, which is also how many connections asyncio accepts in one
#: go before any of them reaches :meth:`GuardedH11.connection_made` (where the cap is
#: enforced): the cap leaves room for such batches, so ``accept`` never runs out of file
#: descriptors (it would log a traceback per refused socket and stop accepting for 1 s).
ACCEPT_BACKLOG = 64
#: File descriptors kept free for everything else the server opens (files it serves, the
#: index, logs), and for the connections accepted but not yet seen by ``connection_made``
#: or closed but not yet released (up to about three batches under load).
_SPARE_DESCRIPTORS = 64 + 4 * ACCEPT_BACKLOG


def connection_cap(wanted: int = SERVER_MAX_CONNECTIONS) -> int:
    """``wanted``, lowered to what this process's descriptor limit leaves room for."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(8, min(wanted, soft - _SPARE_DESCRIPTORS))


def _cancel(timer: asyncio.TimerHandle | None) -> None:
    """Cancel a timer if there is one."""
    if timer is not None:
        timer.cancel()


class GuardedH11(H11Protocol):
    """uvicorn's h11 protocol with a request-head deadline, a send deadline and a connection
    cap."""

    header_timeout: float = SERVER_HEADER_TIMEOUT_S
    max_connections: int = SERVER_MAX_CONNECTIONS
    send_timeout: float = SERVER_SEND_TIMEOUT_S

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._opened = self.loop.time()
        self._head_timer: asyncio.TimerHandle | None = None
        self._send_timer: asyncio.TimerHandle | None = None
        self._await_head()
        self._make_room()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timer()
        self._stop_send_timer()
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._send_timer is None:
            self._send_timer = self.loop.call_later(self.send_timeout, self._stalled)

    def resume_writing(self) -> None:
        self._stop_send_timer()
        super().resume_writing()

    def handle_events(self) -> None:
        before = self.cycle
        super().handle_events()
        if self.cycle is not before:  # a complete request head arrived
            self._stop_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._await_head()  # the next request on this connection has the same deadline

    # --- the deadline --------------------------------------------------------------------

    @property
    def waiting(self) -> bool:
        """Whether the connection is waiting for a request head (idle, or trickling one)."""
        return self._head_timer is not None

    def _await_head(self) -> None:
        self._stop_timer()
        self._opened = self.loop.time()
        self._head_timer = self.loop.call_later(self.header_timeout, self._expire)

    def _stop_timer(self) -> None:
        _cancel(getattr(self, "_head_timer", None))
        self._head_timer = None

    def _expire(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.abort()  # no response owed: the client sent no complete request

    # --- the send deadline -------------------------------------------------------------------

    def _stop_send_timer(self) -> None:
        _cancel(getattr(self, "_send_timer", None))
        self._send_timer = None

    def _stalled(self) -> None:
        self._send_timer = None
        if not self.transport.is_closing():
            self.transport.abort()  # the client read nothing for send_timeout seconds

    # --- the cap ---------------------------------------------------------------------------

    def _make_room(self) -> None:
        excess = len(self.connections) - self.max_connections
        if excess <= 0:
            return
        others: list[GuardedH11] = [
            c for c in self.connections if isinstance(c, GuardedH11) and c is not self
        ]
        idle = sorted((c for c in others if c.waiting), key=lambda c: c._opened)
        for other in idle[:excess]:
            other._stop_timer()
            other.transport.abort()
        if len(idle) < excess:  # every other connection is busy: this one waits its turn
            self._stop_timer()
            self.transport.abort()


def guarded_protocol(
    header_timeout: float, max_connections: int, send_timeout: float = SERVER_SEND_TIMEOUT_S
) -> type[Any]:
    """A :class:`GuardedH11` subclass with these limits (uvicorn takes a class)."""
    limits = {
        "header_timeout": header_timeout,
        "max_connections": connection_cap(max_connections),
        "send_timeout": send_timeout,
    }
    return type("GuardedH11Configured", (GuardedH11,), limits)
