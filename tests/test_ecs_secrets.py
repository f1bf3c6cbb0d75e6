"""No secret in any output, log record, exception or saved file.

Known fake secrets are put where real ones live (environment, an STS token, the aliyun CLI's
~/.aliyun/config.json under a temporary HOME); the fetcher and the server run with DEBUG logging
(and the SDK's own header dump, DEBUG=sdk); then everything they produced is searched.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import traceback

import pytest

from diagnose.errors import DiagnoseError
from diagnose.fetchers.ecs import EcsFetcher
from diagnose.fetchers.ecs_policy import RetryPolicy, ScreenshotPacer
from diagnose.fetchers.files import save_case
from diagnose.testing.ecs_server import EcsServer, Fault, ManualClock, write_region
from diagnose.testing.samples import instance_entry, tiny_png

pytest.importorskip("alibabacloud_ecs20140526")

KEY = "LTAIfakeKeyForTests"
ENV_SECRET = "EnvSecret-7f3a9c1e5b2d4086"
STS_TOKEN = "StsToken-0c8e2a6f4b1d3957-CAIS"
PROFILE_SECRET = "ProfileSecret-93b1e7d5c2a4f608"
SECRETS = (ENV_SECRET, STS_TOKEN, PROFILE_SECRET)
REGION = "cn-hangzhou"
IID = "i-bp1test000000000001"


@pytest.fixture(scope="module")
def region_dir(tmp_path_factory):
    return write_region(tmp_path_factory.mktemp("region"), [
        instance_entry(1, console=b"Linux version 6.1\nKernel panic\n", screenshot=tiny_png(),
                       events=[{"type": "InstanceFailure.Reboot", "age_hours": 2}]),
    ], region_id=REGION)


@pytest.fixture
def home(monkeypatch, tmp_path):
    for name in list(os.environ):
        if name.startswith(("ALIBABA", "ALICLOUD")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "true")
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", KEY)
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", ENV_SECRET)
    monkeypatch.setenv("ALIBABA_CLOUD_SECURITY_TOKEN", STS_TOKEN)
    monkeypatch.setenv("DEBUG", "sdk")  # makes the SDK log every request's headers
    (tmp_path / ".aliyun").mkdir()
    config = tmp_path / ".aliyun" / "config.json"
    config.write_text(json.dumps({"current": "default", "profiles": [
        {"name": "default", "mode": "AK", "access_key_id": KEY,
         "access_key_secret": PROFILE_SECRET, "region_id": REGION}]}))
    return tmp_path


def _leaks(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


def _exception_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)) + repr(exc) + str(exc)


def test_no_secret_anywhere(region_dir, home, caplog, capfd, tmp_path):
    caplog.set_level(logging.DEBUG)
    clock = ManualClock()
    fetcher = EcsFetcher(retry=RetryPolicy(attempts=2, base=0.001, cap=0.002),
                         pacer=ScreenshotPacer(clock=clock, sleep=clock.sleep))
    texts: list[str] = []
    with EcsServer(region_dir, access_key_id=KEY, access_key_secret=ENV_SECRET,
                   security_token=STS_TOKEN, clock=clock) as srv:
        # 1. A successful fetch with the environment's STS credentials (v3 signature).
        ev = fetcher.fetch_instance(IID, region=None, profile=None, endpoint=srv.endpoint)
        assert ev.console and ev.screenshot
        texts.append(repr(ev))
        # 2. The same with the older v1 signature: the token travels in the query string.
        v1 = EcsFetcher(signature_algorithm="v2", retry=RetryPolicy(attempts=2, base=0.001,
                                                                     cap=0.002),
                        pacer=ScreenshotPacer(clock=clock, sleep=clock.sleep))
        clock.advance(20)
        texts.append(repr(v1.fetch_instance(IID, region=None, profile=None,
                                            endpoint=srv.endpoint)))
        # 3. Failures: partial ones (reasons) and fatal ones (exceptions).
        srv.inject(Fault("forbidden", action="GetInstanceScreenshot"),
                   Fault("internal_error", action="DescribeInstanceHistoryEvents", times=None))
        clock.advance(20)
        texts.append(repr(fetcher.fetch_instance(IID, region=None, profile=None,
                                                 endpoint=srv.endpoint)))
        # --profile: the profile's secret does not match the server's -> signature error.
        with pytest.raises(DiagnoseError) as info:
            fetcher.fetch_instance(IID, region=None, profile="default", endpoint=srv.endpoint)
        texts.append(_exception_text(info.value))
        srv.inject(Fault("bad_signature", action="DescribeInstances"))
        with pytest.raises(DiagnoseError) as info:
            fetcher.fetch_instance(IID, region=None, profile=None, endpoint=srv.endpoint)
        texts.append(_exception_text(info.value))
        texts.append(repr(srv) + repr(srv.calls))
    # 4. Unreachable endpoint (a network error carries the request URL inside the SDK).
    with pytest.raises(DiagnoseError) as info:
        v1.fetch_instance(IID, region=None, profile=None, endpoint=srv.endpoint, timeout=0.5)
    texts.append(_exception_text(info.value))
    # 5. What a saved case contains.
    case = tmp_path / "case"
    save_case(ev, case)
    texts += [p.read_bytes().decode("utf-8", "replace") for p in case.iterdir()]

    out, err = capfd.readouterr()
    texts += [out, err]
    texts += [r.getMessage() + (r.exc_text or "") for r in caplog.records]
    sdk_dump = [r.getMessage() for r in caplog.records if r.name == "darabonba-core"]
    assert any("x-acs-security-token" in m for m in sdk_dump)  # the dump did happen...
    assert any("***" in m for m in sdk_dump)  # ...and was scrubbed
    leaks = [(n, _leaks(t)) for n, t in enumerate(texts) if _leaks(t)]
    assert leaks == []


def test_no_secret_in_a_separate_process(region_dir, home):
    """The whole CLI-like path in a fresh interpreter: environment read at import time too."""
    with EcsServer(region_dir, access_key_id=KEY, access_key_secret=ENV_SECRET,
                   security_token=STS_TOKEN) as srv:
        script = (
            "import logging, sys\n"
            "logging.basicConfig(level=logging.DEBUG)\n"
            "from diagnose.fetchers.ecs import fetch_instance\n"
            "from diagnose.errors import DiagnoseError\n"
            f"ev = fetch_instance({IID!r}, region=None, profile=None, endpoint={srv.endpoint!r})\n"
            "print(repr(ev))\n"
            "try:\n"
            f"    fetch_instance({IID!r}, region=None, profile='default',"
            f" endpoint={srv.endpoint!r})\n"
            "except DiagnoseError as exc:\n"
            "    print('ERROR', exc)\n"
            "    raise\n"
        )
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                              env=dict(os.environ), cwd=os.getcwd(), timeout=60)
    assert "ERROR ECS rejected the STS security token" in proc.stdout
    assert "Traceback" in proc.stderr and "CredentialsError" in proc.stderr
    assert "x-acs-security-token" in proc.stderr  # the SDK's header dump ran, scrubbed
    assert _leaks(proc.stdout) == [] and _leaks(proc.stderr) == []
