"""The results store of design-space sweeps: one SQLite file, one row per finished point.

Each point is written (and committed) the moment it finishes, so a sweep that is killed loses
nothing it finished and resumes where it stopped; a point is identified by a key computed from
everything that determines its result (workload, arch, hardware, options), so the same point is
never computed twice. WAL journaling lets readers (a notebook) look while a sweep writes.
"""
from __future__ import annotations

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


def point_key(point: dict) -> str:
    """A stable key of a point: SHA-256 of its canonical JSON (sorted keys)."""
    text = json.dumps(point, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class ResultStore:
    """A SQLite results file; ``put`` commits at once."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), timeout=60.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(SCHEMA)
        self._db.commit()

    def close(self):
        self._db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __contains__(self, point: dict) -> bool:
        return self._db.execute("SELECT 1 FROM results WHERE key = ?", (point_key(point),)).fetchone() is not None

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM results").fetchone()[0]

    def get(self, point: dict) -> dict | None:
        row = self._db.execute("SELECT result FROM results WHERE key = ?", (point_key(point),)).fetchone()
        return None if row is None else json.loads(row[0])

    def put(self, point: dict, result: dict, seconds: float | None = None) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO results (key, point, result, seconds, created) VALUES (?, ?, ?, ?, ?)",
            (point_key(point), json.dumps(point, sort_keys=True, default=str),
             json.dumps(result, sort_keys=True, default=float), seconds, time.time()))
        self._db.commit()

    def items(self):
        for point, result in self._db.execute("SELECT point, result FROM results ORDER BY created"):
            yield json.loads(point), json.loads(result)

    def to_frame(self):
        """All points as a pandas DataFrame: point fields, then result fields (flat values only)."""
        import pandas as pd
        rows = []
        for point, result in self.items():
            row = dict(point)
            row.update({k: v for k, v in result.items() if not isinstance(v, (dict, list))})
            rows.append(row)
        return pd.DataFrame(rows)
