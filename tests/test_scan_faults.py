"""A fleet scan against a misbehaving endpoint: throttling, 5xx, timeouts, malformed bodies.

Every instance must end with exactly one result: its real verdict (transient faults retried
away) or a recorded reason (faults that never stop). The fleet is the demo region's real
instances replicated under new ids. DIAGNOSE_SCAN_FAULT_N sets its size (default 2,000, the
size the issue asks for: about two minutes on a loaded 2-core machine; set it lower for a quick
local run).
"""

from __future__ import annotations

import json
import os
import random

import pytest

pytest.importorskip("alibabacloud_ecs20140526")

from diagnose.fetchers.ecs_policy import RetryPolicy, ScreenshotPacer  # noqa: E402
from diagnose.scan.ecs import ScanFetcher  # noqa: E402
from diagnose.scan.limits import RateLimits  # noqa: E402
from diagnose.scan.runner import Options, Scanner, write_results  # noqa: E402
from diagnose.scan.state import State  # noqa: E402
from diagnose.scan.synth import write_synthetic_region  # noqa: E402
from diagnose.testing.ecs_server import DEMO_CREDENTIALS, EcsServer, Fault  # noqa: E402

N = int(os.environ.get("DIAGNOSE_SCAN_FAULT_N", "2000"))
ACTIONS = ("GetInstanceConsoleOutput", "GetInstanceScreenshot",
           "DescribeInstanceHistoryEvents", "DescribeInstancesFullStatus")
FAST = {a: 10_000.0 for a in ACTIONS + ("DescribeInstances",)}


def _faults(ids, rng, expect):
    faults, broken = [], set()
    for iid in ids:
        for action in ACTIONS:
            x = rng.random()
            kind = ("throttling" if x < 0.10 else "internal_error" if x < 0.15
                    else "timeout" if x < 0.17 else "malformed" if x < 0.18 else None)
            if kind:
                faults.append(Fault(kind, action=action, instance_id=iid, times=1, delay=0.5))
    # a few instances whose console and screenshot calls fail for good (among those that ECS
    # serves artifacts for: the others are skipped before any call)
    servable = [i for i in ids if expect[i]["status"] != "skipped"]
    for iid in rng.sample(servable, 5):
        broken.add(iid)
        for action in ACTIONS[:2]:
            faults.append(Fault("service_unavailable", action=action, instance_id=iid,
                                times=None))
    faults.append(Fault("throttling", action="DescribeInstances", times=2))
    return faults, broken


def test_every_instance_ends_once_with_a_verdict_or_a_reason(tmp_path):
    root, ids = write_synthetic_region(tmp_path / "region", N)
    spec = json.loads((root / "region.json").read_text())
    expect = {i["id"]: i["expect"] for i in spec["instances"]}
    rng = random.Random(6)
    faults, broken = _faults(ids, rng, expect)
    out = tmp_path / "out"
    out.mkdir()
    with EcsServer(root, faults=faults, screenshot_interval=0.01,
                   **DEMO_CREDENTIALS.as_kwargs()) as server:
        limits = RateLimits(FAST)
        retry = RetryPolicy(attempts=4, base=0.005, cap=0.05)
        fetcher = ScanFetcher(limits, endpoint=server.endpoint, credentials=DEMO_CREDENTIALS,
                              timeout=0.25, retry=retry, screenshot_retry=retry,
                              # the client keeps a wider gap than the server enforces: the
                              # server times a call on arrival, and on a loaded machine two
                              # requests can arrive closer together than they were sent
                              pacer=ScreenshotPacer(0.25))
        opts = Options(out=out, regions=[server.region_id], concurrency=24)
        with State(out / "state.sqlite") as state:
            state.start_run({})
            tally = Scanner(fetcher, opts).run(state)
            assert write_results(state, out) == N
        calls = server.calls
    lines = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    got = [r["instance_id"] for r in lines]
    assert sorted(got) == sorted(ids) and len(set(got)) == N  # all, once each
    assert tally.done == N
    for r in lines:
        iid, v = r["instance_id"], r["verdict"]
        if iid in broken:
            assert v["status"] == "skipped"
            assert "ServiceUnavailable" in r["scan"]["error"] or "after" in r["scan"]["error"]
        else:
            assert r["scan"]["error"] is None, (iid, r["scan"])
            assert v["status"] == expect[iid]["status"], iid
            if "category" in expect[iid]:
                assert v["category"] == expect[iid]["category"], iid
    # the faults really happened, and the client slowed down when throttled
    codes = {c.code for c in calls}
    assert {"Throttling", "InternalError", "ServiceUnavailable"} <= codes
    assert limits.bucket("GetInstanceConsoleOutput").throttled > 0
    # screenshots went through the pacer: no instance was refused for asking too often
    # except by the injected faults (one Throttling per faulted instance at most)
    shot_throttles = [c for c in calls if c.action == "GetInstanceScreenshot"
                      and c.code == "Throttling"]
    faulted = {f.instance_id for f in faults if f.action == "GetInstanceScreenshot"
               and f.kind == "throttling"}
    assert {c.instance_id for c in shot_throttles} <= faulted
