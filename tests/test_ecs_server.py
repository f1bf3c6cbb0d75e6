"""The local ECS endpoint, driven by the official SDK over real HTTP on loopback."""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from urllib.parse import urlencode

import pytest

from diagnose.testing.acs_signature import v1_signature
from diagnose.testing.ecs_server import (
    DEMO_CREDENTIALS,
    EcsServer,
    Fault,
    ManualClock,
    load_region,
    write_region,
)
from diagnose.testing.samples import instance_entry, tiny_png

pytest.importorskip("alibabacloud_ecs20140526")

from alibabacloud_ecs20140526 import models  # noqa: E402
from alibabacloud_ecs20140526.client import Client  # noqa: E402
from alibabacloud_tea_openapi.exceptions import ClientException, ServerException  # noqa: E402
from alibabacloud_tea_openapi.utils_models import Config  # noqa: E402
from darabonba.exceptions import UnretryableException  # noqa: E402

KEY = "test-key-id"
SECRET = "test-secret-value"
REGION = "cn-hangzhou"


def png() -> bytes:
    return tiny_png()


def inst(n: int, **over):
    return instance_entry(n, **over)


@pytest.fixture(scope="module")
def region_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("region")
    instances = [inst(n) for n in range(1, 26)]
    instances[0].update(console=b"Linux version 6.1\r\n\x1b[1;31mKernel panic\x1b[0m\x07\n",
                        screenshot=png())
    instances[1].update(Status="Stopped")
    instances[2].update(OSType="windows", OSName="Windows Server 2022", screenshot=png())
    instances[3].update(InstanceType="ecs.s2.large", InstanceTypeFamily="ecs.s2",
                        CreationTime="2017-06-01T02:00Z")
    instances[4].update(events=[{"type": "InstanceFailure.Reboot", "age_hours": 2,
                                 "reason": "guest crashed"},
                                {"type": "SystemMaintenance.Reboot", "age_hours": 24 * 40}],
                        scheduled=[{"type": "SystemMaintenance.Reboot", "in_hours": 10}],
                        HealthStatus="Warning")
    return write_region(root, instances, region_id=REGION)


@pytest.fixture
def server(region_dir):
    clock = ManualClock()
    with EcsServer(region_dir, access_key_id=KEY, access_key_secret=SECRET,
                   clock=clock) as srv:
        srv.test_clock = clock
        yield srv


def client(srv, *, key=KEY, secret=SECRET, algorithm=None, read_timeout=5000):
    host = srv.endpoint.removeprefix("http://")
    config = Config(access_key_id=key, access_key_secret=secret, region_id=REGION,
                    endpoint=host, protocol="http", read_timeout=read_timeout,
                    connect_timeout=2000)
    if algorithm:
        config.signature_algorithm = algorithm
    return Client(config)


ID1 = "i-bp1test000000000001"


# --- signatures ----------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm, label", [(None, "v3"), ("v2", "v1")])
def test_both_signatures_accepted(server, algorithm, label):
    body = client(server, algorithm=algorithm).describe_instances(
        models.DescribeInstancesRequest(region_id=REGION, instance_ids=json.dumps([ID1]))).body
    assert [i.instance_id for i in body.instances.instance] == [ID1]
    assert server.calls[-1].signature == label


@pytest.mark.parametrize("algorithm", [None, "v2"])
def test_wrong_secret_is_signature_does_not_match(server, algorithm):
    with pytest.raises(ClientException) as info:
        client(server, secret="wrong", algorithm=algorithm).describe_instances(
            models.DescribeInstancesRequest(region_id=REGION))
    assert info.value.code == "SignatureDoesNotMatch"
    assert info.value.status_code == 400
    assert info.value.data["HostId"] and info.value.data["RequestId"]


def test_unknown_key_id(server):
    with pytest.raises(ClientException) as info:
        client(server, key="someone-else").describe_instances(
            models.DescribeInstancesRequest(region_id=REGION))
    assert info.value.code == "InvalidAccessKeyId.NotFound"
    assert info.value.status_code == 404


