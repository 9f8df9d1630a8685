"""Where the engine's tasks run: in this process, in local processes, or on a dask cluster.

Every stage (closing, surface slabs, decimation pieces, structure meshes) hands its work to a
:class:`Runner` as ``fn(item, shared)`` over items; results come back in order, so the output
never depends on the runner. ``shared`` (the volume, the surface...) is sent to each worker
once: inherited by forked local processes, scattered to dask workers.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol, TypeVar

from atlasmith import _signals
from atlasmith.errors import ConfigError

__all__ = [
    "DaskRunner",
    "LocalRunner",
    "Runner",
    "keep_freed_memory",
    "make_runner",
    "no_import_in_flight",
]

Item = TypeVar("Item")
Shared = TypeVar("Shared")
Result = TypeVar("Result")


class Runner(Protocol):
    """Runs ``fn(item, shared)`` over items and yields the results in order."""

    #: How many tasks run at once; stages cut their work into multiples of it.
    workers: int
    #: Whether workers may not share this machine's disk (results must come back as bytes).
    remote: bool

    def map(
        self,
        fn: Callable[[Item, Shared], Result],
        items: Sequence[Item],
        shared: Shared,
        limit: int | None = None,
    ) -> Iterator[Result]:
        """Results of ``fn(item, shared)`` in the order of ``items``; ``limit``: at most this
        many local processes at once (a dask cluster manages its own memory)."""
        ...

    def close(self) -> None:
        """Release the workers."""
        ...


#: Longest wait for another thread's import before forking anyway (an import that waits for
#: something this thread holds would otherwise never end).
_IMPORT_WAIT_S = 120.0
_log = logging.getLogger("atlasmith.meshes")
#: Tasks sent to a dask cluster ahead of the results read, per worker: enough to keep every
#: worker busy, few enough that the items' data (slabs of labels) stay small.
_IN_FLIGHT_PER_WORKER = 3

# forked workers find the shared object here (it is inherited, never pickled)
_SHARED: Any = None


def _set_shared(shared: Any, parent: int | None = None) -> None:
    global _SHARED
    _SHARED = shared
    if parent is not None:
        _die_with(parent)


def _die_with(parent: int) -> None:
    """Have the kernel kill this worker when the process that forked it dies (Linux): a
    killed build must not leave its workers running (they would wait for work for ever)."""
    import signal
    import sys

    if sys.platform.startswith("linux"):
        import ctypes
        import ctypes.util

        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            pr_set_pdeathsig = 1
            libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the request: go now
        os._exit(1)


def _call_with_shared(fn: Callable[[Any, Any], Any], item: Any) -> Any:
    return fn(item, _SHARED)


class LocalRunner:
    """Tasks in this process (one worker) or in a pool of local processes."""

    remote = False

    def __init__(self, workers: int | None = None) -> None:
        self.workers = max(1, workers or os.cpu_count() or 1)

    def map(
        self,
        fn: Callable[[Item, Shared], Result],
        items: Sequence[Item],
        shared: Shared,
        limit: int | None = None,
    ) -> Iterator[Result]:
        """See :meth:`Runner.map`."""
        workers = min(self.workers, len(items), limit or self.workers)
        if workers <= 1:
            for item in items:
                yield fn(item, shared)
            return
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        methods = multiprocessing.get_all_start_methods()
        forking = "fork" in methods
        context = multiprocessing.get_context("fork" if forking else "spawn")
        pool = ProcessPoolExecutor(workers, context, _set_shared, (shared, os.getpid()))
        try:
            # the first submit forks every worker: never while another thread imports, and
            # a Ctrl-C or SIGTERM meanwhile is raised once the pool stands
            with _signals.deferred(), no_import_in_flight() if forking else _nothing():
                results = pool.map(_call_with_shared, [fn] * len(items), items)
            yield from results
        except BaseException:  # Ctrl-C, SIGTERM, a failed task: stop the workers now
            _stop_workers(pool)
            raise
        finally:
            pool.shutdown(wait=True)

    def close(self) -> None:
        """Nothing to release: pools live for one map."""


@contextlib.contextmanager
def no_import_in_flight(poll_s: float = 0.001) -> Iterator[None]:
    """Hold the interpreter's import lock, taken once no other thread is importing a module.

    A process forked while another thread runs a module's first import inherits that
    module's lock held by a thread that does not exist in the child: the child's first
    import of the module then waits for ever (a build's preview thread importing its
    libraries while mesh workers were forked hung 3 builds in 24). Inside this block no
    import is under way in another thread and none can start (starting one needs the import
    lock), so a fork here inherits no held module lock. The wait lasts as long as imports
    already running in other threads.
    """
    import _imp
    from importlib import _bootstrap

    me = threading.get_ident()
    deadline = time.monotonic() + _IMPORT_WAIT_S
    while True:
        _imp.acquire_lock()
        if not _importing_elsewhere(_bootstrap, me):
            break
        if time.monotonic() > deadline:  # an import waiting for this thread: go on
            _log.warning("forking while another thread imports (waited %.0f s)", _IMPORT_WAIT_S)
            break
        _imp.release_lock()
        time.sleep(poll_s)
    try:
        yield
    finally:
        _imp.release_lock()


def _importing_elsewhere(bootstrap: Any, me: int) -> bool:
    """Whether a thread other than ``me`` holds or is taking a module's import lock."""
    if any(tid != me for tid in list(getattr(bootstrap, "_blocking_on", {}))):
        return True
    for ref in list(getattr(bootstrap, "_module_locks", {}).values()):
        lock = ref()
        owner = getattr(lock, "owner", None)
        if owner is not None and owner != me and getattr(lock, "count", 0):
            return True
        inner = getattr(lock, "lock", None)
        if inner is not None and owner != me and inner.locked():
            return True
    return False


