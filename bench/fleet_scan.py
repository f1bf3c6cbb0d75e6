"""Fleet-scan benchmark: wall time against the floor the rate limits impose, the same fleet as a
sequential loop (one instance after another, the shape of a vendor sample script), peak RSS.

The fleet is the demo region's real instances replicated under new ids, served by the local ECS
endpoint with 50-150 ms of latency per call; the scan runs as `diagnose scan` in a child process
(its peak RSS is the child's). The sequential loop runs on a sample and is extrapolated.

    python bench/fleet_scan.py --instances 10000
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from diagnose.scan.limits import DEFAULT_RATES  # noqa: E402
from diagnose.scan.synth import write_synthetic_region  # noqa: E402
from diagnose.testing.ecs_server import DEMO_CREDENTIALS, EcsServer, Region  # noqa: E402


class UniformLatency(Mapping):
    """A latency table whose every entry is a fresh draw from [low, high] seconds."""

    def __init__(self, low: float, high: float, seed: int = 1):
        self.low, self.high = low, high
        self.rng = random.Random(seed)

    def __getitem__(self, key):
        return self.rng.uniform(self.low, self.high)

    def get(self, key, default=None):
        return self[key]

    def __iter__(self):
        return iter(("*",))

    def __len__(self):
        return 1


class IndexedRegion(Region):
    """The endpoint looks instances up by id in a list; index it so 10,000 do not cost O(n)."""

    def __init__(self, region: Region):
        super().__init__(region.region_id, region.instances, region.faults)
        self._by_id = {i.id: i for i in region.instances}

    def get(self, instance_id):
        return self._by_id.get(instance_id)


def sequential(server, ids, analyzer):
    """The vendor-sample shape: describe, fetch, analyse, next instance."""
    from diagnose.errors import DiagnoseError
    from diagnose.fetchers.ecs import EcsFetcher

    fetcher = EcsFetcher()
    start = time.perf_counter()
    for iid in ids:
        try:
            ev = fetcher.fetch_instance(iid, region=server.region_id, profile=None,
                                        endpoint=server.endpoint, credentials=DEMO_CREDENTIALS)
        except DiagnoseError:
            continue
        analyzer.analyse(ev)
    return time.perf_counter() - start


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--instances", type=int, default=10_000)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--latency", default="0.05-0.15", help="seconds per call, LOW-HIGH")
    p.add_argument("--sample", type=int, default=40, help="instances in the sequential loop")
    p.add_argument("--no-screenshot", action="store_true")
    p.add_argument("--keep", metavar="DIR", help="write the fleet and the scan output here")
    args = p.parse_args()
    low, high = (float(x) for x in args.latency.split("-"))
    work = Path(args.keep or tempfile.mkdtemp(prefix="fleet-bench-"))
    t0 = time.perf_counter()
    region_dir, ids = write_synthetic_region(work / "region", args.instances)
    print(f"fleet: {len(ids)} instances written in {time.perf_counter() - t0:.1f}s ({work})")
    server = EcsServer(region_dir, latency=UniformLatency(low, high),
                       **DEMO_CREDENTIALS.as_kwargs())
    server._api.region = IndexedRegion(server._api.region)  # benchmark-only speed-up
    out = work / "out"
    env = dict(os.environ, ALIBABA_CLOUD_ACCESS_KEY_ID=DEMO_CREDENTIALS.access_key_id,
               ALIBABA_CLOUD_ACCESS_KEY_SECRET=DEMO_CREDENTIALS.access_key_secret,
               ALIBABA_CLOUD_CLI_PROFILE_DISABLED="true",
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    with server:
        cmd = [sys.executable, "-m", "diagnose.scan.cli", "--region", server.region_id,
               "--endpoint", server.endpoint, "--out", str(out), "--progress", "lines",
               "--concurrency", str(args.concurrency)]
        if args.no_screenshot:
            cmd.append("--no-screenshot")
        t0 = time.perf_counter()
        rc = subprocess.call(cmd, env=env)
        wall = time.perf_counter() - t0
        rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        calls = Counter(c.action for c in server.calls if c.status == 200 or c.code)
        # the floor: each API at its rate, all APIs in parallel, plus one call's latency
        floor = max(n / DEFAULT_RATES.get(a, 10.0) for a, n in calls.items()) + high
        print(f"scan: exit {rc}, {wall:.1f}s wall; floor from the rate limits {floor:.1f}s "
              f"-> {wall / floor:.2f}x the floor; peak RSS {rss_mb:.0f} MB")
        print("calls: " + ", ".join(f"{a} {n}" for a, n in sorted(calls.items())))
        from diagnose.pipeline import Analyzer

        analyzer = Analyzer.load()
        sample = ids[: min(args.sample, len(ids))]
        seq = sequential(server, sample, analyzer)
    per = seq / len(sample)
    est = per * len(ids)
    print(f"sequential loop: {len(sample)} instances in {seq:.1f}s ({per * 1000:.0f} ms each); "
          f"extrapolated to {len(ids)}: {est:.0f}s = {est / wall:.1f}x the scan's wall time")
    lines = (out / "results.jsonl").read_text().splitlines()
    statuses = Counter(json.loads(x)["verdict"]["status"] for x in lines)
    print(f"results: {len(lines)} lines; " + ", ".join(f"{k} {v}" for k, v in
                                                        sorted(statuses.items())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