def _v1_request(srv, params, secret=SECRET):
    params = dict(params)
    params["Signature"] = v1_signature(secret, method="POST", params=sorted(params.items()))
    req = urllib.request.Request(srv.endpoint + "/?" + urlencode(params), data=b"",
                                 method="POST")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def _v1_params(**extra):
    params = {"Action": "DescribeInstances", "Version": "2014-05-26", "Format": "json",
              "RegionId": REGION, "AccessKeyId": KEY, "SignatureMethod": "HMAC-SHA1",
              "SignatureVersion": "1.0", "SignatureNonce": "nonce-1",
              "Timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
    params.update(extra)
    return params


def test_replayed_nonce_is_refused(server):
    params = _v1_params(SignatureNonce="replay-me")
    assert _v1_request(server, params)[0] == 200
    status, body = _v1_request(server, params)
    assert (status, body["Code"]) == (400, "SignatureNonceUsed")


def test_stale_timestamp_is_refused(server):
    status, body = _v1_request(server, _v1_params(Timestamp="2020-01-01T00:00:00Z",
                                                  SignatureNonce="old"))
    assert (status, body["Code"]) == (400, "InvalidTimeStamp.Expired")


def test_unsigned_request_is_refused(server):
    req = urllib.request.Request(server.endpoint + "/?RegionId=cn-hangzhou", data=b"",
                                 method="POST", headers={"x-acs-action": "DescribeInstances",
                                                         "x-acs-version": "2014-05-26"})
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=5)
    assert json.loads(info.value.read())["Code"] == "IncompleteSignature"


def test_unknown_action(server):
    status, body = _v1_request(server, _v1_params(Action="RebootEverything",
                                                  SignatureNonce="n-act"))
    assert (status, body["Code"]) == (404, "InvalidApi.NotFound")


# --- DescribeInstances ---------------------------------------------------------------------


def test_pagination_with_next_token(server):
    c = client(server)
    seen, token, pages = [], None, 0
    while True:
        body = c.describe_instances(models.DescribeInstancesRequest(
            region_id=REGION, max_results=10, next_token=token)).body
        seen += [i.instance_id for i in body.instances.instance]
        pages += 1
        token = body.next_token
        if not token:
            break
    assert pages == 3 and len(seen) == 25 == len(set(seen))


def test_pagination_with_page_number(server):
    c = client(server)
    body = c.describe_instances(models.DescribeInstancesRequest(
        region_id=REGION, page_number=3, page_size=10)).body
    assert body.total_count == 25 and body.page_number == 3
    assert len(body.instances.instance) == 5


def test_next_token_from_another_query_is_refused(server):
    c = client(server)
    token = c.describe_instances(models.DescribeInstancesRequest(
        region_id=REGION, max_results=10)).body.next_token
    with pytest.raises(ClientException) as info:
        c.describe_instances(models.DescribeInstancesRequest(
            region_id=REGION, max_results=10, next_token=token, status="Stopped"))
    assert info.value.code == "InvalidParameter"


def test_filters(server):
    c = client(server)
    ids = ["i-bp1test000000000002", "i-bp1test000000000003", "i-nosuchinstance01"]
    body = c.describe_instances(models.DescribeInstancesRequest(
        region_id=REGION, instance_ids=json.dumps(ids))).body
    # Unknown ids are silently left out, as ECS does.
    assert sorted(i.instance_id for i in body.instances.instance) == ids[:2]
    stopped = c.describe_instances(models.DescribeInstancesRequest(
        region_id=REGION, status="Stopped")).body.instances.instance
    assert [i.instance_id for i in stopped] == ["i-bp1test000000000002"]
    tagged = c.describe_instances(models.DescribeInstancesRequest(
        region_id=REGION, max_results=100,
        tag=[models.DescribeInstancesRequestTag(key="env", value="dev")])).body
    assert len(tagged.instances.instance) == 12
    assert all(t.tag_value == "dev" for i in tagged.instances.instance for t in i.tags.tag)


def test_instance_fields_map_onto_sdk_models(server):
    body = client(server).describe_instances(models.DescribeInstancesRequest(
        region_id=REGION, instance_ids=json.dumps(["i-bp1test000000000004"]))).body
    found = body.instances.instance[0]
    assert (found.ostype, found.instance_type_family, found.creation_time, found.status) == \
        ("linux", "ecs.s2", "2017-06-01T02:00Z", "Running")
    assert found.zone_id == "cn-hangzhou-h" and found.region_id == REGION


@pytest.mark.parametrize("bad, code", [('["i-a"', "InvalidInstanceIds.Malformed"),
                                       ("{}", "InvalidInstanceIds.Malformed")])
def test_bad_instance_ids(server, bad, code):
    with pytest.raises(ClientException) as info:
        client(server).describe_instances(models.DescribeInstancesRequest(
            region_id=REGION, instance_ids=bad))
    assert info.value.code == code


