"""The scan itself: pick the instances, fetch them on a bounded thread pool, analyse each one
(in the fetching thread, or in a process pool when screenshots make it CPU-heavy), write its
report and commit its row. An instance that cannot be fetched becomes a `skipped` result with
the reason; it never stops the scan.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DiagnoseError, UsageError
from ..fetchers.base import INSTANCE_ID_RE
from ..model import Evidence
from .ecs import ScanFetcher, not_fetched
from .state import Row, State

# -- analysis (module level: also runs inside worker processes) --------------------------------

_PACK: Any = None
_POOL: queue.SimpleQueue | None = None
_POOL_LOCK = threading.Lock()
_MADE = 0
MAX_ANALYZERS = max(2, os.cpu_count() or 2)  # analysis holds the GIL: more would only cost RAM


def _take_analyzer() -> Any:
    """An Analyzer nobody else is using (a compiled engine's scratch is not shared); at most
    MAX_ANALYZERS per process, each compiled once and reused."""
    global _PACK, _POOL, _MADE
    from ..pipeline import Analyzer
    from ..rules import load_pack

    with _POOL_LOCK:
        if _POOL is None:
            _POOL = queue.SimpleQueue()
        if _PACK is None:
            _PACK = load_pack(None)
        try:
            return _POOL.get_nowait()
        except queue.Empty:
            if _MADE < MAX_ANALYZERS:
                _MADE += 1
                return Analyzer(_PACK)
    return _POOL.get()


def _give_back(analyzer: Any) -> None:
    assert _POOL is not None
    _POOL.put(analyzer)


def warm_up() -> None:
    """Process-pool initializer: load and compile once per worker process."""
    a = _take_analyzer()
    a.compiled("console", None)
    _give_back(a)


def analyse(evidence: Evidence, with_report: bool = True) -> tuple[dict, str | None, float]:
    """Diagnose; return the result line (render_json), the HTML report and the seconds taken.

    Runs in a scan thread, a worker process or a Dask worker: it touches no file.
    """
    from ..render.html import render_html
    from ..render.json import render_json

    start = time.perf_counter()
    analyzer = _take_analyzer()
    try:
        diagnosis = analyzer.analyse(evidence)
    finally:
        _give_back(analyzer)
    report = render_html(diagnosis, screenshot=evidence.screenshot) if with_report else None
    return render_json(diagnosis), report, time.perf_counter() - start


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# -- the scan ------------------------------------------------------------------------------------


@dataclass
class Options:
    out: Path
    regions: Sequence[str]
    tags: Sequence[tuple[str, str | None]] = ()
    status: str | None = None
    instance_ids: Sequence[str] | None = None  # --instances-file
    concurrency: int = 16
    screenshot: bool = True
    executor: str = "thread"  # "thread" | "process" | "dask"
    scheduler: Any = None  # dask: a scheduler address (tcp://host:8786) or a Client
    workers: int | None = None  # process pool size
    resume: bool = False


@dataclass
class Work:
    region: str
    instance_id: str
    listed: Any = None  # the SDK's instance model from the listing
    reason: str | None = None  # when set: not fetched, recorded with this reason


@dataclass
class Tally:
    total: int = 0
    done: int = 0
    resumed: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)

    def add(self, status: str) -> None:
        self.done += 1
        self.by_status[status] = self.by_status.get(status, 0) + 1


def select(fetcher: ScanFetcher, opts: Options) -> list[Work]:
    """The instances to scan, in a stable order, with a reason for those that cannot be."""
    work: list[Work] = []
    if opts.instance_ids is not None:
        pending: list[str] = []
        seen: set[str] = set()
        for raw in opts.instance_ids:
            iid = raw.strip()
            if not iid or iid in seen:
                continue
            seen.add(iid)
            if INSTANCE_ID_RE.fullmatch(iid):
                pending.append(iid)
            else:
                work.append(Work(opts.regions[0], iid, reason="not a valid ECS instance id"))
        for region in opts.regions:
            if not pending:
                break
            found = fetcher.describe_ids(region, pending)
            for iid in pending:
                if iid in found:
                    inst = found[iid]
                    if _keep(inst, opts):
                        work.append(Work(region, iid, inst))
            pending = [i for i in pending if i not in found]
        for iid in pending:
            work.append(Work(opts.regions[0], iid, reason="instance not found in "
                             + ", ".join(opts.regions)))
        return work
    seen_ids: set[str] = set()
    for region in opts.regions:
        for inst in fetcher.list_instances(region, tags=opts.tags, status=opts.status):
            if inst.instance_id and inst.instance_id not in seen_ids:
                seen_ids.add(inst.instance_id)
                work.append(Work(region, inst.instance_id, inst))
    return work


def _keep(inst: Any, opts: Options) -> bool:
    """--status and --tag also filter ids given in a file."""
    if opts.status and inst.status != opts.status:
        return False
    tags = {t.tag_key: t.tag_value for t in (inst.tags.tag or [])} if inst.tags else {}
    return all(k in tags and (v is None or tags[k] == v) for k, v in opts.tags)


class Scanner:
    def __init__(self, fetcher: ScanFetcher, opts: Options, *,
                 progress: Callable[[Tally], None] | None = None):
        self.fetcher = fetcher
        self.opts = opts
        self.progress = progress
        self.tally = Tally()
        self._procs: Any = None
        self._dask: Any = None

    # per instance (worker thread) -------------------------------------------------------------

    def _one(self, w: Work) -> Row:
        report = None
        if INSTANCE_ID_RE.fullmatch(w.instance_id):
            report = f"{w.instance_id}.html"
        error = w.reason
        fetch_s = None
        evidence: Evidence | None = None
        if error is None:
            t0 = time.perf_counter()
            try:
                evidence = self.fetcher.fetch_listed(w.region, w.listed,
                                                     screenshot=self.opts.screenshot)
            except DiagnoseError as exc:
                error = str(exc)
            except Exception as exc:  # noqa: BLE001 - one bad instance never ends the scan
                error = f"unexpected {type(exc).__name__} while fetching"
            fetch_s = time.perf_counter() - t0
        if evidence is None:
            evidence = not_fetched(w.instance_id, w.region, error or "not fetched")
        try:
            result, html, analyse_s = self._analyse(evidence, report is not None)
        except Exception as exc:  # noqa: BLE001 - e.g. a worker process died
            error = (error + "; " if error else "") + \
                f"analysis failed: {type(exc).__name__}"
            result, html, analyse_s = analyse(not_fetched(w.instance_id, w.region, error),
                                              report is not None)
        if report and html is not None:
            _write(self.opts.out / report, html)
        result["instance_id"] = w.instance_id
        result["region"] = w.region
        result["scan"] = {"error": error, "fetch_seconds": _r(fetch_s),
                          "analyse_seconds": _r(analyse_s), "report": report}
        v = result["verdict"]
        return Row(w.instance_id, w.region, v["status"], v["category"], v["summary"], error,
                   fetch_s, analyse_s, report, result)

    def _analyse(self, evidence: Evidence, with_report: bool) -> tuple[dict, str | None, float]:
        if self._dask is not None:
            return self._dask.submit(analyse, evidence, with_report, pure=False).result()
        if self._procs is not None:
            return self._procs.submit(analyse, evidence, with_report).result()
        return analyse(evidence, with_report)

    # the whole scan (main thread) -------------------------------------------------------------

    def run(self, state: State) -> Tally:
        opts = self.opts
        if opts.executor == "process":
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            # forkserver: the scan's threads are running when workers start; fork is unsafe then
            self._procs = ProcessPoolExecutor(
                max_workers=opts.workers or os.cpu_count() or 2,
                mp_context=multiprocessing.get_context("forkserver"), initializer=warm_up)
        elif opts.executor == "dask":
            self._dask = _dask_client(opts.scheduler)
        try:
            work = select(self.fetcher, opts)
            done = state.done_ids() if opts.resume else set()
            todo = [w for w in work if w.instance_id not in done]
            self.tally.total = len(work)
            self.tally.resumed = len(work) - len(todo)
            self._drive(todo, state)
        finally:
            if self._procs is not None:
                self._procs.shutdown(cancel_futures=True)
            if self._dask is not None and isinstance(opts.scheduler, str):
                self._dask.close()
        return self.tally

    def _drive(self, todo: list[Work], state: State) -> None:
        limit = max(1, self.opts.concurrency)
        it = iter(todo)
        last = 0.0
        with ThreadPoolExecutor(max_workers=limit, thread_name_prefix="scan") as pool:
            running: set[Future] = set()
            while True:
                # keep a bounded window in flight (memory stays flat on huge fleets)
                while len(running) < limit * 2:
                    w = next(it, None)
                    if w is None:
                        break
                    running.add(pool.submit(self._one, w))
                if not running:
                    break
                try:
                    finished, running = wait(running, timeout=0.5,
                                             return_when=FIRST_COMPLETED)
                    for fut in finished:
                        row = fut.result()
                        if state.record(row):
                            self.tally.add(row.status)
                except BaseException:
                    # Ctrl-C: what is committed stays; queued work is dropped, in-flight
                    # instances finish their current call and are redone by --resume
                    pool.shutdown(wait=False, cancel_futures=True)
                    raise
                now = time.monotonic()
                if self.progress and now - last >= 0.2:
                    last = now
                    self.progress(self.tally)
        if self.progress:
            self.progress(self.tally)


def _dask_client(scheduler: Any) -> Any:
    """A distributed.Client for ``scheduler`` (an address), or ``scheduler`` if it is one."""
    if scheduler is not None and not isinstance(scheduler, str):
        return scheduler
    if not scheduler:
        raise UsageError("--executor dask needs --scheduler tcp://HOST:PORT")
    try:
        from distributed import Client
    except ImportError:
        raise UsageError("--executor dask needs the 'distributed' package "
                         "(pip install distributed)") from None
    try:
        return Client(scheduler, timeout=10)
    except (OSError, TimeoutError) as exc:
        raise UsageError(f"cannot reach the Dask scheduler {scheduler}: "
                         f"{type(exc).__name__}") from None


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def write_results(state: State, out: Path) -> int:
    """results.jsonl from the state, one line per instance, sorted by id; returns the count."""
    tmp = out / "results.jsonl.tmp"
    n = 0
    with tmp.open("w", encoding="utf-8") as fh:
        for row in state.rows():
            fh.write(row["result"] + "\n")
            n += 1
    os.replace(tmp, out / "results.jsonl")
    return n


def read_ids_file(path: str) -> list[str]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read --instances-file {path}: {exc}") from None
    ids = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            ids.append(line)
    return ids


__all__ = ["Options", "Scanner", "Tally", "read_ids_file", "select", "write_results"]