def _nothing() -> contextlib.AbstractContextManager[None]:
    return contextlib.nullcontext()


def _stop_workers(pool: Any) -> None:
    """Cancel what has not started and kill the workers (``shutdown`` alone would wait for
    every queued task to finish first)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        with contextlib.suppress(OSError, ValueError):
            process.kill()
    for process in processes:
        with contextlib.suppress(OSError, ValueError, AssertionError):
            process.join(timeout=10)


class DaskRunner:
    """Tasks on a dask.distributed cluster; ``workers`` is the cluster's worker count."""

    remote = True

    def __init__(self, address: str) -> None:
        self.client = _connect(address)
        self.workers = max(1, len(self.client.scheduler_info().get("workers", {})))

    def map(
        self,
        fn: Callable[[Item, Shared], Result],
        items: Sequence[Item],
        shared: Shared,
        limit: int | None = None,
    ) -> Iterator[Result]:
        """See :meth:`Runner.map`."""
        # one future for the whole shared object (scattering a tuple would scatter its items)
        scattered = self.client.scatter([shared], broadcast=True)[0]
        # Items may carry their own data (a slab's labels, made as the item is read), so a
        # few are in flight at a time, each scattered (not sent in the task graph); results
        # still come back in order.
        pending: collections.deque[Any] = collections.deque()
        try:
            for item in items:
                sent = self.client.scatter([item])[0]
                pending.append(self.client.submit(fn, sent, scattered, pure=False))
                if len(pending) >= _IN_FLIGHT_PER_WORKER * self.workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            self.client.cancel(list(pending))

    def close(self) -> None:
        """Disconnect from the scheduler."""
        self.client.close()


def make_runner(workers: int | None = None, scheduler: str | None = None) -> Runner:
    """A dask runner for a scheduler address, else local processes (default: every core)."""
    return DaskRunner(scheduler) if scheduler is not None else LocalRunner(workers)


def _connect(address: str) -> Any:
    """A dask.distributed client for the scheduler at ``address``."""
    try:
        import distributed
    except ImportError as err:  # pragma: no cover - dask is an optional extra
        raise ConfigError(
            "a scheduler address needs dask.distributed: pip install 'atlasmith[dask]'."
        ) from err
    try:
        client: Any = distributed.Client
        return client(address, timeout=30)
    except OSError as err:
        raise ConfigError(
            f"cannot connect to the dask scheduler at {address!r}: {err}. Check the address "
            "(e.g. tcp://host:8786) and that the scheduler is running."
        ) from err


def keep_freed_memory() -> bool:
    """Let this process reuse the memory it frees instead of returning it to the system.

    The engine allocates and frees many arrays of a few to tens of MB; by default glibc maps
    each one afresh, and on virtual machines the page faults of those fresh pages cost as
    much as the work itself. This raises glibc's mmap and trim thresholds (process-wide,
    inherited by forked workers); peak memory is unchanged. Returns False where it does not
    apply (not glibc). Command-line entry points call it; library users may.
    """
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    trim_threshold, top_pad, mmap_threshold = -1, -2, -3  # glibc's M_* parameter numbers
    ok = mallopt(mmap_threshold, 32 << 20) == 1  # the largest glibc accepts
    ok &= mallopt(trim_threshold, 1 << 30) == 1
    ok &= mallopt(top_pad, 64 << 20) == 1
    return bool(ok)
