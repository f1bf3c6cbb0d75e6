"""fetch_instance end to end: the SDK talks to the local ECS endpoint over loopback HTTP."""

from __future__ import annotations

import json

import pytest

from diagnose.errors import FetchError, UsageError
from diagnose.fetchers import get_fetcher
from diagnose.fetchers.ecs import EcsFetcher, fetch_instance
from diagnose.fetchers.ecs_auth import AccessKey
from diagnose.fetchers.ecs_policy import RetryPolicy, ScreenshotPacer
from diagnose.testing.ecs_server import EcsServer, Fault, ManualClock, write_region
from diagnose.testing.samples import instance_entry, tiny_png

pytest.importorskip("alibabacloud_ecs20140526")

KEY, SECRET, REGION = "fetch-key", "fetch-secret-value", "cn-hangzhou"
CREDS = AccessKey(KEY, SECRET)
CONSOLE = b"[    0.000000] Linux version 6.1.0\r\n\x1b[0;31mKernel panic - not syncing\x1b[0m\r\n"
JPEG_HEAD = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"  # only the magic matters to the sniffer

LINUX = "i-bp1test000000000001"
WINDOWS = "i-bp1test000000000002"
RETIRED = "i-bp1test000000000003"
OLD = "i-bp1test000000000004"
STOPPED = "i-bp1test000000000005"
JPEG = "i-bp1test000000000006"
EMPTY = "i-bp1test000000000007"
BLANK_WINDOWS = "i-bp1test000000000008"
BUSY = "i-bp1test000000000009"


@pytest.fixture(scope="module")
def region_dir(tmp_path_factory):
    e = instance_entry
    instances = [
        e(1, console=CONSOLE, screenshot=tiny_png(), HealthStatus="Warning",
          events=[{"type": "InstanceFailure.Reboot", "age_hours": 3, "reason": "kernel panic",
                   "reason_code": "panic"}],
          scheduled=[{"type": "SystemMaintenance.Reboot", "in_hours": 30}]),
        e(2, OSType="windows", OSName="Windows Server 2022", screenshot=tiny_png()),
        e(3, InstanceType="ecs.s2.large", InstanceTypeFamily="ecs.s2",
          CreationTime="2019-06-01T00:00Z", console=CONSOLE, screenshot=tiny_png()),
        e(4, InstanceType="ecs.g5.large", InstanceTypeFamily="ecs.g5",
          CreationTime="2017-12-10T04:04Z", console=CONSOLE),
        e(5, Status="Stopped", console=CONSOLE, screenshot=tiny_png(),
          events=[{"type": "InstanceFailure.Reboot", "age_hours": 1}]),
        e(6, console=CONSOLE, screenshot=JPEG_HEAD + b"rest"),
        e(7, console=b"", screenshot=tiny_png()),
        e(8, OSType="windows", OSName="Windows Server 2019"),
        e(9, console=CONSOLE, events=[{"type": "SystemFailure.Reboot", "age_hours": h / 10}
                                      for h in range(1, 131)]),
    ]
    return write_region(tmp_path_factory.mktemp("region"), instances, region_id=REGION)


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    import os

    for name in list(os.environ):
        if name.startswith(("ALIBABA", "ALICLOUD")) or name == "DEBUG":
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true")
    return tmp_path


@pytest.fixture
def clock():
    return ManualClock()


@pytest.fixture
def server(region_dir, clock):
    with EcsServer(region_dir, access_key_id=KEY, access_key_secret=SECRET, clock=clock) as srv:
        yield srv


@pytest.fixture
def fetcher(clock):
    return EcsFetcher(retry=RetryPolicy(base=0.001, cap=0.002),
                      pacer=ScreenshotPacer(clock=clock, sleep=clock.sleep), sleep=lambda s: None)


def fetch(fetcher, server, iid, **kw):
    kw.setdefault("credentials", CREDS)
    return fetcher.fetch_instance(iid, region=REGION, endpoint=server.endpoint, **kw)


def art(evidence, name):
    return next(a for a in evidence.artifacts if a.name == name)