def test_bad_status_and_missing_region(server):
    with pytest.raises(ClientException) as info:
        client(server).describe_instances(models.DescribeInstancesRequest(
            region_id=REGION, status="Dancing"))
    assert info.value.code == "InvalidStatus.NotFound"
    with pytest.raises(ClientException) as info:
        client(server).get_instance_console_output(
            models.GetInstanceConsoleOutputRequest(instance_id=ID1))
    assert info.value.code == "MissingParameter"


# --- console and screenshot ----------------------------------------------------------------


def test_console_raw_and_without_symbols(server):
    c = client(server)
    raw = c.get_instance_console_output(models.GetInstanceConsoleOutputRequest(
        region_id=REGION, instance_id=ID1, remove_symbols=False)).body
    assert base64.b64decode(raw.console_output).startswith(b"Linux version 6.1\r\n\x1b[1;31m")
    assert len(raw.last_update_time) == 19 and raw.last_update_time[10] == " "
    clean = c.get_instance_console_output(models.GetInstanceConsoleOutputRequest(
        region_id=REGION, instance_id=ID1, remove_symbols=True)).body
    assert base64.b64decode(clean.console_output) == b"Linux version 6.1\r\nKernel panic\n"


@pytest.mark.parametrize("iid, code", [
    ("i-bp1test000000000002", "IncorrectInstanceStatus"),  # stopped
    ("i-bp1test000000000003", "NotSupported"),  # windows
    ("i-bp1test000000000004", "NotSupported"),  # retired type, 2017
    ("i-bp1nosuchinstance0", "InvalidInstanceId.NotFound"),
])
def test_console_refusals(server, iid, code):
    with pytest.raises(ClientException) as info:
        client(server).get_instance_console_output(models.GetInstanceConsoleOutputRequest(
            region_id=REGION, instance_id=iid))
    assert info.value.code == code


def test_windows_screenshot_and_ten_second_rule(server):
    c = client(server)
    req = models.GetInstanceScreenshotRequest(region_id=REGION,
                                              instance_id="i-bp1test000000000003")
    shot = base64.b64decode(c.get_instance_screenshot(req).body.screenshot)
    assert shot == png()
    server.test_clock.advance(9.5)
    with pytest.raises(ClientException) as info:
        c.get_instance_screenshot(req)
    assert (info.value.code, info.value.status_code) == ("Throttling", 429)
    # Other instances are not affected.
    c.get_instance_screenshot(models.GetInstanceScreenshotRequest(region_id=REGION,
                                                                  instance_id=ID1))
    server.test_clock.advance(0.5)
    assert c.get_instance_screenshot(req).body.screenshot


def test_events_and_full_status(server):
    c = client(server)
    iid = "i-bp1test000000000005"
    now = datetime.now(UTC)
    hist = c.describe_instance_history_events(models.DescribeInstanceHistoryEventsRequest(
        region_id=REGION, instance_id=iid,
        event_publish_time=models.DescribeInstanceHistoryEventsRequestEventPublishTime(
            start=(now.replace(microsecond=0) - __import__("datetime").timedelta(days=30))
            .strftime("%Y-%m-%dT%H:%M:%SZ"), end=now.strftime("%Y-%m-%dT%H:%M:%SZ")))).body
    items = hist.instance_system_event_set.instance_system_event_type
    # The 40-day-old event is outside the window; the scheduled one is not a history default.
    assert [e.event_type.name for e in items] == ["InstanceFailure.Reboot"]
    assert items[0].event_cycle_status.name == "Executed" and items[0].reason == "guest crashed"
    full = c.describe_instances_full_status(models.DescribeInstancesFullStatusRequest(
        region_id=REGION, instance_id=[iid])).body
    entry = full.instance_full_status_set.instance_full_status_type[0]
    assert entry.health_status.name == "Warning" and entry.health_status.code == 64
    sched = entry.scheduled_system_event_set.scheduled_system_event_type
    assert [(e.event_type.name, e.event_cycle_status.name) for e in sched] == \
        [("SystemMaintenance.Reboot", "Scheduled")]


