"""Token buckets, rate parsing, progress line, fleet page escaping: no network."""

from __future__ import annotations

import pytest

from diagnose.errors import UsageError
from diagnose.scan.fleet_html import render_index
from diagnose.scan.limits import RateLimits, TokenBucket, parse_rate
from diagnose.scan.progress import line
from diagnose.scan.runner import Tally
from diagnose.testing.ecs_server import ManualClock


def test_bucket_spaces_calls_at_its_rate():
    clock = ManualClock(0.0)
    b = TokenBucket(10, burst=1, clock=clock, sleep=clock.advance)
    for _ in range(21):
        b.acquire()
    # one saved token, then 20 more at 10/s
    assert clock() == pytest.approx(2.0)


def test_bucket_halves_on_throttling_and_recovers_slowly():
    clock = ManualClock(0.0)
    b = TokenBucket(20, clock=clock, sleep=clock.advance)
    b.on_throttled()
    assert b.rate == pytest.approx(10)
    b.on_throttled()
    assert b.rate == pytest.approx(5)
    clock.advance(1.0)
    b.reserve()
    assert 5 < b.rate < 8  # a small step per quiet second, not a jump back
    clock.advance(60.0)
    b.reserve()
    assert b.rate == pytest.approx(20)
    assert b.throttled == 2


def test_bucket_never_stops():
    clock = ManualClock(0.0)
    b = TokenBucket(8, clock=clock, sleep=clock.advance)
    for _ in range(50):
        b.on_throttled()
    assert b.rate > 0


def test_rate_limits_defaults_and_overrides():
    limits = RateLimits({"GetInstanceScreenshot": 5})
    assert limits.bucket("GetInstanceScreenshot").nominal == 5
    assert limits.bucket("DescribeInstances").nominal == 10
    assert limits.bucket("GetInstanceConsoleOutput").nominal == 20


@pytest.mark.parametrize("text,expected", [("GetInstanceScreenshot=5/s", 5.0),
                                           ("DescribeInstances=2.5", 2.5)])
def test_parse_rate(text, expected):
    assert parse_rate(text)[1] == expected


@pytest.mark.parametrize("text", ["=5/s", "X=0/s", "X=-1/s", "X=fast", "a b=1/s"])
def test_parse_rate_rejects(text):
    with pytest.raises(UsageError):
        parse_rate(text)


def test_progress_line_counts_rate_eta():
    t = Tally(total=110, resumed=10, started=0.0)
    for s in ["failed"] * 3 + ["healthy"] * 7:
        t.add(s)
    text = line(t, now=5.0)
    assert "10/100" in text and "F:3" in text and "H:7" in text
    assert "2.0/s" in text and "ETA 45s" in text and "+10 resumed" in text


def test_index_escapes_hostile_values_and_has_no_script():
    evil = "<script>alert(1)</script>"
    results = [{"instance_id": "i-abcdefgh1234", "region": "cn-x",
                "verdict": {"status": "failed", "category": "kernel-panic-vfs",
                            "title": evil, "summary": evil},
                "subject": {"facts": {"name": evil, "zone": evil, "os_name": evil,
                                      "instance_type": "ecs.g7.large"}},
                "scan": {"report": "i-abcdefgh1234.html", "error": None}},
               {"instance_id": "'><img src=x>", "region": "cn-x",
                "verdict": {"status": "skipped", "category": "skipped", "summary": "s"},
                "subject": {"facts": {}}, "scan": {"report": None, "error": evil}}]
    page = render_index(results)
    assert "<script" not in page and "<img" not in page
    assert "&lt;script&gt;" in page
    assert "Content-Security-Policy" in page and "style-src 'sha256-" in page
    assert "href='i-abcdefgh1234.html'" in page
    assert "failed 1" in page and "skipped 1" in page