def test_healthy_linux_instance(fetcher, server, clean_env):
    ev = fetch(fetcher, server, LINUX)
    assert ev.console == CONSOLE  # raw: ANSI sequences and CRs kept for our own cleaner
    assert server.calls_to("GetInstanceConsoleOutput")[0].params["RemoveSymbols"] == "False"
    assert ev.screenshot == tiny_png()
    assert [a.name for a in ev.artifacts] == ["console", "screenshot", "events"]
    assert art(ev, "console").available and art(ev, "console").bytes == len(CONSOLE)
    stamp = art(ev, "console").detail["last_update_time"]
    assert stamp.endswith("Z") and "T" in stamp
    assert art(ev, "screenshot").detail["format"] == "png"
    facts = dict(ev.subject.facts)
    assert (ev.subject.kind, ev.subject.name) == ("ecs", LINUX)
    assert facts["region"] == REGION and facts["family"] == "g7"
    assert facts["creation_time"] == "2024-03-02T08:15:00Z"
    assert facts["os_type"] == "linux" and facts["health"] == "Warning"
    assert facts["status"] == "Running" and facts["name"] == "node-1"
    assert ev.os_hint == "linux" and ev.skip_reason is None
    kinds = [(e.kind, e.status, e.scheduled) for e in ev.events]
    assert ("InstanceFailure.Reboot", "Executed", False) in kinds
    assert ("SystemMaintenance.Reboot", "Scheduled", True) in kinds
    past = next(e for e in ev.events if not e.scheduled)
    assert past.description == "kernel panic (panic)" and past.time.endswith("Z")
    assert art(ev, "events").detail == {"history": 1, "scheduled": 1}


def test_windows_gets_screenshot_only(fetcher, server, clean_env):
    ev = fetch(fetcher, server, WINDOWS)
    assert ev.console is None and "Windows" in art(ev, "console").reason
    assert ev.screenshot == tiny_png() and ev.os_hint == "windows"
    assert not server.calls_to("GetInstanceConsoleOutput")  # eligibility: never asked


def test_windows_without_screenshot_is_skipped(fetcher, server, clean_env):
    ev = fetch(fetcher, server, BLANK_WINDOWS)
    assert ev.console is None and ev.screenshot is None
    assert "Windows" in ev.skip_reason and "empty screenshot" in ev.skip_reason


@pytest.mark.parametrize("iid, words", [
    (RETIRED, "family s2 is retired"),
    (OLD, "before 2018-01-01"),
    (STOPPED, "instance is Stopped"),
])
def test_ineligible_instances_are_skipped_without_calling(fetcher, server, clean_env, iid,
                                                          words):
    ev = fetch(fetcher, server, iid)
    assert ev.console is None and ev.screenshot is None
    assert words in ev.skip_reason
    assert art(ev, "console").reason == art(ev, "screenshot").reason
    assert not server.calls_to("GetInstanceConsoleOutput")
    assert not server.calls_to("GetInstanceScreenshot")
    assert art(ev, "events").available  # events are still worth having


def test_stopped_instance_still_reports_its_events(fetcher, server, clean_env):
    ev = fetch(fetcher, server, STOPPED)
    assert [e.kind for e in ev.events] == ["InstanceFailure.Reboot"]


@pytest.mark.parametrize("kind, word", [("not_supported", "NotSupported"),
                                        ("incorrect_status", "IncorrectInstanceStatus")])
def test_api_refusals_are_authoritative_reasons(fetcher, server, clean_env, kind, word):
    server.inject(Fault(kind, action="GetInstanceConsoleOutput"))
    ev = fetch(fetcher, server, LINUX)
    assert ev.console is None and word in art(ev, "console").reason
    assert ev.screenshot is not None and ev.skip_reason is None
    assert len(server.calls_to("GetInstanceConsoleOutput")) == 1  # not retried


def test_api_refusing_both_gives_a_skip_not_an_error(fetcher, server, clean_env):
    server.inject(Fault("not_supported", action="GetInstanceConsoleOutput"),
                  Fault("not_supported", action="GetInstanceScreenshot"))
    ev = fetch(fetcher, server, LINUX)
    assert ev.console is None and ev.screenshot is None and "NotSupported" in ev.skip_reason


def test_unknown_instance(fetcher, server, clean_env):
    with pytest.raises(FetchError) as info:
        fetch(fetcher, server, "i-bp1nosuchinstance0")
    assert str(info.value) == "instance i-bp1nosuchinstance0 not found in cn-hangzhou"


def test_jpeg_is_sniffed(fetcher, server, clean_env):
    ev = fetch(fetcher, server, JPEG)
    assert art(ev, "screenshot").detail["format"] == "jpeg"


