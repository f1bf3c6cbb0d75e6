"""index.html for a scan: counts, bar charts (CSS widths), breakdowns, failed instances first.

Self-contained like the demo's index: one inline style allowed by its hash in the CSP, no
script, no external resource. Every value from the cloud or a console is escaped.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
from collections import Counter
from collections.abc import Iterable
from typing import Any

from ..model import STATUSES

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1150px;color:#1d2330;
padding:0 1em}
h1{font-size:21px}h2{font-size:16px;margin-top:1.8em}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #e3e6ec;vertical-align:top}
th{font-size:12px;text-transform:uppercase;color:#5b6475}
.s{font-weight:600;border-radius:3px;padding:1px 6px;color:#fff;font-size:12px;white-space:nowrap}
.bars{table-layout:fixed}.bars td{border:0;padding:2px 6px}
.bars td.l{width:45%;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.bars td.n{width:4em;text-align:right}.bar{height:14px;background:#8a94a6;min-width:2px}
.failed{background:#b3261e}.degraded{background:#b26a00}.in-progress{background:#1f5fae}
.healthy{background:#2e7d32}.uncertain{background:#6b7280}.skipped{background:#51657d}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(330px,1fr));gap:0 2em}
code{font-size:12px;white-space:nowrap}.muted{color:#5b6475}
""".strip()

_WIDTH_CLASSES = 101  # w0..w100: bar widths as classes (the CSP allows no style attributes)
_CSS_FULL = _CSS + "\n" + "".join(f".w{i}{{width:{i}%}}" for i in range(_WIDTH_CLASSES))
_FAMILY_RE = re.compile(r"^(?:ecs\.)?([a-z0-9-]+)", re.I)


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _bars(title: str, counts: Counter, *, status_colours: bool = False, limit: int = 20) -> str:
    if not counts:
        return ""
    top = max(counts.values())
    rows = []
    items = counts.most_common()
    if status_colours:
        items = [(s, counts[s]) for s in STATUSES if counts.get(s)] + \
                [(k, v) for k, v in items if k not in STATUSES]
    for key, n in items[:limit]:
        width = max(1, round(100 * n / top)) if top else 0
        colour = f" {_e(key)}" if status_colours and key in STATUSES else ""
        label = _e(key or "(unknown)")
        rows.append(f"<tr><td class=l title='{label}'>{label}</td><td class=n>{n}</td>"
                    f"<td><div class='bar{colour} w{width}'></div></td></tr>")
    more = len(items) - limit
    tail = f"<p class=muted>and {more} more</p>" if more > 0 else ""
    return f"<div><h2>{_e(title)}</h2><table class=bars>{''.join(rows)}</table>{tail}</div>"


def _family(facts: dict[str, str]) -> str:
    if facts.get("family"):
        return facts["family"]
    m = _FAMILY_RE.match(facts.get("instance_type", ""))
    return m.group(1) if m else ""


def render_index(results: Iterable[dict[str, Any]], *, title: str = "diagnose fleet scan",
                 meta: dict[str, Any] | None = None) -> str:
    """The summary page from result lines (render_json + instance_id + region + scan)."""
    by_status: Counter = Counter()
    by_category: Counter = Counter()
    by_zone: Counter = Counter()
    by_family: Counter = Counter()
    by_os: Counter = Counter()
    problems: list[tuple[int, str, str, dict[str, Any]]] = []
    skipped: list[dict[str, Any]] = []
    order = {s: i for i, s in enumerate(("failed", "degraded", "in-progress", "uncertain"))}
    total = 0
    for r in results:
        total += 1
        v = r.get("verdict", {})
        status = v.get("status", "")
        facts = r.get("subject", {}).get("facts", {})
        by_status[status] += 1
        by_category[v.get("category", "")] += 1
        by_zone[facts.get("zone", "")] += 1
        by_family[_family(facts)] += 1
        by_os[facts.get("os_name", "")] += 1
        # keep only what the tables show: a fleet's full results never sit in memory
        slim = {"instance_id": r.get("instance_id"), "region": r.get("region"),
                "verdict": {k: v.get(k) for k in ("status", "category", "title", "summary")},
                "subject": {"facts": {"name": facts.get("name", "")}},
                "scan": {k: (r.get("scan") or {}).get(k) for k in ("report", "error")}}
        if status in order:
            problems.append((order[status], v.get("category", ""), r.get("instance_id", ""),
                             slim))
        elif status == "skipped":
            skipped.append(slim)
    problems.sort(key=lambda t: t[:3])
    skipped.sort(key=lambda r: str(r.get("instance_id", "")))

    def row(r: dict[str, Any], reason: str) -> str:
        v = r.get("verdict", {})
        facts = r.get("subject", {}).get("facts", {})
        report = (r.get("scan") or {}).get("report")
        iid = _e(r.get("instance_id"))
        link = f"<a href='{_e(report)}'><code>{iid}</code></a>" if report else f"<code>{iid}</code>"
        status = v.get("status", "")
        cls = _e(status) if status in STATUSES else ""
        return (f"<tr><td>{link}<br>{_e(facts.get('name', ''))}</td>"
                f"<td><span class='s {cls}'>{_e(status)}</span></td>"
                f"<td>{_e(v.get('category', ''))}</td><td>{_e(r.get('region', ''))}</td>"
                f"<td>{_e(reason)}</td></tr>")

    def one_line(text: Any, limit: int = 240) -> str:
        text = " ".join(str(text or "").split())
        return text if len(text) <= limit else text[: limit - 1] + "\u2026"

    head = ("<tr><th>instance</th><th>status</th><th>category</th><th>region</th>"
            "<th>reason</th></tr>")
    prob_rows = "".join(row(r, one_line(r.get("verdict", {}).get("title")
                                        or r.get("verdict", {}).get("summary")))
                        for *_, r in problems)
    skip_rows = "".join(row(r, one_line((r.get("scan") or {}).get("error")
                                        or r.get("verdict", {}).get("summary")))
                        for r in skipped)
    counts = " ".join(f"<span class='s {_e(s)}'>{_e(s)} {by_status[s]}</span>"
                      for s in STATUSES if by_status.get(s))
    meta_line = ""
    if meta:
        meta_line = "<p class=muted>" + _e(", ".join(f"{k}: {v}" for k, v in meta.items())) \
            + "</p>"
    css_hash = base64.b64encode(hashlib.sha256(_CSS_FULL.encode()).digest()).decode()
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width,initial-scale=1'>"
        "<meta http-equiv=Content-Security-Policy content=\"default-src 'none'; "
        f"style-src 'sha256-{css_hash}'; img-src data:; base-uri 'none'; "
        "form-action 'none'\">"
        f"<title>{_e(title)}</title><style>{_CSS_FULL}</style></head><body>"
        f"<h1>{_e(title)}</h1><p>{total} instance(s): {counts}</p>{meta_line}"
        "<div class=grid>"
        + _bars("By status", by_status, status_colours=True)
        + _bars("By category", by_category)
        + _bars("By zone", by_zone)
        + _bars("By instance type family", by_family)
        + _bars("By OS", by_os)
        + "</div>"
        f"<h2>Needs attention ({len(problems)})</h2>"
        + (f"<table>{head}{prob_rows}</table>" if problems else "<p>None.</p>")
        + f"<h2>Skipped ({len(skipped)})</h2>"
        + (f"<table>{head}{skip_rows}</table>" if skipped else "<p>None.</p>")
        + "</body></html>\n")


def load_results(path: Any) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]
