"""ECS rules without a network: times, eligibility, error codes, retries, pacing, regions."""

from __future__ import annotations

import logging
import random
import subprocess
import sys
import threading
from datetime import UTC, datetime

import pytest

from diagnose.errors import CredentialsError, UsageError
from diagnose.fetchers import get_fetcher, names
from diagnose.fetchers.base import child_path, sniff_image, validate_instance_id
from diagnose.fetchers.ecs_auth import (
    AccessKey,
    SecretFilter,
    chosen_profile_name,
    mask,
    redact,
    resolve,
    resolve_region,
)
from diagnose.fetchers.ecs_policy import (
    ApiFailure,
    Kind,
    RetryPolicy,
    ScreenshotPacer,
    classify,
    describe,
    family_of,
    is_retired_family,
    iso_utc,
    parse_console_time,
    parse_creation_time,
    plan_for,
)
from diagnose.testing.ecs_server import ManualClock

# --- times ---------------------------------------------------------------------------------


@pytest.mark.parametrize("raw, expected", [
    ("2017-12-10T04:04Z", "2017-12-10T04:04:00Z"),  # the documented sample: minutes only
    ("2017-12-10T04:04:31Z", "2017-12-10T04:04:31Z"),
    ("2024-03-02T08:15:00.000Z", "2024-03-02T08:15:00Z"),
    ("2024-03-02T16:15+08:00", "2024-03-02T08:15:00Z"),
])
def test_creation_time_formats(raw, expected):
    assert iso_utc(parse_creation_time(raw)) == expected


@pytest.mark.parametrize("raw, expected", [
    # No zone: Beijing time (UTC+8), as the Chinese page and the SDK docstring say.
    ("2018-03-22 10:04:57", "2018-03-22T02:04:57Z"),
    # With Z: UTC, as the 2021 English page says.
    ("2018-03-22T10:04:57Z", "2018-03-22T10:04:57Z"),
    ("2018-03-22T10:04Z", "2018-03-22T10:04:00Z"),
])
def test_console_time_formats(raw, expected):
    assert iso_utc(parse_console_time(raw)) == expected


@pytest.mark.parametrize("raw", ["", None, "yesterday", "2018-13-40 10:00:00", "2018-03-22"])
def test_unreadable_times_are_none(raw):
    assert parse_console_time(raw) is None
    assert parse_creation_time(raw) is None


# --- eligibility ---------------------------------------------------------------------------


@pytest.mark.parametrize("itype, family, expected", [
    ("ecs.s2.large", "ecs.s2", "s2"),
    ("ecs.g7.xlarge", "", "g7"),
    ("", "ecs.sn1ne", "sn1ne"),
    ("ecs.gn4-c4g1.xlarge", None, "gn4-c4g1"),
    (None, None, ""),
])
def test_family_of(itype, family, expected):
    assert family_of(itype, family) == expected


def test_retired_families():
    for fam in ("sn1", "sn2", "t1", "s1", "s2", "s3", "m1", "m2", "c1", "c2", "c4", "ce4",
                "cm4", "n1", "n2", "e3", "gn4", "ga1", "sccgn6ne", "gn4-c8g1", "S2"):
        assert is_retired_family(fam), fam
    for fam in ("g7", "sn1ne", "c6", "gn6i", "t5", "n4"):
        assert not is_retired_family(fam), fam


NEW = datetime(2024, 1, 1, tzinfo=UTC)


def test_plan_linux_running_gets_both():
    plan = plan_for(os_type="linux", family="g7", created=NEW, status="Running")
    assert plan.console_skip is None and plan.screenshot_skip is None and not plan.nothing


def test_plan_windows_screenshot_only():
    plan = plan_for(os_type="Windows", family="g7", created=NEW, status="Running")
    assert "Windows" in plan.console_skip
    assert plan.screenshot_skip is None


def test_plan_retired_family_neither():
    plan = plan_for(os_type="linux", family="s2", created=NEW, status="Running")
    assert plan.nothing and "s2 is retired" in plan.console_skip
    assert plan.console_skip == plan.screenshot_skip


def test_plan_created_before_2018_neither():
    plan = plan_for(os_type="linux", family="g5", created=parse_creation_time(
        "2017-12-10T04:04Z"), status="Running")
    assert plan.nothing and "2017-12-10" in plan.console_skip and "2018" in plan.console_skip


def test_plan_cutoff_is_beijing_midnight():
    # 2017-12-31T16:00Z is 2018-01-01 00:00 in Beijing: not before the cutoff.
    ok = plan_for(os_type="linux", family="g5", created=parse_creation_time(
        "2017-12-31T16:00Z"), status="Running")
    early = plan_for(os_type="linux", family="g5", created=parse_creation_time(
        "2017-12-31T15:59Z"), status="Running")
    assert not ok.nothing and early.nothing


@pytest.mark.parametrize("status", ["Stopped", "Starting", "Stopping", "Pending", None])
def test_plan_not_running_neither(status):
    plan = plan_for(os_type="linux", family="g7", created=NEW, status=status)
    assert plan.nothing and "Running" in plan.console_skip


