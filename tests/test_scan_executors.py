"""Analysis off the fetching threads: a process pool, and a Dask cluster of 2 worker processes.
Both must give the demo region's expected verdicts, like the default in-thread analysis."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

pytest.importorskip("alibabacloud_ecs20140526")

from diagnose.errors import UsageError  # noqa: E402
from diagnose.scan.cli import main  # noqa: E402
from diagnose.testing.ecs_server import DEMO_REGION_DIR  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def _check(out: Path) -> None:
    spec = json.loads((DEMO_REGION_DIR / "region.json").read_text())
    expected = {i["id"]: i["expect"] for i in spec["instances"]}
    lines = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert sorted(r["instance_id"] for r in lines) == sorted(expected)
    for r in lines:
        assert r["verdict"]["status"] == expected[r["instance_id"]]["status"]
        assert r["scan"]["error"] is None or r["verdict"]["status"] == "skipped"
        assert (out / f"{r['instance_id']}.html").read_text().startswith("<!")


def test_process_pool(tmp_path):
    assert main(["--demo", "--out", str(tmp_path), "--executor", "process", "--workers", "2",
                 "--progress", "none"]) == 1
    _check(tmp_path)


def test_dask_local_cluster_with_two_worker_processes(tmp_path, monkeypatch):
    distributed = pytest.importorskip("distributed")
    monkeypatch.setenv("PYTHONPATH", str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        assert main(["--demo", "--out", str(tmp_path), "--executor", "dask",
                     "--scheduler", cluster.scheduler_address, "--progress", "none"]) == 1
        with distributed.Client(cluster.scheduler_address) as client:
            info = client.scheduler_info()["workers"]
            pids = {w.get("pid") for w in info.values()} if info else set()
            assert len(info) == 2 and os.getpid() not in pids
        # the analyses were Dask tasks (scheduled here, run in the worker processes)
        assert "analyse" in cluster.scheduler.task_prefixes
    _check(tmp_path)


def test_dask_needs_a_scheduler(tmp_path):
    with pytest.raises(UsageError):
        main(["--demo", "--out", str(tmp_path), "--executor", "dask"])
