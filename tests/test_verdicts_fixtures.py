"""Every real lab fixture's console log gets the verdict the lab recorded as expected.

The expected verdict in each meta.json comes from what the scenario did to the VM (the lab forced
that failure), not from running diagnose.
"""

import json
from pathlib import Path

import pytest

from diagnose.pipeline import Analyzer, evidence_from_bytes

FIXTURES = Path(__file__).parent / "fixtures" / "lab"
CASES = sorted(p.parent for p in FIXTURES.glob("*/meta.json"))


@pytest.fixture(scope="module")
def analyzer():
    return Analyzer.load()


def _expected(meta: dict, serial: bytes = b"x") -> dict:
    # a scenario whose failure shows on the screen only (GRUB rescue) may state what its console
    # alone should give in "expect_console"; an empty console log can only be `uncertain`
    if not serial.strip():
        return {"status": "uncertain", "category": "unknown"}
    return meta.get("expect_console", meta["expect"])


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_console_verdict(analyzer, case):
    meta = json.loads((case / "meta.json").read_text())
    data = (case / "serial.log").read_bytes()
    want = _expected(meta, data)
    d = analyzer.analyse(evidence_from_bytes(data, name=case.name, origin=str(case)))
    got = (d.verdict.status, d.verdict.category)
    assert got == (want["status"], want["category"]), (d.verdict.summary, [
        (f.rule_id, f.line, f.text) for f in d.findings][-8:])


HEALTHY = [c for c in CASES
           if json.loads((c / "meta.json").read_text())["expect"]["category"] == "healthy"]


@pytest.mark.parametrize("case", HEALTHY, ids=[c.name for c in HEALTHY])
def test_healthy_boots_have_no_failure_findings(analyzer, case):
    data = (case / "serial.log").read_bytes()
    d = analyzer.analyse(evidence_from_bytes(data, name=case.name, origin=str(case)))
    last = d.console.boots[-1].index
    bad = [f for f in d.findings if f.boot == last and f.severity in ("critical", "error")]
    assert not bad, [(f.rule_id, f.text) for f in bad]