def test_plan_screenshot_not_wanted():
    plan = plan_for(os_type="linux", family="g7", created=NEW, status="Running",
                    want_screenshot=False)
    assert plan.console_skip is None and plan.screenshot_skip == "screenshot not requested"


# --- error codes ---------------------------------------------------------------------------


@pytest.mark.parametrize("code, kind", [
    ("Throttling", Kind.RETRY), ("Throttling.User", Kind.RETRY), ("Throttling.Api", Kind.RETRY),
    ("ServiceUnavailable", Kind.RETRY), ("InternalError", Kind.RETRY),
    ("InvalidInstanceId.NotFound", Kind.NOT_FOUND), ("Forbidden.RAM", Kind.PERMISSION),
    ("SignatureDoesNotMatch", Kind.CREDENTIALS), ("InvalidAccessKeyId.NotFound",
                                                  Kind.CREDENTIALS),
    ("InvalidTimeStamp.Expired", Kind.CREDENTIALS), ("NotSupported", Kind.UNSUPPORTED),
    ("IncorrectInstanceStatus", Kind.WRONG_STATE), ("InvalidParameter", Kind.OTHER),
])
def test_classify_by_code(code, kind):
    # The HTTP status is deliberately misleading: only the Code counts.
    assert classify(ApiFailure(code=code, http_status=200)) is kind


def test_classify_network_and_malformed_retry():
    assert classify(ApiFailure(network="timeout")) is Kind.RETRY
    assert classify(ApiFailure(malformed=True)) is Kind.RETRY
    assert classify(ApiFailure(http_status=502)) is Kind.RETRY  # no code at all


def _say(failure, action="GetInstanceScreenshot", attempts=1):
    return describe(failure, action=action, instance_id="i-abcdefgh1", region="cn-hangzhou",
                    endpoint="ecs.cn-hangzhou.aliyuncs.com", attempts=attempts)


def test_messages_are_one_line_and_specific():
    assert _say(ApiFailure(code="InvalidInstanceId.NotFound")) == \
        "instance i-abcdefgh1 not found in cn-hangzhou"
    ram = _say(ApiFailure(code="Forbidden.RAM"))
    assert ram.startswith("RAM user lacks ecs:GetInstanceScreenshot")
    assert "ecs:Foo" in _say(ApiFailure(code="Forbidden.RAM", auth_action="ecs:Foo"))
    assert "after 4 attempts" in _say(ApiFailure(code="Throttling"), attempts=4)
    assert "did not answer in time" in _say(ApiFailure(network="timeout"))
    hostile = _say(ApiFailure(code="Weird", message="line1\nline2\x1b[31m"))
    assert "\n" not in hostile and "\x1b" not in hostile


# --- retries and pacing --------------------------------------------------------------------


def test_backoff_grows_is_jittered_and_capped():
    policy = RetryPolicy(attempts=6, base=1.0, cap=5.0)
    rng = random.Random(7)
    delays = [policy.delay(n, rng) for n in range(6)]
    for n, d in enumerate(delays):
        step = min(5.0, 2 ** n)
        assert step / 2 <= d <= step
    assert max(delays) <= 5.0
    assert len({round(d, 6) for d in delays}) == len(delays)  # jitter: no two alike


def test_backoff_honours_retry_after_within_cap():
    policy = RetryPolicy(base=0.1, cap=3.0)
    assert policy.delay(0, random.Random(1), retry_after=2.0) == 2.0
    assert policy.delay(0, random.Random(1), retry_after=60.0) == 3.0


def test_pacer_spaces_calls_per_instance():
    clock = ManualClock()
    pacer = ScreenshotPacer(10.0, clock=clock, sleep=clock.sleep)
    assert pacer.acquire("i-aaaaaaaa1") == 0
    assert pacer.acquire("i-bbbbbbbb1") == 0  # other instances do not wait
    clock.advance(3)
    assert pacer.acquire("i-aaaaaaaa1") == pytest.approx(7)
    assert pacer.acquire("i-aaaaaaaa1") == pytest.approx(10)


def test_pacer_reservations_are_thread_safe():
    clock = ManualClock()
    pacer = ScreenshotPacer(10.0, clock=clock, sleep=lambda s: None)
    waits: list[float] = []
    lock = threading.Lock()

    def worker():
        w = pacer.reserve("i-aaaaaaaa1")
        with lock:
            waits.append(w)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(waits) == [10.0 * n for n in range(8)]


def test_pacer_push_back():
    clock = ManualClock()
    pacer = ScreenshotPacer(1.0, clock=clock, sleep=clock.sleep)
    pacer.acquire("i-aaaaaaaa1")
    pacer.push_back("i-aaaaaaaa1", 5.0)
    assert pacer.acquire("i-aaaaaaaa1") == pytest.approx(5.0)


# --- ids, paths, images --------------------------------------------------------------------


