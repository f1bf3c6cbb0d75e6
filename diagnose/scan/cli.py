"""`diagnose scan ...` and `diagnose scan diff OLD NEW`.

The main CLI hands over ``argv`` after "scan"; fatal problems raise diagnose.errors exceptions,
which it turns into one line and an exit code. Exit 1 when any instance is `failed`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import ExitStack
from pathlib import Path

from ..errors import EXIT_FAILED, EXIT_OK, DiagnoseError, UsageError

USAGE = """\
diagnose scan --region R [--region R2] [--tag k=v] [--status Running]
              [--instances-file ids.txt] --out DIR [--concurrency N] [--rate API=N/s]
              [--executor thread|process|dask [--scheduler tcp://H:P]] [--no-screenshot] [--resume]
diagnose scan --demo --out DIR
diagnose scan diff OLD NEW      (scan output directories, state.sqlite or results.jsonl)
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--region", action="append", default=[], help="region id (repeatable)")
    p.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE",
                   help="only instances with this tag (KEY alone: any value); repeatable")
    p.add_argument("--status", choices=("Pending", "Running", "Starting", "Stopping", "Stopped"),
                   help="only instances in this state")
    p.add_argument("--instances-file", metavar="FILE",
                   help="scan these instance ids (one per line) instead of listing")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--concurrency", type=int, default=24, help="fetching threads (default 24)")
    p.add_argument("--rate", action="append", default=[], metavar="API=N/s",
                   help="calls per second for one API, e.g. GetInstanceScreenshot=10/s")
    p.add_argument("--executor", choices=("thread", "process", "dask"), default="thread",
                   help="where analysis runs: the fetching threads (default), a process pool "
                        "(CPU-heavy screenshot reading) or a Dask cluster (--scheduler)")
    p.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                   help="Dask scheduler address for --executor dask")
    p.add_argument("--workers", type=int, help="process pool size (default: CPU count)")
    p.add_argument("--no-screenshot", action="store_true", help="console output only")
    p.add_argument("--resume", action="store_true",
                   help="continue the scan recorded in DIR/state.sqlite; finished instances "
                        "are kept, not fetched again")
    p.add_argument("--demo", action="store_true",
                   help="scan the bundled demo region, served locally (no account needed)")
    p.add_argument("--profile", help="aliyun CLI profile name")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per API call")
    p.add_argument("--progress", choices=("auto", "bar", "lines", "none"), default="auto",
                   help=argparse.SUPPRESS)
    p.add_argument("--endpoint", help=argparse.SUPPRESS)  # tests: a local endpoint
    p.add_argument("--retry-base", type=float, default=None, help=argparse.SUPPRESS)
    p.add_argument("--retry-attempts", type=int, default=None, help=argparse.SUPPRESS)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="diagnose scan", usage=USAGE,
                                description="Diagnose many ECS instances at once.")
    add_arguments(p)
    return p


def _tags(values: list[str]) -> list[tuple[str, str | None]]:
    out: list[tuple[str, str | None]] = []
    for v in values:
        key, sep, value = v.partition("=")
        if not key.strip():
            raise UsageError(f"--tag {v!r}: expected KEY=VALUE or KEY")
        out.append((key.strip(), value if sep else None))
    if len(out) > 20:
        raise UsageError("at most 20 --tag filters")
    return out


