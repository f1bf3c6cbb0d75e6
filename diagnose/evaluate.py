"""`diagnose eval DIR`: the real pipeline over a folder of labelled cases, scored.

A labelled folder holds `labels.json` (a list of objects with at least `id` and `category`; also
`status`, `platform`, `source`, `summary` when known) and, per case, `<id>.log` (the console text)
and/or a screenshot `<id>.png|.jpg|.jpeg|.ppm` (or the file named by the label's `screenshot`).
This is the format of the development corpus and of a team's own saved tickets.

A case is right when the verdict's category is the label's, or when the label only knows the
coarser parent of the verdict's category (`windows-recovery` scores as `windows-boot-error`).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from .errors import UsageError
from .extract.console import clean
from .pipeline import Analyzer, evidence_from_bytes
from .rules import CATEGORIES, CATEGORY_PARENT

SCREEN_SUFFIXES = (".png", ".jpg", ".jpeg", ".ppm")
MAX_CASE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Case:
    id: str
    category: str
    status: str | None
    platform: str | None
    log: Path | None
    screenshot: Path | None
    source: str = ""


@dataclass(frozen=True)
class CaseResult:
    case: Case
    category: str  # the verdict's
    status: str
    rule_id: str | None  # the rule that decided, None when nothing matched
    evidence_line: int | None
    evidence_text: str | None
    tail: tuple[str, ...]  # the last lines of the (cleaned) log

    @property
    def correct(self) -> bool:
        return scores_as(self.category, self.case.category)

    @property
    def status_correct(self) -> bool | None:
        return None if self.case.status is None else self.status == self.case.status


@dataclass(frozen=True)
class Evaluation:
    folder: str
    results: tuple[CaseResult, ...]

    @property
    def right(self) -> int:
        return sum(r.correct for r in self.results)

    @property
    def accuracy(self) -> float:
        return self.right / len(self.results) if self.results else 0.0

    def per_category(self) -> list[tuple[str, int, int]]:
        """(label category, right, cases), in taxonomy order."""
        total: Counter[str] = Counter(r.case.category for r in self.results)
        right: Counter[str] = Counter(r.case.category for r in self.results if r.correct)
        order = {c: i for i, c in enumerate(CATEGORIES)}
        return [(c, right[c], total[c]) for c in sorted(total, key=lambda c: order.get(c, 99))]

    def confusion(self) -> list[tuple[str, str, int]]:
        """(label, verdict, count) for every wrong pair, most frequent first."""
        pairs = Counter((r.case.category, r.category) for r in self.results if not r.correct)
        return [(a, b, n) for (a, b), n in sorted(pairs.items(), key=lambda kv: (-kv[1], kv[0]))]

    @property
    def misses(self) -> tuple[CaseResult, ...]:
        return tuple(r for r in self.results if not r.correct)

    def false_alarms(self) -> tuple[CaseResult, ...]:
        """Healthy cases called failed, and failing cases called healthy: the worst misses."""
        return tuple(r for r in self.misses
                     if (r.case.category == "healthy" and r.status == "failed")
                     or (r.case.category not in ("healthy", "unknown")
                         and r.category == "healthy"))


def scores_as(verdict: str, label: str) -> bool:
    return verdict == label or CATEGORY_PARENT.get(verdict) == label


def load_cases(folder: Path) -> list[Case]:
    """The cases of a labelled folder; a broken folder is one UsageError naming the problem."""
    labels_path = folder / "labels.json"
    if not folder.is_dir():
        raise UsageError(f"{folder}: not a directory")
    if not labels_path.is_file():
        raise UsageError(f"{folder}: no labels.json (a list of {{id, category, ...}} objects)")
    try:
        raw = json.loads(labels_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{labels_path}: cannot read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"{labels_path}: not JSON (line {exc.lineno}: {exc.msg})") from None
    except RecursionError:
        raise UsageError(f"{labels_path}: nested too deeply") from None
    if not isinstance(raw, list):
        raise UsageError(f"{labels_path}: must be a JSON list of objects")
    cases: list[Case] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        where = f"{labels_path}: entry {i + 1}"
        if not isinstance(item, dict):
            raise UsageError(f"{where}: not an object")
        cid, cat = item.get("id"), item.get("category")
        if not isinstance(cid, str) or not cid or "/" in cid or "\\" in cid or cid[0] == ".":
            raise UsageError(f"{where}: 'id' must be a file name without folders")
        if cid in seen:
            raise UsageError(f"{where}: duplicate id {cid!r}")
        seen.add(cid)
        if cat not in CATEGORIES:
            raise UsageError(f"{where} ({cid}): category {cat!r} is not a taxonomy category")
        log = folder / f"{cid}.log"
        shot = _screenshot_of(folder, cid, item.get("screenshot"))
        if not log.is_file() and shot is None:
            raise UsageError(f"{where} ({cid}): neither {cid}.log nor a screenshot found")
        status = item.get("status")
        platform = item.get("platform")
        cases.append(Case(cid, cat, status if isinstance(status, str) else None,
                          platform if platform in ("linux", "windows") else None,
                          log if log.is_file() else None, shot,
                          str(item.get("source", ""))))
    return cases


def _screenshot_of(folder: Path, cid: str, named) -> Path | None:
    if isinstance(named, str) and named and "/" not in named and not named.startswith("."):
        p = folder / named
        return p if p.is_file() else None
    for suffix in SCREEN_SUFFIXES:
        p = folder / f"{cid}{suffix}"
        if p.is_file():
            return p
    return None


def _read(path: Path) -> bytes:
    with path.open("rb") as fh:
        data = fh.read(MAX_CASE_BYTES + 1)
    if len(data) > MAX_CASE_BYTES:
        raise UsageError(f"{path}: larger than {MAX_CASE_BYTES // 2**20} MiB")
    return data


def evaluate(analyzer: Analyzer, cases: list[Case], *, folder: str = "",
             os_from_labels: bool = False, tail: int = 8) -> Evaluation:
    """Run the real pipeline on every case, as `diagnose --console/--screenshot` would."""
    results = []
    for case in cases:
        console = _read(case.log) if case.log else None
        shot = _read(case.screenshot) if case.screenshot else None
        evidence = evidence_from_bytes(
            console, name=case.id, origin=str(case.log or ""), screenshot=shot,
            screenshot_origin=str(case.screenshot) if case.screenshot else None,
            os_hint=case.platform if os_from_labels else None)
        diagnosis = analyzer.analyse(evidence, now="1970-01-01T00:00:00+00:00")
        v = diagnosis.verdict
        last = tuple(ln.text for ln in clean(console.decode("utf-8", "replace"))[-tail:]
                     ) if console and tail > 0 else ()
        results.append(CaseResult(
            case=case, category=v.category, status=v.status, rule_id=v.rule_id,
            evidence_line=v.decided_by.line if v.decided_by else None,
            evidence_text=v.decided_by.text if v.decided_by else None, tail=last))
    return Evaluation(folder, tuple(results))


# ------------------------------------------------------------------------------------------------
# Output


def _pct(a: int, b: int) -> str:
    return f"{100.0 * a / b:5.1f}%" if b else "    -"


def summary_line(ev: Evaluation) -> str:
    n = len(ev.results)
    st = [r.status_correct for r in ev.results if r.status_correct is not None]
    line = (f"accuracy {100.0 * ev.accuracy:.1f}% ({ev.right}/{n} categories right)")
    if st:
        line += f", status {100.0 * sum(st) / len(st):.1f}%"
    line += f", {len(ev.false_alarms())} healthy/failed swap(s)"
    return line


def render_text(ev: Evaluation, *, show_misses: bool = True) -> str:
    out: list[str] = [f"{len(ev.results)} cases in {ev.folder}", "", "per category:"]
    for cat, right, total in ev.per_category():
        out.append(f"  {cat:<30} {right:>4}/{total:<4} {_pct(right, total)}")
    conf = ev.confusion()
    if conf:
        out += ["", "confusion (label -> verdict):"]
        out += [f"  {a:<30} -> {b:<30} {n}" for a, b, n in conf]
    if show_misses and ev.misses:
        out += ["", "misses:"]
        for r in ev.misses:
            out.append(f"- {r.case.id}")
            out.append(f"    label {r.case.category} ({r.case.status or '?'}), verdict "
                       f"{r.category} ({r.status})")
            if r.rule_id:
                out.append(f"    decided by {r.rule_id} at line {r.evidence_line}: "
                           f"{(r.evidence_text or '')[:160]}")
            else:
                out.append("    nothing matched")
            if r.tail:
                out.append("    log ends:")
                out += [f"    | {t[:160]}" for t in r.tail]
    out += ["", summary_line(ev)]
    return "\n".join(out) + "\n"


def render_json(ev: Evaluation) -> dict:
    return {
        "folder": ev.folder,
        "cases": len(ev.results),
        "right": ev.right,
        "accuracy": round(ev.accuracy, 4),
        "per_category": [{"category": c, "right": r, "cases": t}
                         for c, r, t in ev.per_category()],
        "confusion": [{"label": a, "verdict": b, "count": n} for a, b, n in ev.confusion()],
        "false_alarms": [r.case.id for r in ev.false_alarms()],
        "results": [{
            "id": r.case.id, "label": r.case.category, "label_status": r.case.status,
            "category": r.category, "status": r.status, "correct": r.correct,
            "rule_id": r.rule_id, "evidence_line": r.evidence_line,
            "evidence_text": r.evidence_text, "tail": list(r.tail),
        } for r in ev.results],
    }
