"""The results store of design-space sweeps and studies: one SQLite file, one row per finished point.

Each point is written (and committed) the moment it finishes, so a sweep that is killed loses
nothing it finished and resumes where it stopped. A point is identified by a key computed from
everything that determines its result: the point's own fields (workload and its options, the
hardware's content hash, the config, the calibration) and the version of the code that computed it
(:func:`code_version`, a hash of the simulator's sources and shipped data), so a stale row is never
served after an edit. Every row carries a checksum of its text, and the file is checked on open
(``PRAGMA quick_check`` and every row's checksum): a damaged store is refused with one line
(:class:`StoreError`), never read. WAL journaling lets readers (a notebook) look while a sweep writes.
"""
from __future__ import annotations

import functools
import hashlib
import json
import sqlite3
import time
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    key TEXT PRIMARY KEY,
    point TEXT NOT NULL,
    result TEXT NOT NULL,
    seconds REAL,
    created REAL
)
"""
#: the packages whose sources (and shipped data) determine a result
CODE_PACKAGES = ("vsquant", "tlm", "mapping", "costmodels", "workloads", "studies")


class StoreError(RuntimeError):
    """A results store that cannot be used: damaged, not a SQLite file, or not writable."""


@functools.cache
def code_version() -> str:
    """A hash of every source and data file of :data:`CODE_PACKAGES` (paths and contents): a result computed by
    other code has another key. Computed once per process."""
    root = Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for pkg in CODE_PACKAGES:
        for f in sorted((root / pkg).rglob("*")):
            if f.is_file() and f.suffix in (".py", ".yaml", ".yml", ".pt", ".json", ".csv", ".txt", ".tsv") \
                    and "__pycache__" not in f.parts:
                h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def point_key(point: dict, version: str | None = None) -> str:
    """A stable key of a point: SHA-256 of its canonical JSON (sorted keys) and the code version."""
    text = json.dumps(point, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{code_version() if version is None else version}\0{text}".encode()).hexdigest()[:32]


def _digest(key: str, point: str, result: str) -> str:
    return hashlib.sha256(f"{key}\0{point}\0{result}".encode()).hexdigest()[:16]


class ResultStore:
    """A SQLite results file; ``put`` commits at once. ``version`` overrides :func:`code_version` (tests)."""

    def __init__(self, path: str | Path, *, version: str | None = None):
        self.path = Path(path)
        self.version = code_version() if version is None else version
        if self.path.is_dir():
            raise StoreError(f"results store {self.path} is a directory; give a file path such as "
                             f"{self.path / 'sweep.sqlite'}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), timeout=60.0)
        except (OSError, sqlite3.Error) as e:
            raise StoreError(f"results store {self.path} cannot be opened: {e}") from None
        try:
            self._setup()
        except sqlite3.Error as e:
            self._db.close()
            raise StoreError(f"results store {self.path} is damaged or not a results store ({e}); move it away "
                             "or delete it to start afresh") from None
        except StoreError:
            self._db.close()
            raise

    def _setup(self, wait_s: float = 60.0) -> None:
        """WAL mode, the schema and the integrity check. Two processes opening a new store at once can get
        "database is locked" from the journal-mode switch, which SQLite does not retry through its busy timeout:
        retried here, with a short backoff, for up to ``wait_s`` seconds."""
        deadline = time.monotonic() + wait_s
        delay = 0.01
        while True:
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.execute(SCHEMA)
                cols = {r[1] for r in self._db.execute("PRAGMA table_info(results)")}
                if "digest" not in cols:   # a store of an older vsqsim: its keys never match, its rows stay unread
                    self._db.execute("ALTER TABLE results ADD COLUMN digest TEXT")
                self._db.commit()
                self._verify()
                return
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or time.monotonic() > deadline:
                    raise
                self._db.rollback()
                time.sleep(delay)
                delay = min(delay * 2, 0.5)

    def _verify(self) -> None:
        check = self._db.execute("PRAGMA quick_check").fetchall()
        if check != [("ok",)]:
            raise StoreError(f"results store {self.path} is damaged (SQLite: {'; '.join(r[0] for r in check[:3])});"
                             " move it away or delete it to start afresh")
        bad = sum(1 for key, point, result, digest in
                  self._db.execute("SELECT key, point, result, digest FROM results WHERE digest IS NOT NULL")
                  if _digest(key, point, result) != digest)
        if bad:
            raise StoreError(f"results store {self.path} is damaged: {bad} row(s) fail their checksum; move it "
                             "away or delete it to start afresh")

    def close(self):
        self._db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def key(self, point: dict) -> str:
        return point_key(point, self.version)

    def __contains__(self, point: dict) -> bool:
        return self._db.execute("SELECT 1 FROM results WHERE key = ? AND digest IS NOT NULL",
                                (self.key(point),)).fetchone() is not None

    def __len__(self) -> int:
        """The rows this code version can serve."""
        return len(list(self._rows()))

    def _rows(self):
        for key, point, result, digest in self._db.execute(
                "SELECT key, point, result, digest FROM results WHERE digest IS NOT NULL ORDER BY created, rowid"):
            p = json.loads(point)
            if self.key(p) == key:
                self._check_row(key, point, result, digest)
                yield p, json.loads(result)

    def _check_row(self, key: str, point: str, result: str, digest: str) -> None:
        """A row read after the store was opened (and verified) must still match its checksum."""
        if _digest(key, point, result) != digest:
            raise StoreError(f"results store {self.path}: the row of {point} fails its checksum (damaged since it "
                             "was opened); move the file away or delete it")

    def get(self, point: dict) -> dict | None:
        key = self.key(point)
        row = self._db.execute("SELECT point, result, digest FROM results WHERE key = ? AND digest IS NOT NULL",
                               (key,)).fetchone()
        if row is None:
            return None
        self._check_row(key, *row)
        return json.loads(row[1])

    def put(self, point: dict, result: dict, seconds: float | None = None) -> None:
        """Store ``result`` (its keys in their order: a result read back has the columns of a fresh one)."""
        key = self.key(point)
        p, r = json.dumps(point, sort_keys=True, default=str), json.dumps(result, default=float)
        self._db.execute(
            "INSERT OR REPLACE INTO results (key, point, result, seconds, created, digest) VALUES (?, ?, ?, ?, ?, ?)",
            (key, p, r, seconds, time.time(), _digest(key, p, r)))
        self._db.commit()

    def items(self):
        """(point, result) of every row this code version can serve, in the order they were stored."""
        yield from self._rows()

    def to_frame(self):
        """All points as a pandas DataFrame: point fields, then result fields (flat values only)."""
        import pandas as pd
        rows = []
        for point, result in self.items():
            row = dict(point)
            row.update({k: v for k, v in result.items() if not isinstance(v, (dict, list))})
            rows.append(row)
        return pd.DataFrame(rows)
