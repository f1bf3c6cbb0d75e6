"""Long fuzzing run of the console path (decode -> clean -> boots -> stages -> match -> decide ->
text/JSON/HTML), with the mutators and the property of tests/test_fuzz_console.py.

    python bench/fuzz_console.py --seconds 600                 # random mutation loop
    python bench/fuzz_console.py --seconds 600 --atheris       # coverage-guided (pip atheris)

Every input that raises is written to --crashes (default bench/out/fuzz-crashes) with its
traceback, and the run goes on. Prints executions, executions per second and the crash count.
Exit code 1 if anything crashed.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import random
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _load_harness():
    spec = importlib.util.spec_from_file_location(
        "fuzz_harness", ROOT / "tests" / "test_fuzz_console.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class Runner:
    def __init__(self, harness, crash_dir: Path):
        self.h = harness
        self.crash_dir = crash_dir
        self.execs = 0
        self.crashes = 0
        self.bytes = 0
        self.slowest = (0.0, "")
        self.start = time.monotonic()
        self.last_report = self.start

    def one(self, data: bytes, origin: str) -> None:
        t0 = time.monotonic()
        try:
            self.h.check(data)
        except Exception:  # noqa: BLE001 - a finding: keep the input and go on
            self.crashes += 1
            digest = hashlib.sha256(data).hexdigest()[:16]
            self.crash_dir.mkdir(parents=True, exist_ok=True)
            (self.crash_dir / f"crash-{digest}.bin").write_bytes(data)
            (self.crash_dir / f"crash-{digest}.txt").write_text(
                f"origin: {origin}\n{traceback.format_exc()}")
            print(f"CRASH ({origin}) -> {self.crash_dir}/crash-{digest}.bin", flush=True)
            print(traceback.format_exc(limit=-3), flush=True)
        took = time.monotonic() - t0
        if took > self.slowest[0]:
            self.slowest = (took, f"{origin}, {len(data)} bytes")
        self.execs += 1
        self.bytes += len(data)
        now = time.monotonic()
        if now - self.last_report >= 30:
            self.last_report = now
            self.report(final=False)

    def report(self, final: bool) -> None:
        took = max(time.monotonic() - self.start, 1e-9)
        print(f"{'total' if final else 'so far'}: {self.execs} executions in {took:.0f} s "
              f"({self.execs / took:.1f}/s), {self.bytes / 2**20:.0f} MiB analysed, "
              f"{self.crashes} crash(es), slowest {self.slowest[0]:.2f} s ({self.slowest[1]})",
              flush=True)


def random_loop(runner: Runner, seconds: float, seed: int) -> None:
    h = runner.h
    rng = random.Random(seed)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        roll = rng.random()
        if roll < 0.1:
            data, origin = rng.randbytes(rng.randint(0, 16384)), "random bytes"
        else:
            mutators = h.MUTATORS if roll < 0.15 else h.CHEAP_MUTATORS
            steps = rng.randint(1, 4)
            base = rng.randrange(len(h.LAB_LOGS))
            data = h.mutate(rng, h.LAB_LOGS[base], steps, mutators)
            origin = f"lab log {base}, {steps} mutation(s)"
        runner.one(data, origin)


def atheris_loop(runner: Runner, seconds: float, seed: int) -> None:
    import atheris

    h = runner.h

    def test_one(data: bytes) -> None:
        runner.one(data, "atheris")

    def mutator(data: bytes, max_size: int, mseed: int) -> bytes:
        rng = random.Random(mseed)
        if rng.random() < 0.5:
            return atheris.Mutate(data, max_size)
        if not data or rng.random() < 0.2:
            data = rng.choice(h.LAB_LOGS)
        return h.mutate(rng, data, rng.randint(1, 2), h.CHEAP_MUTATORS)[:max_size]

    corpus = ROOT / "bench" / "out" / "fuzz-corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    for i, log in enumerate(h.LAB_LOGS):
        (corpus / f"lab-{i:02d}").write_bytes(log)
    argv = [sys.argv[0], f"-max_total_time={int(seconds)}", f"-seed={seed}",
            "-max_len=262144", "-rss_limit_mb=8192", "-print_final_stats=1", str(corpus)]
    atheris.Setup(argv, test_one, custom_mutator=mutator)
    import atexit

    atexit.register(runner.report, True)
    atheris.Fuzz()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=600)
    ap.add_argument("--seed", type=int, default=int.from_bytes(os.urandom(4), "big"))
    ap.add_argument("--atheris", action="store_true", help="coverage-guided with atheris")
    ap.add_argument("--crashes", type=Path, default=ROOT / "bench" / "out" / "fuzz-crashes")
    args = ap.parse_args()
    if args.atheris:
        import atheris

        with atheris.instrument_imports(include=["diagnose"]):
            harness = _load_harness()
    else:
        harness = _load_harness()
    runner = Runner(harness, args.crashes)
    engine = harness.ANALYZER.compiled().engine
    print(f"fuzzing the console path for {args.seconds:.0f} s, seed {args.seed}, engine "
          f"{engine}, {len(harness.LAB_LOGS)} lab logs", flush=True)
    if args.atheris:
        atheris_loop(runner, args.seconds, args.seed)
    else:
        random_loop(runner, args.seconds, args.seed)
    runner.report(final=True)
    return 1 if runner.crashes else 0


if __name__ == "__main__":
    sys.exit(main())
