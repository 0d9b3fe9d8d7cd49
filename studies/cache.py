"""A persistent cache of what a timing-only ``run.py`` computes that depends only on the code and the shapes:
the lowered network of a workload (:class:`mapping.layers.LoweredModel` without its graph) and the TLM's layer
runs of a lowering at a datapath on a hardware (the design point's and its 8/8/-/- baseline's).

A repeated ``run.py --timing-only`` of the same workload and options then loads both, prices them and prints,
without importing torch, capturing the graph or simulating; a new datapath on a cached workload simulates only
the layers of that datapath (the baseline is cached).

Keys. An entry's key names everything its value depends on: the kind of entry, the workload and its options
(seq, batch; the contents of a ``module:`` file or a checkpoint's ``config.json``), and :func:`code_version`,
a hash of the source of the packages that capture, lower, schedule and simulate (``mapping``, ``tlm``,
``vsquant``, ``workloads``) with the versions of Python, torch and transformers. Editing any of that code makes
every entry stale (a new key); nothing is invalidated by hand. Pricing is not cached: the cost model runs every
time, so a change of the cost model never needs a new simulation.

Files. One file per entry under ``$VSQSIM_CACHE/runs`` (default ``~/.cache/vsqsim/runs``), named by the SHA-256
of its key: a header line, the SHA-256 of the payload, then the payload (a pickle). Writes go to a temporary
file in the same directory and are renamed into place (atomic: a reader sees a whole entry or none; two
processes writing one entry leave one of the two). A read that finds a bad header, a payload whose hash does not
match, or a payload that does not unpickle to the expected type removes the file and reports a miss, so the
caller rebuilds it: a damaged entry is never used. (The hash guards against damage, not against someone who can
write your cache directory: they could also edit your code.) An unwritable cache directory turns caching off for
the process, with one line on stderr. ``VSQSIM_NO_CACHE=1`` (or ``run.py --no-cache``) turns it off.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import os
import pickle
import sys
import tempfile
from pathlib import Path
from typing import Any

from workloads.pretrained import cache_root

__all__ = ["enabled", "cache_dir", "code_version", "load", "store", "clear", "MAGIC"]

MAGIC = b"vsqsim-cache 1\n"
#: the packages whose source decides what a cached entry holds
PACKAGES = ("mapping", "tlm", "vsquant", "workloads")
_ROOT = Path(__file__).resolve().parent.parent
_state: dict[str, Any] = {}


def enabled() -> bool:
    """False when ``VSQSIM_NO_CACHE`` is set (to anything but ``0`` or empty) or the directory proved unwritable."""
    return os.environ.get("VSQSIM_NO_CACHE", "") in ("", "0") and not _state.get("broken")


def cache_dir() -> Path:
    return cache_root() / "runs"


def code_version() -> str:
    """SHA-256 of the ``.py`` files of :data:`PACKAGES` (path and contents, in sorted order) and the versions of
    Python, torch and transformers (read from the installed metadata, without importing them); once per process."""
    if "code" not in _state:
        h = hashlib.sha256()
        for pkg in PACKAGES:
            for f in sorted((_ROOT / pkg).rglob("*.py")):
                h.update(str(f.relative_to(_ROOT)).encode())
                h.update(f.read_bytes())
        h.update(sys.version.encode())
        for dist in ("torch", "transformers"):
            try:
                h.update(f"{dist}=={importlib.metadata.version(dist)}".encode())
            except importlib.metadata.PackageNotFoundError:
                h.update(f"{dist} missing".encode())
        _state["code"] = h.hexdigest()
    return _state["code"]


def _path(key: tuple) -> Path:
    return cache_dir() / (hashlib.sha256(repr((code_version(), key)).encode()).hexdigest()[:40] + ".pkl")


def load(key: tuple, expected: type | tuple[type, ...]) -> Any | None:
    """The value stored under ``key`` if there is a sound one of type ``expected``, else None (a damaged entry is
    removed first)."""
    if not enabled():
        return None
    path = _path(key)
    try:
        data = path.read_bytes()
    except OSError:
        return None
    head = len(MAGIC) + 65
    value = None
    if data[:len(MAGIC)] == MAGIC and len(data) > head:
        digest, payload = data[len(MAGIC):head - 1].decode("ascii", "replace"), data[head:]
        if hashlib.sha256(payload).hexdigest() == digest:
            try:
                value = pickle.loads(payload)
            except Exception:   # noqa: BLE001 - any unpickling failure means a damaged entry: rebuild it
                value = None
    if value is None or not isinstance(value, expected):
        try:
            path.unlink()
        except OSError:
            pass
        return None
    return value


def store(key: tuple, value: Any) -> None:
    """Write ``value`` under ``key`` atomically; on an unwritable cache directory, say so once and stop caching."""
    if not enabled():
        return
    path = _path(key)
    payload = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    blob = MAGIC + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".pkl")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(blob)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as e:
        _state["broken"] = True
        print(f"vsqsim: cache directory {str(path.parent)!r} is not writable ({e.strerror or e}); running without "
              "the cache (set VSQSIM_CACHE to a writable directory)", file=sys.stderr)


def clear() -> int:
    """Remove every entry (of any code version); returns how many."""
    n = 0
    for f in cache_dir().glob("*.pkl"):
        f.unlink(missing_ok=True)
        n += 1
    return n
