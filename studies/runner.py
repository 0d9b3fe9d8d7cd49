"""Run a function over design points, in local processes or on a Dask cluster, into a store.

``run_points(fn, points, store)`` computes ``fn(point)`` for every point not already in the
store, writes each result the moment it arrives (so a killed sweep loses no finished point),
and returns all results in the order of ``points``. ``scheduler``: ``"processes"`` (default: a
local process pool), ``"serial"``, a Dask scheduler address (``tcp://host:8786``) or a
``distributed.Client``. ``fn`` and the points must be picklable (a module-level function).

Stopping: the first SIGINT (Ctrl-C) or SIGTERM stops handing out points, keeps every finished one,
stops the workers and raises :class:`SweepInterrupted` (one line for the command line to print);
further signals while it stops are ignored, so a second Ctrl-C cannot deadlock it. Local workers
ignore SIGINT (the terminal sends it to the whole process group: the parent decides) and are killed by
the kernel when their parent dies (``PR_SET_PDEATHSIG``, with a watchdog where that is unavailable), so
no worker outlives a ``kill -9`` of the sweep.
"""
from __future__ import annotations

import concurrent.futures as cf
import contextlib
import os
import signal
import threading
import time
from concurrent.futures.process import BrokenProcessPool

from .store import ResultStore


class SweepInterrupted(Exception):
    """A sweep stopped by a signal: ``done`` of ``total`` points are in the store."""

    def __init__(self, signum: int, done: int, total: int, store_path):
        self.signum, self.done, self.total, self.store_path = signum, done, total, store_path
        super().__init__(f"stopped by {signal.Signals(signum).name}: {done} of {total} points are finished and "
                         f"kept in {store_path}; run the same command again to compute the other {total - done}")


class _Stop(BaseException):
    """Raised in the main thread by the first signal (a BaseException: no ``except Exception`` swallows it)."""


def _timed(fn, point):
    t0 = time.perf_counter()
    result = fn(point)
    return result, time.perf_counter() - t0


def _worker_init(parent: int) -> None:
    """In each local worker: leave SIGINT to the parent, and die with it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)   # not the parent's handler, inherited by fork
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):   # not Linux: poll for the parent instead
        def watch():
            while os.getppid() == parent:
                time.sleep(1.0)
            os._exit(1)
        threading.Thread(target=watch, daemon=True).start()
    if os.getppid() != parent:          # the parent died before the line above took effect
        os._exit(1)


def _client(scheduler):
    from distributed import Client
    if isinstance(scheduler, Client):
        return scheduler, False
    return Client(scheduler), True


class _Signals:
    """While active (main thread only): the first SIGINT/SIGTERM raises :class:`_Stop` at once, or at the end of
    a :meth:`critical` section (a store write); later ones are only counted."""

    def __init__(self):
        self.signum: int | None = None
        self._critical = False
        self._old: dict = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)

    def _handle(self, signum, frame):
        if self.signum is not None:
            return                      # already stopping: a second Ctrl-C changes nothing
        self.signum = signum
        if not self._critical:
            raise _Stop

    @contextlib.contextmanager
    def critical(self):
        self._critical = True
        try:
            yield
        finally:
            self._critical = False
        if self.signum is not None:
            raise _Stop


def _finished(fn, todo: list[dict], scheduler, workers):
    """(point, result, seconds) as each point finishes, on the chosen scheduler; on :class:`_Stop` (raised into
    it by the signal handler) it stops the workers before passing the exception on."""
    if scheduler == "serial":
        for p in todo:
            yield (p, *_timed(fn, p))
    elif scheduler == "processes":
        n = workers or max(1, min(len(todo), os.cpu_count() or 1))
        pool = cf.ProcessPoolExecutor(max_workers=n, initializer=_worker_init, initargs=(os.getpid(),))
        try:
            futures = {pool.submit(_timed, fn, p): p for p in todo}
            for fut in cf.as_completed(futures):
                yield (futures[fut], *fut.result())
        except BaseException:
            _stop_pool(pool)
            raise
        pool.shutdown()
    else:
        from distributed import as_completed
        client, own = _client(scheduler)
        futures = {}
        try:
            futures = {client.submit(_timed, fn, p, pure=False): p for p in todo}
            for fut in as_completed(list(futures)):
                yield (futures[fut], *fut.result())
        except BaseException:
            client.cancel(list(futures))
            raise
        finally:
            if own:
                client.close()


def _stop_pool(pool: cf.ProcessPoolExecutor) -> None:
    """Cancel what has not started and kill the workers (a point half computed is lost, not waited for)."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        with contextlib.suppress(Exception):
            p.kill()
    for p in procs:
        with contextlib.suppress(Exception):
            p.join(5)


def run_points(fn, points: list[dict], store: ResultStore, *, scheduler="processes", workers: int | None = None,
               progress=None) -> list[dict]:
    """Compute missing points, storing each as it finishes; return results in ``points`` order.

    Raises :class:`SweepInterrupted` after a SIGINT/SIGTERM, with every finished point stored."""
    todo = [p for p in points if p not in store]
    done = len(points) - len(todo)
    if progress:
        progress(done, len(points))
    if todo:
        with _Signals() as sig:
            results = _finished(fn, todo, scheduler, workers)
            try:
                for point, result, sec in results:
                    with sig.critical():
                        store.put(point, result, sec)
                        done += 1
                    if progress:
                        progress(done, len(points))
            except (_Stop, BrokenProcessPool):
                if sig.signum is None:
                    raise
                stopped = sig.signum
            else:
                stopped = None
            finally:
                results.close()             # stops the workers now, whatever ended the loop
        if stopped is not None:
            raise SweepInterrupted(stopped, done, len(points), store.path)
    return [store.get(p) for p in points]