def test_empty_console_is_a_reason(fetcher, server, clean_env):
    ev = fetch(fetcher, server, EMPTY)
    assert ev.console is None and "empty" in art(ev, "console").reason
    assert ev.screenshot is not None


def test_screenshot_not_requested(fetcher, server, clean_env):
    ev = fetch(fetcher, server, LINUX, screenshot=False)
    assert art(ev, "screenshot").reason == "screenshot not requested"
    assert not server.calls_to("GetInstanceScreenshot")


def test_rpc_v1_signature_end_to_end(server, clean_env, clock):
    old = EcsFetcher(signature_algorithm="v2",
                     pacer=ScreenshotPacer(clock=clock, sleep=clock.sleep))
    ev = fetch(old, server, LINUX)
    assert ev.console == CONSOLE and ev.screenshot is not None
    assert {c.signature for c in server.calls} == {"v1"}


def test_history_events_are_paginated(fetcher, server, clean_env):
    ev = fetch(fetcher, server, BUSY)
    assert len([e for e in ev.events if e.kind == "SystemFailure.Reboot"]) == 130
    assert len(server.calls_to("DescribeInstanceHistoryEvents")) == 2  # 100 + 30


def test_registry_and_module_function(server, clean_env):
    ev = get_fetcher("ecs").fetch(WINDOWS, region=REGION, endpoint=server.endpoint,
                                  credentials=CREDS, screenshot=False)
    assert ev.skip_reason and ev.subject.name == WINDOWS
    ev = fetch_instance(RETIRED, region=REGION, profile=None, endpoint=server.endpoint,
                        credentials=CREDS)
    assert "retired" in ev.skip_reason


# --- arguments, region and credentials -----------------------------------------------------


def test_bad_arguments_fail_before_any_call(fetcher, server, clean_env):
    with pytest.raises(UsageError, match="not an ECS instance id"):
        fetch(fetcher, server, "i-../../etc/passwd")
    with pytest.raises(UsageError, match="no region"):
        fetcher.fetch_instance(LINUX, region=None, endpoint=server.endpoint, credentials=CREDS)
    with pytest.raises(UsageError, match="endpoint"):
        fetcher.fetch_instance(LINUX, region=REGION, endpoint="ftp://x", credentials=CREDS)
    with pytest.raises(UsageError, match="endpoint"):
        fetcher.fetch_instance(LINUX, region=REGION, endpoint="http://h/path",
                               credentials=CREDS)
    assert server.calls == []


def test_credentials_and_region_from_environment(fetcher, server, clean_env, monkeypatch):
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", KEY)
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", SECRET)
    monkeypatch.setenv("ALIBABA_CLOUD_REGION_ID", REGION)
    ev = fetcher.fetch_instance(LINUX, region=None, profile=None, endpoint=server.endpoint)
    assert ev.console == CONSOLE


def _write_config(home, profiles, current):
    (home / ".aliyun").mkdir(exist_ok=True)
    (home / ".aliyun" / "config.json").write_text(json.dumps(
        {"current": current, "profiles": profiles}))


def test_credentials_and_region_from_aliyun_cli_profiles(fetcher, server, clean_env):
    _write_config(clean_env, [
        {"name": "default", "mode": "AK", "access_key_id": "other", "access_key_secret": "x",
         "region_id": "cn-beijing"},
        {"name": "lab", "mode": "AK", "access_key_id": KEY, "access_key_secret": SECRET,
         "region_id": REGION},
    ], current="default")
    # --profile picks the profile and its region, like the aliyun CLI.
    ev = fetcher.fetch_instance(LINUX, region=None, profile="lab", endpoint=server.endpoint)
    assert ev.console == CONSOLE
    # Without --profile the file's current profile is used: its key is unknown to the server.
    from diagnose.errors import CredentialsError

    with pytest.raises(CredentialsError, match="AccessKey ID"):
        fetcher.fetch_instance(LINUX, region=REGION, profile=None, endpoint=server.endpoint)


def test_profile_from_environment_variable(fetcher, server, clean_env, monkeypatch):
    _write_config(clean_env, [{"name": "lab", "mode": "AK", "access_key_id": KEY,
                               "access_key_secret": SECRET, "region_id": REGION}],
                  current="")
    monkeypatch.setenv("ALIBABA_CLOUD_PROFILE", "lab")
    ev = fetcher.fetch_instance(LINUX, region=None, profile=None, endpoint=server.endpoint)
    assert ev.console == CONSOLE
