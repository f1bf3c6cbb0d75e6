"""The shipped demo region: consistent with SOURCES.md, and fetchable end to end."""

from __future__ import annotations

import hashlib
import json
import os
import re
import time

import pytest

from diagnose.fetchers.base import sniff_image
from diagnose.fetchers.ecs import EcsFetcher
from diagnose.fetchers.ecs_policy import ScreenshotPacer
from diagnose.testing.ecs_server import (
    DEMO_CREDENTIALS,
    DEMO_REGION_DIR,
    EcsServer,
    ManualClock,
    load_region,
)

SPEC = json.loads((DEMO_REGION_DIR / "region.json").read_text())
SOURCES = (DEMO_REGION_DIR / "SOURCES.md").read_text()


def test_region_loads_and_has_the_promised_mix():
    region = load_region(DEMO_REGION_DIR)
    assert region.region_id == "cn-hangzhou"
    assert len(region.instances) >= 10
    kinds = {e["expect"]["status"] for e in SPEC["instances"]}
    assert {"failed", "healthy", "degraded", "skipped"} <= kinds
    assert any(e["OSType"] == "windows" for e in SPEC["instances"])
    assert any(e["Status"] == "Stopped" for e in SPEC["instances"])
    assert any(e["InstanceTypeFamily"] == "ecs.s2" for e in SPEC["instances"])


@pytest.mark.parametrize("entry", SPEC["instances"], ids=lambda e: e["name"])
def test_files_match_sources(entry):
    folder = DEMO_REGION_DIR / entry["id"]
    assert f"`{entry['id']}`" in SOURCES
    if entry["fixture"] is None:
        assert not folder.exists()
        return
    assert entry["fixture"] in SOURCES
    for name, original in (("console.log", "serial.log"), ("screenshot.png", "screen.png")):
        data = (folder / name).read_bytes()
        digest = hashlib.sha256(data).hexdigest()[:16]
        assert re.search(rf"`{name}` = `{original}` sha256 {digest}", SOURCES), name
    assert sniff_image((folder / "screenshot.png").read_bytes()) == "png"
    assert (folder / "console.log").stat().st_size < 256 * 1024  # small, as shipped


def test_whole_demo_region_over_the_sdk(monkeypatch, tmp_path):
    pytest.importorskip("alibabacloud_ecs20140526")
    for name in list(os.environ):
        if name.startswith(("ALIBABA", "ALICLOUD")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))
    clock = ManualClock()
    fetcher = EcsFetcher(pacer=ScreenshotPacer(clock=clock, sleep=clock.sleep))
    with EcsServer(DEMO_REGION_DIR, **DEMO_CREDENTIALS.as_kwargs(), clock=clock) as srv:
        start = time.perf_counter()
        results = {e["id"]: fetcher.fetch_instance(e["id"], region=srv.region_id,
                                                   endpoint=srv.endpoint,
                                                   credentials=DEMO_CREDENTIALS)
                   for e in SPEC["instances"]}
        elapsed = time.perf_counter() - start
    for entry in SPEC["instances"]:
        ev = results[entry["id"]]
        folder = DEMO_REGION_DIR / entry["id"]
        if entry["expect"]["status"] == "skipped":
            assert ev.skip_reason, entry["name"]
            assert ev.console is None and ev.screenshot is None
        else:
            assert ev.skip_reason is None
            assert ev.console == (folder / "console.log").read_bytes()
            assert ev.screenshot == (folder / "screenshot.png").read_bytes()
        assert dict(ev.subject.facts)["name"] == entry["name"]
    by_name = {dict(ev.subject.facts)["name"]: ev for ev in results.values()}
    assert "Windows" in by_name["win-09"].skip_reason and by_name["win-09"].os_hint == "windows"
    assert "retired" in by_name["legacy-10"].skip_reason
    assert [e.kind for e in by_name["dev-11"].events] == ["InstanceExpiration.Stop"]
    assert any(e.scheduled for e in by_name["bastion-07"].events)
    assert elapsed < 15  # about 5 calls per instance on loopback
