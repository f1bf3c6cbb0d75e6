"""The scan's state in SQLite (WAL): one row per instance, committed as each one finishes.

A row is written only when the instance is done (verdict or recorded reason), in one
transaction together with its result line, so a process killed at any moment leaves either a
whole row or none: ``--resume`` then skips exactly the finished instances.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run INTEGER PRIMARY KEY AUTOINCREMENT,
    started REAL NOT NULL,
    finished REAL,
    args TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS instances (
    instance_id TEXT PRIMARY KEY,
    region TEXT NOT NULL,
    run INTEGER NOT NULL,
    status TEXT NOT NULL,
    category TEXT NOT NULL,
    summary TEXT NOT NULL,
    error TEXT,
    fetch_seconds REAL,
    analyse_seconds REAL,
    finished REAL NOT NULL,
    report TEXT,
    result TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class Row:
    instance_id: str
    region: str
    status: str
    category: str
    summary: str
    error: str | None
    fetch_seconds: float | None
    analyse_seconds: float | None
    report: str | None
    result: dict[str, Any]  # the results.jsonl line


class State:
    """Single writer (the scan's main thread); readers may open the file at any time."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")  # durable against a killed process
        self.db.executescript(SCHEMA)
        self.run: int | None = None

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> State:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def reset(self) -> None:
        """A fresh scan (no --resume): forget earlier rows."""
        self.db.execute("BEGIN IMMEDIATE")
        self.db.execute("DELETE FROM instances")
        self.db.execute("DELETE FROM runs")
        self.db.execute("COMMIT")

    def start_run(self, args: dict[str, Any]) -> int:
        cur = self.db.execute("INSERT INTO runs (started, args) VALUES (?, ?)",
                              (time.time(), json.dumps(args, sort_keys=True)))
        self.run = int(cur.lastrowid)
        return self.run

    def finish_run(self) -> None:
        if self.run is not None:
            self.db.execute("UPDATE runs SET finished = ? WHERE run = ?", (time.time(), self.run))

    def done_ids(self) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT instance_id FROM instances")}

    def record(self, row: Row) -> bool:
        """Store a finished instance; False (and nothing written) if it was already there."""
        cur = self.db.execute(
            "INSERT OR IGNORE INTO instances (instance_id, region, run, status, category, "
            "summary, error, fetch_seconds, analyse_seconds, finished, report, result) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (row.instance_id, row.region, self.run or 0, row.status, row.category, row.summary,
             row.error, row.fetch_seconds, row.analyse_seconds, time.time(), row.report,
             json.dumps(row.result, ensure_ascii=False, sort_keys=True)))
        return cur.rowcount == 1

    def rows(self) -> Iterator[sqlite3.Row]:
        cur = self.db.cursor()
        cur.row_factory = sqlite3.Row
        yield from cur.execute("SELECT * FROM instances ORDER BY instance_id")

    def count(self, status: str | None = None) -> int:
        if status is None:
            return int(self.db.execute("SELECT COUNT(*) FROM instances").fetchone()[0])
        return int(self.db.execute("SELECT COUNT(*) FROM instances WHERE status = ?",
                                   (status,)).fetchone()[0])


def read_results(path: str | Path) -> dict[str, dict[str, Any]]:
    """instance id -> {status, category, summary, region} from a state.sqlite or results.jsonl
    (or a scan output directory holding either)."""
    p = Path(path)
    if p.is_dir():
        p = p / "state.sqlite" if (p / "state.sqlite").is_file() else p / "results.jsonl"
    out: dict[str, dict[str, Any]] = {}
    if p.suffix == ".jsonl":
        with p.open(encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    item = json.loads(line)
                    v = item.get("verdict", {})
                    out[item["instance_id"]] = {"status": v.get("status", ""),
                                                "category": v.get("category", ""),
                                                "summary": v.get("summary", ""),
                                                "region": item.get("region", "")}
        return out
    db = sqlite3.connect(f"file:{p}?mode=ro", uri=True)
    try:
        for iid, status, category, summary, region in db.execute(
                "SELECT instance_id, status, category, summary, region FROM instances"):
            out[iid] = {"status": status, "category": category, "summary": summary,
                        "region": region}
    finally:
        db.close()
    return out
