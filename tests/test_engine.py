"""The two matching engines must agree, on the real rule pack and real logs."""

import re
from pathlib import Path

import pytest

from diagnose.engine import Pattern, PurePatternSet, _fuzz, make_pattern_set
from diagnose.extract import console as cx
from diagnose.pipeline import Analyzer

FIXTURES = Path(__file__).parent / "fixtures"


def _logs():
    return sorted(FIXTURES.rglob("serial.log"))


def test_hyperscan_loads_here():
    ps = make_pattern_set([Pattern("Kernel panic")])
    assert ps.engine == "hyperscan"


@pytest.mark.parametrize("engine", ["hyperscan", "python"])
def test_engine_basic(engine):
    ps = make_pattern_set([Pattern(r"Kernel panic - not syncing: (?P<r>.{1,50})"),
                           Pattern(r"login: ?$"), Pattern("out of MEMORY", re.IGNORECASE)],
                          engine)
    lines = ["[ 1.0] Kernel panic - not syncing: Fatal exception", "debian login: ",
             "debian login: x", "Out of memory: Killed process 1 (a)", ""]
    assert ps.scan(lines) == [(0, 0), (1, 1), (3, 2)]


def test_engines_agree_on_real_logs():
    analyzer = Analyzer.load()
    pats = analyzer.compiled().set.patterns
    hs = make_pattern_set(pats, "hyperscan")
    py = PurePatternSet(pats)
    logs = _logs()
    if not logs:
        pytest.skip("no lab fixtures present")
    total = 0
    for path in logs:
        lines = [ln.text for ln in cx.clean(cx.decode(path.read_bytes())[0])]
        a, b = hs.scan(lines), py.scan(lines)
        assert a == b, path
        total += len(a)
    assert total > 0


def test_fuzz_tolerates_ocr_confusions():
    rx = re.compile(_fuzz("INACCESSIBLE BOOT DEVICE"))
    assert rx.search("INACCESSIBLE B00T DEVICE")
    assert rx.search("lNACCESSIBLE BOOTDEVICE")
    assert not rx.search("ACCESSIBLE BOOT DEVICE")
    assert re.compile(_fuzz("Your PC ran into a problem")).search("Your PC ram into a problem") \
        is None
    assert re.compile(_fuzz("turn")).search("tum")
