"""SIGKILL in the middle of a scan, then --resume: nothing lost, nothing diagnosed twice, and the
same results as a scan that was never interrupted."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

pytest.importorskip("alibabacloud_ecs20140526")

from diagnose.scan.cli import main  # noqa: E402
from diagnose.scan.synth import write_synthetic_region  # noqa: E402
from diagnose.testing.ecs_server import DEMO_CREDENTIALS, EcsServer  # noqa: E402

N = 120
ROOT = Path(__file__).resolve().parent.parent


def _env(tmp_path):
    env = dict(os.environ)
    env.update(ALIBABA_CLOUD_ACCESS_KEY_ID=DEMO_CREDENTIALS.access_key_id,
               ALIBABA_CLOUD_ACCESS_KEY_SECRET=DEMO_CREDENTIALS.access_key_secret,
               ALIBABA_CLOUD_CLI_PROFILE_DISABLED="true", HOME=str(tmp_path),
               PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""))
    return env


def _args(server, out):
    return ["--region", server.region_id, "--endpoint", server.endpoint, "--out", str(out),
            "--no-screenshot", "--concurrency", "4", "--progress", "none",
            "--rate", "GetInstanceConsoleOutput=1000/s",
            "--rate", "DescribeInstanceHistoryEvents=1000/s",
            "--rate", "DescribeInstancesFullStatus=1000/s"]


def _rows(db_path):
    db = sqlite3.connect(db_path)
    try:
        return {r[0]: r[1:] for r in db.execute(
            "SELECT instance_id, run, finished, status, category FROM instances")}
    finally:
        db.close()


def _lines(out):
    return [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]


def test_sigkill_then_resume(tmp_path, monkeypatch):
    root, ids = write_synthetic_region(tmp_path / "region", N)
    env = _env(tmp_path)
    for k in ("ALIBABA_CLOUD_ACCESS_KEY_ID", "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
              "ALIBABA_CLOUD_CLI_PROFILE_DISABLED", "HOME"):
        monkeypatch.setenv(k, env[k])
    killed_out, clean_out = tmp_path / "killed", tmp_path / "clean"
    # 20 ms per call: the scan takes a few seconds, long enough to be killed half-way
    with EcsServer(root, latency=0.02, **DEMO_CREDENTIALS.as_kwargs()) as server:
        proc = subprocess.Popen([sys.executable, "-m", "diagnose.scan.cli",
                                 *_args(server, killed_out)], env=env, cwd=tmp_path,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        db_path = killed_out / "state.sqlite"
        deadline = time.monotonic() + 60
        before: dict = {}
        while time.monotonic() < deadline and proc.poll() is None:
            if db_path.is_file():
                try:
                    if len(_rows(db_path)) >= N // 3:
                        break
                except sqlite3.OperationalError:
                    pass
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read().decode()
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        before = _rows(db_path)
        server.set_latency(0.0)
        assert N // 3 <= len(before) < N
        assert not (killed_out / "results.jsonl").exists()
        console_calls_before = Counter(c.instance_id for c in
                                       server.calls_to("GetInstanceConsoleOutput"))

        assert main([*_args(server, killed_out), "--resume"]) == 1
        after = _rows(db_path)
        console_calls = Counter(c.instance_id for c in server.calls_to("GetInstanceConsoleOutput"))
        # finished rows were kept as they were; nothing finished before was fetched again
        for iid, row in before.items():
            assert after[iid] == row
            assert console_calls[iid] == console_calls_before[iid]
        assert set(after) == set(ids)
        assert main(_args(server, clean_out)) == 1

    resumed, clean = _lines(killed_out), _lines(clean_out)
    assert len(resumed) == N == len({r["instance_id"] for r in resumed})

    def key(r):
        return (r["instance_id"], r["region"], r["verdict"]["status"], r["verdict"]["category"],
                r["verdict"]["rule_id"], tuple(f["rule_id"] for f in r["findings"]))
    assert sorted(map(key, resumed)) == sorted(map(key, clean))
    page = (killed_out / "index.html").read_text()
    assert f"{N} instance(s)" in page