def run(args: argparse.Namespace) -> int:
    from ..fetchers.ecs_policy import RetryPolicy
    from .ecs import ScanFetcher
    from .fleet_html import render_index
    from .limits import RateLimits, parse_rate
    from .progress import Progress
    from .runner import Options, Scanner, read_ids_file, write_results
    from .state import State

    if args.concurrency < 1 or args.concurrency > 256:
        raise UsageError("--concurrency must be between 1 and 256")
    if args.timeout <= 0:
        raise UsageError("--timeout must be positive")
    if (args.executor == "dask") != bool(args.scheduler):
        raise UsageError("--executor dask and --scheduler go together")
    rates = dict(parse_rate(r) for r in args.rate)
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create {out}: {exc.strerror}") from None
    if args.resume and not (out / "state.sqlite").is_file():
        raise UsageError(f"--resume: no scan state in {out}")
    retry = None
    if args.retry_base is not None or args.retry_attempts is not None:
        base = RetryPolicy()
        retry = RetryPolicy(attempts=args.retry_attempts or base.attempts,
                            base=args.retry_base if args.retry_base is not None else base.base,
                            cap=max(args.retry_base or 0, 0.001) * 16
                            if args.retry_base is not None else base.cap)
    with ExitStack() as stack:
        endpoint, credentials, regions = args.endpoint, None, list(args.region)
        pacer_kw = {}
        if args.demo:
            from ..fetchers.ecs_policy import ScreenshotPacer
            from ..testing.ecs_server import DEMO_CREDENTIALS, DEMO_REGION_DIR, EcsServer

            server = stack.enter_context(EcsServer(DEMO_REGION_DIR,
                                                   **DEMO_CREDENTIALS.as_kwargs()))
            endpoint, credentials, regions = server.endpoint, DEMO_CREDENTIALS, \
                [server.region_id]
            pacer_kw["pacer"] = ScreenshotPacer()
        if not regions:
            raise UsageError("pass --region (repeatable), or --demo")
        ids = read_ids_file(args.instances_file) if args.instances_file else None
        limits = RateLimits(rates)
        fetcher = ScanFetcher(limits, endpoint=endpoint, profile=args.profile,
                              credentials=credentials, timeout=args.timeout,
                              retry=retry, screenshot_retry=retry, **pacer_kw)
        opts = Options(out=out, regions=regions, tags=_tags(args.tag), status=args.status,
                       instance_ids=ids, concurrency=args.concurrency,
                       screenshot=not args.no_screenshot, executor=args.executor,
                       workers=args.workers, resume=args.resume,
                       scheduler=args.scheduler)
        mode = args.progress
        progress = None
        if mode != "none":
            progress = Progress(tty=None if mode == "auto" else mode == "bar")
        state = stack.enter_context(State(out / "state.sqlite"))
        if not args.resume:
            state.reset()
        state.start_run({k: v for k, v in vars(args).items() if k not in ("endpoint",)})
        started = time.monotonic()
        try:
            tally = Scanner(fetcher, opts, progress=progress).run(state)
        finally:
            if progress:
                progress.close()
        state.finish_run()
        write_results(state, out)
        count, failed = state.count(), state.count("failed")
        meta = {"regions": ", ".join(regions), "instances": count,
                "this run": f"{tally.done} in {time.monotonic() - started:.1f}s",
                "resumed": tally.resumed}
        results = (json.loads(r["result"]) for r in state.rows())  # streamed: huge fleets
        (out / "index.html").write_text(render_index(results, meta=meta), encoding="utf-8")
        print(f"scan: {count} instance(s), {failed} failed; report {out / 'index.html'}",
              file=sys.stderr)
        return EXIT_FAILED if failed else EXIT_OK


# -- diff ------------------------------------------------------------------------------------------


def diff(old_path: str, new_path: str) -> dict[str, list[dict]]:
    from .state import read_results

    old, new = _read(old_path, read_results), _read(new_path, read_results)
    out: dict[str, list[dict]] = {"new_failures": [], "recovered": [], "still_failed": [],
                                  "changed": [], "unchanged": [], "gone": [], "added": []}
    for iid in sorted(set(old) | set(new)):
        a, b = old.get(iid), new.get(iid)
        item = {"instance_id": iid, "old": a and a["status"], "new": b and b["status"],
                "old_category": a and a["category"], "new_category": b and b["category"],
                "summary": (b or a or {}).get("summary", "")}
        if b is None:
            out["gone"].append(item)
        elif b["status"] == "failed" and (a is None or a["status"] != "failed"):
            out["new_failures"].append(item)
        elif a is None:
            out["added"].append(item)
        elif a["status"] == "failed" and b["status"] != "failed":
            out["recovered"].append(item)
        elif (a["status"], a["category"]) == (b["status"], b["category"]):
            (out["still_failed"] if b["status"] == "failed" else out["unchanged"]).append(item)
        else:
            out["changed"].append(item)
    return out


def _read(path: str, reader) -> dict:
    p = Path(path)
    if not p.exists():
        raise UsageError(f"{path}: no such scan output")
    try:
        return reader(p)
    except (OSError, ValueError, KeyError) as exc:
        raise UsageError(f"{path}: not a scan's state.sqlite or results.jsonl ({exc})") from None
    except Exception as exc:  # sqlite3.DatabaseError and friends
        raise UsageError(f"{path}: unreadable scan state ({type(exc).__name__})") from None


def _cmd_diff(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="diagnose scan diff",
                                description="Compare two scans: new failures, recovered, "
                                            "unchanged.")
    p.add_argument("old")
    p.add_argument("new")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    args = p.parse_args(argv)
    result = diff(args.old, args.new)
    if args.json:
        print(json.dumps(result, indent=1, ensure_ascii=False))
    else:
        from ..render import visible_controls

        for key, title in (("new_failures", "new failures"), ("recovered", "recovered"),
                           ("still_failed", "still failed"), ("changed", "changed"),
                           ("added", "added"), ("gone", "gone")):
            items = result[key]
            print(f"{title}: {len(items)}")
            for it in items:
                print(f"  {visible_controls(it['instance_id'])}: {it['old'] or '-'} -> "
                      f"{it['new'] or '-'} {visible_controls(it['new_category'] or '')}")
        print(f"unchanged: {len(result['unchanged'])}")
    return EXIT_FAILED if result["new_failures"] else EXIT_OK


def main(argv: list[str]) -> int:
    """Entry point after `diagnose scan`."""
    argv = list(argv)
    if argv and argv[0] == "diff":
        return _cmd_diff(argv[1:])
    return run(_parser().parse_args(argv))


if __name__ == "__main__":
    try:
        raise SystemExit(main(sys.argv[1:]))
    except DiagnoseError as exc:
        print(f"diagnose scan: {exc}", file=sys.stderr)
        raise SystemExit(exc.exit_code) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None