# --- faults --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind, exc, code, status", [
    ("throttling", ClientException, "Throttling", 429),
    ("throttling_user", ClientException, "Throttling.User", 400),
    ("internal_error", ServerException, "InternalError", 500),
    ("service_unavailable", ServerException, "ServiceUnavailable", 503),
    ("not_supported", ClientException, "NotSupported", 405),
    ("incorrect_status", ClientException, "IncorrectInstanceStatus", 405),
    ("forbidden", ClientException, "Forbidden.RAM", 403),
    ("bad_signature", ClientException, "SignatureDoesNotMatch", 400),
])
def test_injected_error_faults(server, kind, exc, code, status):
    server.inject(Fault(kind, action="GetInstanceConsoleOutput", times=1))
    req = models.GetInstanceConsoleOutputRequest(region_id=REGION, instance_id=ID1)
    with pytest.raises(exc) as info:
        client(server).get_instance_console_output(req)
    assert (info.value.code, info.value.status_code) == (code, status)
    # times=1: the next call is served normally.
    assert client(server).get_instance_console_output(req).body.console_output


def test_forbidden_carries_access_denied_detail(server):
    server.inject(Fault("forbidden", action="GetInstanceScreenshot"))
    with pytest.raises(ClientException) as info:
        client(server).get_instance_screenshot(models.GetInstanceScreenshotRequest(
            region_id=REGION, instance_id=ID1))
    assert info.value.access_denied_detail["AuthAction"] == "ecs:GetInstanceScreenshot"


def test_retry_after_header_makes_a_throttling_exception(server):
    from alibabacloud_tea_openapi.exceptions import ThrottlingException

    server.inject(Fault("throttling", action="DescribeInstances", retry_after_ms=1500))
    with pytest.raises(ThrottlingException) as info:
        client(server).describe_instances(models.DescribeInstancesRequest(region_id=REGION))
    assert info.value.retry_after == 1500


def test_malformed_and_bad_gateway_bodies(server):
    server.inject(Fault("malformed", action="DescribeInstances"),
                  Fault("bad_gateway", action="DescribeInstances"))
    for _ in range(2):
        with pytest.raises(UnretryableException):
            client(server).describe_instances(models.DescribeInstancesRequest(region_id=REGION))


def test_timeout_fault_outlasts_the_read_timeout(server):
    server.inject(Fault("timeout", action="DescribeInstances", delay=1.0))
    start = time.monotonic()
    with pytest.raises(UnretryableException) as info:
        client(server, read_timeout=200).describe_instances(
            models.DescribeInstancesRequest(region_id=REGION))
    assert time.monotonic() - start < 0.9
    assert "timed out" in str(info.value).lower()


def test_fault_for_one_instance_only(server):
    server.inject(Fault("internal_error", action="*", instance_id=ID1, times=None))
    c = client(server)
    with pytest.raises(ServerException):
        c.get_instance_console_output(models.GetInstanceConsoleOutputRequest(
            region_id=REGION, instance_id=ID1))
    with pytest.raises(ServerException):
        c.get_instance_console_output(models.GetInstanceConsoleOutputRequest(
            region_id=REGION, instance_id=ID1))
    server.clear_faults()
    assert c.get_instance_console_output(models.GetInstanceConsoleOutputRequest(
        region_id=REGION, instance_id=ID1)).body.console_output


def test_latency_per_action(server):
    server.set_latency({"DescribeInstances": 0.15})
    c = client(server)
    start = time.monotonic()
    c.describe_instances(models.DescribeInstancesRequest(region_id=REGION))
    slow = time.monotonic() - start
    start = time.monotonic()
    c.get_instance_console_output(models.GetInstanceConsoleOutputRequest(region_id=REGION,
                                                                         instance_id=ID1))
    fast = time.monotonic() - start
    assert slow >= 0.15 > fast


def test_calls_log_hides_credentials(server):
    client(server, algorithm="v2").describe_instances(
        models.DescribeInstancesRequest(region_id=REGION))
    record = server.calls[-1]
    assert "Signature" not in record.params and "AccessKeyId" not in record.params
    assert SECRET not in repr(server.calls)


# --- region files --------------------------------------------------------------------------


def test_region_validation(tmp_path):
    (tmp_path / "region.json").write_text(json.dumps(
        {"region_id": REGION, "instances": [inst(1, id="i-../../etc")]}))
    with pytest.raises(ValueError, match="bad or duplicate instance id"):
        load_region(tmp_path)
    write_region(tmp_path, [inst(1, Status="Exploded")])
    with pytest.raises(ValueError, match="Status"):
        load_region(tmp_path)


def test_demo_credentials_are_usable(region_dir):
    with EcsServer(region_dir, **DEMO_CREDENTIALS.as_kwargs()) as srv:
        c = client(srv, key=DEMO_CREDENTIALS.access_key_id,
                   secret=DEMO_CREDENTIALS.access_key_secret)
        assert c.describe_instances(models.DescribeInstancesRequest(
            region_id=srv.region_id)).body.total_count == 25
