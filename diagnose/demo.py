"""`diagnose demo`: the bundled demo region, served by the local ECS endpoint on 127.0.0.1.

Every instance goes through the same path as a real one: the official SDK signs each request, the
endpoint checks the signature and answers as ECS does (including its refusals for Windows console
output, retired instance types and stopped instances), then the pipeline judges what came back.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from pathlib import Path

from .errors import DiagnoseError, UsageError

_INDEX_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#1d2330}
h1{font-size:20px}table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:6px 8px;border-bottom:1px solid #e3e6ec;vertical-align:top}
th{font-size:12px;text-transform:uppercase;color:#5b6475}
.s{font-weight:600;border-radius:3px;padding:1px 6px;color:#fff;font-size:12px}
.failed{background:#b3261e}.degraded{background:#b26a00}.in-progress{background:#1f5fae}
.healthy{background:#2e7d32}.uncertain{background:#6b7280}.skipped{background:#51657d}
.error{background:#6b2f8f}code{font-size:12px}
"""


def _index(rows: list[dict]) -> str:
    css_hash = base64.b64encode(hashlib.sha256(_INDEX_CSS.encode()).digest()).decode()
    body = []
    for r in rows:
        link = (f'<a href="{html.escape(r["report"], quote=True)}">report</a>'
                if r.get("report") else "")
        body.append(
            "<tr><td><code>{}</code><br>{}</td><td><span class='s {}'>{}</span></td>"
            "<td>{}</td><td>{}</td><td>{}</td></tr>".format(
                html.escape(r["instance_id"]), html.escape(r["name"]),
                html.escape(r["status"], quote=True), html.escape(r["status"]),
                html.escape(r["category"]), html.escape(r["summary"]), link))
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        "<meta http-equiv=Content-Security-Policy content=\"default-src 'none'; "
        f"style-src 'sha256-{css_hash}'; img-src data:; base-uri 'none'; form-action 'none'\">"
        f"<title>diagnose demo region</title><style>{_INDEX_CSS}</style></head><body>"
        "<h1>diagnose: demo region</h1><p>Each instance was fetched through the official "
        "ECS SDK from the local demo endpoint and diagnosed.</p>"
        "<table><tr><th>instance</th><th>status</th><th>category</th><th>summary</th><th></th>"
        "</tr>" + "".join(body) + "</table></body></html>\n")


def run_demo(out: Path) -> list[dict]:
    from .fetchers.ecs import fetch_instance
    from .pipeline import Analyzer
    from .render.html import render_html
    from .render.json import render_json
    from .testing.ecs_server import DEMO_CREDENTIALS, DEMO_REGION_DIR, EcsServer, load_region

    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create {out}: {exc.strerror}") from None
    analyzer = Analyzer.load()
    region = load_region(DEMO_REGION_DIR)
    rows: list[dict] = []
    with EcsServer(DEMO_REGION_DIR, **DEMO_CREDENTIALS.as_kwargs()) as server:
        for inst in region.instances:
            row = {"instance_id": inst.id, "name": inst.name, "report": ""}
            try:
                evidence = fetch_instance(inst.id, region=server.region_id,
                                          profile=None, endpoint=server.endpoint,
                                          credentials=DEMO_CREDENTIALS)
            except DiagnoseError as exc:
                row.update(status="error", category="-", summary=str(exc))
                rows.append(row)
                continue
            d = analyzer.analyse(evidence)
            stem = inst.id
            (out / f"{stem}.html").write_text(render_html(d, screenshot=evidence.screenshot),
                                              encoding="utf-8")
            (out / f"{stem}.json").write_text(
                json.dumps(render_json(d), indent=2, ensure_ascii=False) + "\n",
                encoding="utf-8")
            row.update(status=d.verdict.status, category=d.verdict.category,
                       summary=d.verdict.summary, report=f"{stem}.html")
            rows.append(row)
    (out / "index.html").write_text(_index(rows), encoding="utf-8")
    return rows
