"""Injected faults: each gives the right retry, the right one-line error, or partial evidence."""

from __future__ import annotations

import os

import pytest

from diagnose.errors import CredentialsError, FetchError
from diagnose.fetchers.ecs import EcsFetcher
from diagnose.fetchers.ecs_auth import AccessKey
from diagnose.fetchers.ecs_policy import RetryPolicy, ScreenshotPacer
from diagnose.testing.ecs_server import EcsServer, Fault, ManualClock, write_region
from diagnose.testing.samples import instance_entry, tiny_png

pytest.importorskip("alibabacloud_ecs20140526")

KEY, SECRET, REGION = "fault-key", "fault-secret-value", "cn-hangzhou"
CREDS = AccessKey(KEY, SECRET)
IID = "i-bp1test000000000001"
CONSOLE = b"Linux version 6.1.0-56-amd64\nKernel panic - not syncing: VFS\n"


@pytest.fixture(scope="module")
def region_dir(tmp_path_factory):
    return write_region(tmp_path_factory.mktemp("region"),
                        [instance_entry(1, console=CONSOLE, screenshot=tiny_png())],
                        region_id=REGION)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for name in list(os.environ):
        if name.startswith(("ALIBABA", "ALICLOUD")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true")


@pytest.fixture
def clock():
    return ManualClock()


@pytest.fixture
def server(region_dir, clock):
    with EcsServer(region_dir, access_key_id=KEY, access_key_secret=SECRET, clock=clock) as srv:
        yield srv


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps():
    return Sleeps()


@pytest.fixture
def fetcher(clock, sleeps):
    return EcsFetcher(retry=RetryPolicy(attempts=4, base=0.01, cap=0.08),
                      pacer=ScreenshotPacer(clock=clock, sleep=clock.sleep), sleep=sleeps)


def fetch(fetcher, server, **kw):
    kw.setdefault("credentials", CREDS)
    return fetcher.fetch_instance(IID, region=REGION, endpoint=server.endpoint, **kw)


def art(evidence, name):
    return next(a for a in evidence.artifacts if a.name == name)


# --- retried -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["throttling", "throttling_user", "internal_error",
                                  "service_unavailable", "malformed", "bad_gateway"])
def test_transient_faults_are_retried(fetcher, server, sleeps, kind):
    server.inject(Fault(kind, action="DescribeInstances", times=2))
    ev = fetch(fetcher, server)
    assert ev.console == CONSOLE
    assert len(server.calls_to("DescribeInstances")) == 3
    assert len(sleeps) == 2 and sleeps[0] < sleeps[1] + 0.01  # backoff, not a hammer


def test_backoff_is_exponential_and_bounded(fetcher, server, sleeps):
    server.inject(Fault("internal_error", action="DescribeInstances", times=None))
    with pytest.raises(FetchError) as info:
        fetch(fetcher, server)
    assert "after 4 attempts" in str(info.value) and "InternalError" in str(info.value)
    assert len(server.calls_to("DescribeInstances")) == 4
    assert len(sleeps) == 3 and all(s <= 0.08 for s in sleeps)
    assert sleeps[2] >= 0.02  # third wait: at least half of base * 4


def test_retry_after_header_is_honoured(fetcher, server, sleeps):
    server.inject(Fault("throttling", action="DescribeInstances", retry_after_ms=50))
    fetch(fetcher, server)
    assert sleeps[0] >= 0.05


def test_read_timeout_is_retried(server, clock, sleeps):
    server.inject(Fault("timeout", action="GetInstanceConsoleOutput", delay=1.0))
    fetcher = EcsFetcher(retry=RetryPolicy(base=0.001, cap=0.002),
                         pacer=ScreenshotPacer(clock=clock, sleep=clock.sleep), sleep=sleeps)
    ev = fetch(fetcher, server, timeout=0.3)
    assert ev.console == CONSOLE
    # One wait before the single retry (the timed-out request is still asleep on the server).
    assert len(sleeps) == 1 and len(server.calls_to("GetInstanceConsoleOutput")) >= 1


def test_persistent_timeout_becomes_a_reason(server, clock, sleeps):
    server.inject(Fault("timeout", action="GetInstanceConsoleOutput", delay=0.6, times=2))
    fetcher = EcsFetcher(retry=RetryPolicy(attempts=2, base=0.001, cap=0.002),
                         pacer=ScreenshotPacer(clock=clock, sleep=clock.sleep), sleep=sleeps)
    ev = fetch(fetcher, server, timeout=0.25)
    reason = art(ev, "console").reason
    assert ev.console is None and "did not answer in time" in reason
    assert "after 2 attempts" in reason
    assert ev.screenshot is not None  # partial evidence is still evidence


def test_unreachable_endpoint(region_dir, fetcher, sleeps):
    with EcsServer(region_dir, access_key_id=KEY, access_key_secret=SECRET) as srv:
        endpoint = srv.endpoint
    with pytest.raises(FetchError) as info:
        fetcher.fetch_instance(IID, region=REGION, endpoint=endpoint, credentials=CREDS)
    assert "connection was refused" in str(info.value)
    assert endpoint.removeprefix("http://") in str(info.value)
    assert len(sleeps) == 3


# --- never retried -------------------------------------------------------------------------


@pytest.mark.parametrize("kind, error, words", [
    ("not_found", FetchError, f"instance {IID} not found in {REGION}"),
    ("forbidden", CredentialsError, "RAM user lacks ecs:DescribeInstances"),
    ("bad_signature", CredentialsError, "signature"),
])
def test_fatal_codes_are_not_retried(fetcher, server, sleeps, kind, error, words):
    server.inject(Fault(kind, action="DescribeInstances", times=None))
    with pytest.raises(error) as info:
        fetch(fetcher, server)
    assert words in str(info.value) and "\n" not in str(info.value)
    assert len(server.calls_to("DescribeInstances")) == 1 and sleeps == []