@pytest.mark.parametrize("good", ["i-bp1c1xhsrac2coiw0abc", "i-23yi8tnhj", "i-t4n0abcdefgh"])
def test_instance_ids_accepted(good):
    assert validate_instance_id(good) == good


@pytest.mark.parametrize("bad", ["i-bp1c1xhsrac2coiw****", "i-../../etc", "I-ABCDEFGHI",
                                 "i-abc", "x-abcdefghij", "i-abcdefgh/", "", "i-" + "a" * 31])
def test_instance_ids_refused(bad):
    with pytest.raises(UsageError):
        validate_instance_id(bad)


@pytest.mark.parametrize("bad", ["..", ".", "/etc", "a/b", "..\\x", "", "a\x00b", "-rf"])
def test_child_path_refuses_escapes(bad, tmp_path):
    with pytest.raises(UsageError):
        child_path(tmp_path, bad)


def test_sniff_image():
    assert sniff_image(b"\x89PNG\r\n\x1a\n....") == "png"
    assert sniff_image(b"\xff\xd8\xff\xe0....") == "jpeg"
    assert sniff_image(b"GIF89a") is None
    assert sniff_image(b"") is None and sniff_image(None) is None


# --- region, profile, redaction ------------------------------------------------------------


def test_region_precedence():
    profile = {"region_id": "cn-beijing"}
    assert resolve_region("eu-central-1", {"ALIBABA_CLOUD_REGION_ID": "cn-shanghai"},
                          profile) == "eu-central-1"
    assert resolve_region(None, {"ALIBABA_CLOUD_REGION_ID": "cn-shanghai"},
                          profile) == "cn-shanghai"
    assert resolve_region(None, {}, profile) == "cn-beijing"
    with pytest.raises(UsageError, match="no region"):
        resolve_region(None, {}, None)
    with pytest.raises(UsageError, match="not an Alibaba Cloud region"):
        resolve_region("cn hangzhou; rm", {}, None)


def test_profile_choice():
    config = {"current": "main", "profiles": [{"name": "main"}, {"name": "dev"}]}
    assert chosen_profile_name("dev", config, {"ALIBABA_CLOUD_PROFILE": "x"}) == "dev"
    assert chosen_profile_name(None, config, {"ALIBABA_CLOUD_PROFILE": "x"}) == "x"
    assert chosen_profile_name(None, config, {}) == "main"
    assert chosen_profile_name(None, None, {}) is None


def test_missing_profile_is_a_credentials_error(tmp_path):
    env = {"HOME": str(tmp_path), "ALIBABA_CLOUD_ECS_METADATA_DISABLED": "true"}
    with pytest.raises(CredentialsError, match="profile 'nope' not found"):
        resolve(region="cn-hangzhou", profile="nope", env=env)


def test_no_credentials_anywhere(tmp_path):
    env = {"HOME": str(tmp_path), "ALIBABA_CLOUD_ECS_METADATA_DISABLED": "true"}
    with pytest.raises(CredentialsError, match="no usable Alibaba Cloud credentials"):
        resolve(region="cn-hangzhou", profile=None, env=env)


def test_broken_config_file_does_not_echo_it(tmp_path):
    (tmp_path / ".aliyun").mkdir()
    (tmp_path / ".aliyun" / "config.json").write_text('{"access_key_secret": "s3cr3t-xyz"')
    env = {"HOME": str(tmp_path), "ALIBABA_CLOUD_ECS_METADATA_DISABLED": "true"}
    with pytest.raises(CredentialsError) as info:
        resolve(region="cn-hangzhou", profile=None, env=env)
    assert "s3cr3t-xyz" not in str(info.value)


def test_mask_and_access_key_repr():
    key = AccessKey("LTAI5tExampleKeyId", "very-secret-value")
    assert "very-secret-value" not in repr(key)
    assert mask("LTAI5tExampleKeyId") == "LT***Id"
    assert mask("abc") == "***"


def test_redaction_filter_scrubs_records():
    record = logging.LogRecord("darabonba-core", logging.DEBUG, __file__, 1,
                               "> x-acs-security-token : %s", ("tok-123456",), None)
    SecretFilter(["tok-123456"]).filter(record)
    assert "tok-123456" not in record.getMessage()
    assert redact("a tok-123456 b", ["tok-123456"]) == "a *** b"


# --- registry ------------------------------------------------------------------------------


def test_registry_names_and_unknown():
    assert set(names()) >= {"ecs", "files"}
    assert get_fetcher("files").name == "files"
    with pytest.raises(UsageError, match="unknown fetcher"):
        get_fetcher("nope")


def test_registry_is_lazy():
    code = ("import sys; from diagnose.fetchers import get_fetcher; get_fetcher('files'); "
            "import diagnose.fetchers.ecs; "
            "print(any(m.startswith('alibabacloud') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    # Neither choosing 'files' nor importing the ECS module loads the cloud SDK.
    assert out.stdout.strip() == "False"
