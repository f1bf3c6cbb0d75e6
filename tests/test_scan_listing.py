"""Choosing the instances: DescribeInstances paged with NextToken, tag and status filters, many
regions, and --instances-file looked up 100 ids at a time with unknown ids kept as results."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("alibabacloud_ecs20140526")

from diagnose.scan.ecs import ScanFetcher  # noqa: E402
from diagnose.scan.limits import RateLimits  # noqa: E402
from diagnose.scan.runner import Options, select  # noqa: E402
from diagnose.scan.synth import synthetic_id, write_synthetic_region  # noqa: E402
from diagnose.testing.ecs_server import DEMO_CREDENTIALS, EcsServer  # noqa: E402

N = 250


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    root, ids = write_synthetic_region(tmp_path_factory.mktemp("region"), N)
    spec = {i["id"]: i for i in json.loads((root / "region.json").read_text())["instances"]}
    with EcsServer(root, **DEMO_CREDENTIALS.as_kwargs()) as server:
        fetcher = ScanFetcher(RateLimits({"DescribeInstances": 1000}), endpoint=server.endpoint,
                              credentials=DEMO_CREDENTIALS, timeout=5)
        yield server, fetcher, ids, spec


def _opts(tmp_path, **kw):
    return Options(out=tmp_path, regions=kw.pop("regions", ["cn-hangzhou"]), **kw)


def test_lists_every_page(fleet, tmp_path):
    server, fetcher, ids, _ = fleet
    before = len(server.calls_to("DescribeInstances"))
    work = select(fetcher, _opts(tmp_path))
    assert [w.instance_id for w in work] == ids
    calls = server.calls_to("DescribeInstances")[before:]
    assert len(calls) == 3  # 100 + 100 + 50
    assert all(c.params.get("MaxResults") == "100" for c in calls)
    assert "NextToken" not in calls[0].params and calls[1].params.get("NextToken")


def test_tag_and_status_filters(fleet, tmp_path):
    _, fetcher, ids, spec = fleet
    work = select(fetcher, _opts(tmp_path, tags=[("env", "prod")], status="Running"))
    want = [i for i in ids if spec[i]["tags"].get("env") == "prod"
            and spec[i]["Status"] == "Running"]
    assert [w.instance_id for w in work] == want and 0 < len(want) < N
    work = select(fetcher, _opts(tmp_path, tags=[("app", None)]))
    assert [w.instance_id for w in work] == [i for i in ids if "app" in spec[i]["tags"]]


def test_many_regions_do_not_repeat(fleet, tmp_path):
    _, fetcher, ids, _ = fleet
    work = select(fetcher, _opts(tmp_path, regions=["cn-shanghai", "cn-hangzhou"]))
    assert [w.instance_id for w in work] == ids
    assert {w.region for w in work} == {"cn-hangzhou"}


def test_ids_file_in_batches_of_100_with_unknown_and_invalid_ids(fleet, tmp_path):
    server, fetcher, ids, _ = fleet
    wanted = ids[:230] + [synthetic_id(99_999), "not-an-id", ids[0]]
    before = len(server.calls_to("DescribeInstances"))
    work = select(fetcher, _opts(tmp_path, instance_ids=wanted,
                                 regions=["cn-shanghai", "cn-hangzhou"]))
    calls = server.calls_to("DescribeInstances")[before:]
    batches = [json.loads(c.params["InstanceIds"]) for c in calls]
    assert all(len(b) <= 100 for b in batches)
    regions = [c.params.get("RegionId") for c in calls]
    assert regions == ["cn-shanghai"] * 3 + ["cn-hangzhou"] * 3  # 231 valid ids, 100 a call
    by_id = {w.instance_id: w for w in work}
    assert len(work) == 232  # the duplicate id once
    assert all(by_id[i].listed is not None and by_id[i].reason is None for i in ids[:230])
    assert "not found" in by_id[synthetic_id(99_999)].reason
    assert by_id["not-an-id"].reason == "not a valid ECS instance id"

