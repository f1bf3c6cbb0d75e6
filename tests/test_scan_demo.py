"""`diagnose scan --demo` end to end (the demo region through the official SDK), and `scan diff`."""

from __future__ import annotations

import json
import re
import sqlite3

import pytest

pytest.importorskip("alibabacloud_ecs20140526")

from diagnose.scan.cli import diff, main  # noqa: E402
from diagnose.testing.ecs_server import DEMO_REGION_DIR  # noqa: E402


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("scan")
    rc = main(["--demo", "--out", str(out), "--progress", "none"])
    return out, rc


def _expected():
    spec = json.loads((DEMO_REGION_DIR / "region.json").read_text())
    return {i["id"]: i["expect"] for i in spec["instances"]}


def test_demo_scan_results_match_the_demo_expectations(demo_out):
    out, rc = demo_out
    assert rc == 1  # the demo region has failed instances
    lines = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    expected = _expected()
    assert sorted(r["instance_id"] for r in lines) == sorted(expected)
    for r in lines:
        want = expected[r["instance_id"]]
        assert r["region"] == "cn-hangzhou"
        assert r["verdict"]["status"] == want["status"], r["instance_id"]
        if "category" in want:
            assert r["verdict"]["category"] == want["category"]
        assert {"verdict", "findings", "artifacts", "subject", "tool"} <= set(r)
        assert (out / f"{r['instance_id']}.html").is_file()


def test_demo_scan_index_has_the_summary(demo_out):
    out, _ = demo_out
    page = (out / "index.html").read_text()
    expected = _expected()
    failed = sum(1 for e in expected.values() if e["status"] == "failed")
    assert f"failed {failed}" in page
    assert "By zone" in page and "By instance type family" in page and "By OS" in page
    assert "<script" not in page
    css = re.search(r"<style>(.*?)</style>", page, re.S).group(1)
    import base64
    import hashlib
    digest = base64.b64encode(hashlib.sha256(css.encode()).digest()).decode()
    assert f"'sha256-{digest}'" in page
    # failed instances come before the skipped list, each linked to its report
    assert page.index("i-bp1demovfspanic00001.html") < page.index("Skipped (")
    assert "ECS serves no console output" in page  # a skipped reason


def test_state_has_one_row_per_instance(demo_out):
    out, _ = demo_out
    db = sqlite3.connect(out / "state.sqlite")
    rows = db.execute("SELECT instance_id, status, finished FROM instances").fetchall()
    assert len(rows) == len(_expected()) == len({r[0] for r in rows})
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_diff(tmp_path, demo_out):
    out, _ = demo_out
    old = tmp_path / "old.jsonl"
    lines = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    # pretend the last scan saw one failed instance healthy and one healthy one failed
    for r in lines:
        if r["instance_id"] == "i-bp1demovfspanic00001":
            r["verdict"]["status"], r["verdict"]["category"] = "healthy", "healthy"
        if r["instance_id"] == "i-bp1demohealthy000007":
            r["verdict"]["status"], r["verdict"]["category"] = "failed", "kernel-panic-vfs"
    old.write_text("".join(json.dumps(r) + "\n" for r in lines))
    d = diff(str(old), str(out))
    assert [i["instance_id"] for i in d["new_failures"]] == ["i-bp1demovfspanic00001"]
    assert [i["instance_id"] for i in d["recovered"]] == ["i-bp1demohealthy000007"]
    assert len(d["unchanged"]) + len(d["still_failed"]) == len(lines) - 2
    assert main(["diff", str(old), str(out)]) == 1
    assert main(["diff", str(out), str(out / "results.jsonl")]) == 0


def test_fleet_page_in_headless_chromium(demo_out):
    """The fleet summary opens in a real browser: the summary is there, nothing is refused by
    the CSP and the page logs no console message."""
    import os
    import shutil
    import subprocess
    import tempfile

    binary = shutil.which("chromium")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is required in CI (apt-get install -y chromium)")
        pytest.skip("headless Chromium not installed")
    out, _ = demo_out
    page = out / "index.html"
    profile = tempfile.mkdtemp(prefix="chromium-")
    proc = subprocess.run(
        [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
         "--virtual-time-budget=1000", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, errors="replace", timeout=90, stdin=subprocess.DEVNULL)
    shutil.rmtree(profile, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    messages = [ln for ln in proc.stderr.splitlines()
                if ":CONSOLE" in ln or "Content Security Policy" in ln or "Refused to" in ln]
    assert not messages, messages
    # the rendered DOM still holds the summary: every failed and skipped instance is listed
    lines = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    listed = [r["instance_id"] for r in lines if r["verdict"]["status"] in ("failed", "skipped")]
    assert listed
    for instance_id in listed:
        assert instance_id in dom
    first_failed = min(dom.find(r["instance_id"]) for r in lines
                       if r["verdict"]["status"] == "failed")
    first_skipped = min(dom.find(r["instance_id"]) for r in lines
                        if r["verdict"]["status"] == "skipped")
    assert first_failed < first_skipped  # failed instances come first