def test_wrong_secret_and_unknown_key(fetcher, server, sleeps):
    with pytest.raises(CredentialsError, match="secret does not match"):
        fetch(fetcher, server, credentials=AccessKey(KEY, "not-the-secret"))
    with pytest.raises(CredentialsError, match="does not accept the AccessKey ID"):
        fetch(fetcher, server, credentials=AccessKey("stranger", SECRET))
    assert sleeps == []


# --- partial evidence ----------------------------------------------------------------------


def test_console_ok_screenshot_throttled_after_retries(fetcher, server, clock):
    server.inject(Fault("throttling", action="GetInstanceScreenshot", times=None))
    start = clock()
    ev = fetch(fetcher, server)
    assert ev.console == CONSOLE and ev.screenshot is None
    reason = art(ev, "screenshot").reason
    assert "throttled" in reason and "after 3 attempts" in reason
    assert len(server.calls_to("GetInstanceScreenshot")) == 3
    # The retries kept to one call per 10 s for this instance (fake clock, no real wait).
    assert clock() - start >= 20


def test_screenshot_ok_console_failing(fetcher, server):
    server.inject(Fault("internal_error", action="GetInstanceConsoleOutput", times=None))
    ev = fetch(fetcher, server)
    assert ev.console is None and ev.screenshot == tiny_png()
    assert "InternalError" in art(ev, "console").reason
    assert art(ev, "console").detail["attempts"] == 4


def test_screenshot_forbidden_is_a_reason(fetcher, server):
    server.inject(Fault("forbidden", action="GetInstanceScreenshot"))
    ev = fetch(fetcher, server)
    assert ev.console == CONSOLE
    assert art(ev, "screenshot").reason.startswith("RAM user lacks ecs:GetInstanceScreenshot")


def test_both_artifacts_forbidden_is_fatal(fetcher, server):
    server.inject(Fault("forbidden", action="GetInstanceConsoleOutput"),
                  Fault("forbidden", action="GetInstanceScreenshot"))
    with pytest.raises(CredentialsError) as info:
        fetch(fetcher, server)
    assert "ecs:GetInstanceConsoleOutput" in str(info.value)
    assert "ecs:GetInstanceScreenshot" in str(info.value)


def test_both_artifacts_failing_is_fatal(fetcher, server):
    server.inject(Fault("service_unavailable", action="GetInstanceConsoleOutput", times=None),
                  Fault("malformed", action="GetInstanceScreenshot", times=None))
    with pytest.raises(FetchError) as info:
        fetch(fetcher, server)
    assert "ServiceUnavailable" in str(info.value) and "unreadable" in str(info.value)


def test_event_failures_never_fail_the_fetch(fetcher, server):
    server.inject(Fault("forbidden", action="DescribeInstanceHistoryEvents"))
    ev = fetch(fetcher, server)
    events = art(ev, "events")
    assert events.available and "ecs:DescribeInstanceHistoryEvents" in events.reason
    server.inject(Fault("forbidden", action="DescribeInstanceHistoryEvents"),
                  Fault("internal_error", action="DescribeInstancesFullStatus", times=None))
    ev = fetch(fetcher, server)
    assert not art(ev, "events").available and ev.console == CONSOLE


# --- the 10-second screenshot rule ---------------------------------------------------------


def test_two_fetches_share_the_pacer_and_never_get_throttled(fetcher, server, clock):
    fetch(fetcher, server)
    before = clock()
    fetch(fetcher, server)
    assert clock() - before >= 10  # the pacer waited on the fake clock
    assert [c.code for c in server.calls_to("GetInstanceScreenshot")] == [None, None]


def test_throttled_screenshot_is_retried_after_the_interval(server, clock, region_dir):
    from alibabacloud_ecs20140526 import models
    from alibabacloud_ecs20140526.client import Client
    from alibabacloud_tea_openapi.utils_models import Config

    # Someone else took a screenshot of this instance just now.
    other = Client(Config(access_key_id=KEY, access_key_secret=SECRET, region_id=REGION,
                         endpoint=server.endpoint.removeprefix("http://"), protocol="http"))
    other.get_instance_screenshot(models.GetInstanceScreenshotRequest(region_id=REGION,
                                                                      instance_id=IID))
    fetcher = EcsFetcher(retry=RetryPolicy(base=0.001, cap=0.002),
                         pacer=ScreenshotPacer(clock=clock, sleep=clock.sleep),
                         sleep=lambda s: None)
    ev = fetch(fetcher, server)
    assert ev.screenshot == tiny_png()
    codes = [c.code for c in server.calls_to("GetInstanceScreenshot")]
    assert codes == [None, "Throttling", None]


def test_credentials_failing_mid_fetch_are_not_mistaken_for_bad_answers(fetcher, server,
                                                                         monkeypatch, sleeps):
    from diagnose.fetchers import ecs_auth

    original = ecs_auth._Chain.get_credentials
    seen = []

    def expiring(self):
        seen.append(1)
        if len(seen) > 1:
            raise CredentialsError("the STS credentials expired and could not be refreshed")
        return original(self)

    monkeypatch.setattr(ecs_auth._Chain, "get_credentials", expiring)
    with pytest.raises(CredentialsError, match="could not be refreshed"):
        fetch(fetcher, server)
    assert sleeps == []  # not retried as if ECS had sent garbage
