"""Run a function over design points, in local processes or on a Dask cluster, into a store.

``run_points(fn, points, store)`` computes ``fn(point)`` for every point not already in the
store, writes each result the moment it arrives (so a killed sweep loses no finished point),
and returns all results in the order of ``points``. ``scheduler``: ``"processes"`` (default: a
local process pool), ``"serial"``, a Dask scheduler address (``tcp://host:8786``) or a
``distributed.Client``. ``fn`` and the points must be picklable (a module-level function).
"""
from __future__ import annotations

import concurrent.futures as cf
import os
import time

from .store import ResultStore


def _timed(fn, point):
    t0 = time.perf_counter()
    result = fn(point)
    return result, time.perf_counter() - t0


def _client(scheduler):
    from distributed import Client
    if isinstance(scheduler, Client):
        return scheduler, False
    return Client(scheduler), True


def _finished(fn, todo: list[dict], scheduler, workers):
    """(point, result, seconds) as each point finishes, on the chosen scheduler."""
    if scheduler == "serial":
        for p in todo:
            yield (p, *_timed(fn, p))
    elif scheduler == "processes":
        n = workers or max(1, min(len(todo), os.cpu_count() or 1))
        with cf.ProcessPoolExecutor(max_workers=n) as pool:
            futures = {pool.submit(_timed, fn, p): p for p in todo}
            for fut in cf.as_completed(futures):
                yield (futures[fut], *fut.result())
    else:
        from distributed import as_completed
        client, own = _client(scheduler)
        try:
            futures = {client.submit(_timed, fn, p, pure=False): p for p in todo}
            for fut in as_completed(list(futures)):
                yield (futures[fut], *fut.result())
        finally:
            if own:
                client.close()


def run_points(fn, points: list[dict], store: ResultStore, *, scheduler="processes", workers: int | None = None,
               progress=None) -> list[dict]:
    """Compute missing points, storing each as it finishes; return results in ``points`` order."""
    todo = [p for p in points if p not in store]
    done = len(points) - len(todo)
    if progress:
        progress(done, len(points))
    if todo:
        for point, result, sec in _finished(fn, todo, scheduler, workers):
            store.put(point, result, sec)
            done += 1
            if progress:
                progress(done, len(points))
    return [store.get(p) for p in points]
