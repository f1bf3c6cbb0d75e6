"""ECS access for fleet scans: listing (DescribeInstances, paged), id look-ups in batches of 100,
and a per-instance fetch that reuses the listing's facts instead of describing each instance again.

Built on the ECS fetcher (its client set-up, retry policy, screenshot pacer, error wording and
credentials cache); every SDK call first takes a token from the scan's per-API bucket, and a
Throttling answer slows that bucket down.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from ..errors import FetchError
from ..fetchers import ecs as ecsf
from ..fetchers.ecs_auth import AccessKey, redacting
from ..fetchers.ecs_policy import family_of, parse_creation_time, plan_for
from ..model import Evidence, Subject
from .limits import RateLimits

PAGE = 100  # MaxResults for listings, and ids per DescribeInstances look-up

_ACTIONS = {
    "describe_instances": "DescribeInstances",
    "get_instance_console_output": "GetInstanceConsoleOutput",
    "get_instance_screenshot": "GetInstanceScreenshot",
    "describe_instance_history_events": "DescribeInstanceHistoryEvents",
    "describe_instances_full_status": "DescribeInstancesFullStatus",
}


class LimitedClient:
    """Wraps an SDK client: ``<method>_with_options`` waits for its API's token first."""

    def __init__(self, client: Any, limits: RateLimits):
        self._client = client
        self._limits = limits

    def __getattr__(self, name: str) -> Any:
        fn = getattr(self._client, name)
        if not name.endswith("_with_options"):
            return fn
        action = _ACTIONS.get(name[: -len("_with_options")], name)
        limits = self._limits

        def call(*args: Any, **kwargs: Any) -> Any:
            limits.acquire(action)
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                code = getattr(exc, "code", None)
                if isinstance(code, str) and code.startswith("Throttling"):
                    limits.throttled(action)
                raise
        return call


class ScanFetcher(ecsf.EcsFetcher):
    """An EcsFetcher that shares one SDK client per region and obeys the scan's rate limits."""

    def __init__(self, limits: RateLimits, *, endpoint: str | None = None,
                 profile: str | None = None, credentials: AccessKey | None = None,
                 timeout: float = 10.0, **kwargs: Any):
        super().__init__(**kwargs)
        self.limits = limits
        self.endpoint = endpoint
        self.profile = profile
        self.credentials = credentials
        self.timeout = timeout
        self._calls: dict[str, ecsf._Call] = {}
        self._calls_lock = threading.Lock()

    def _region_call(self, region: str, instance_id: str = "") -> ecsf._Call:
        with self._calls_lock:
            base = self._calls.get(region)
            if base is None:
                target = self._target(region, self.profile, self.credentials)
                base = self._connect(target, instance_id or "-", self.endpoint, self.timeout)
                base = dataclasses.replace(base, client=LimitedClient(base.client, self.limits))
                self._calls[region] = base
        return dataclasses.replace(base, instance_id=instance_id) if instance_id else base

    def _describe(self, call: ecsf._Call, **fields: Any) -> Any:
        try:
            with redacting(call.secrets):
                return self._invoke(call, "DescribeInstances", "describe_instances",
                                    call.models.DescribeInstancesRequest(region_id=call.region,
                                                                         **fields))
        except ecsf.ApiError as err:
            raise ecsf._fatal(err) from None

    # Listing --------------------------------------------------------------------------------

    def list_instances(self, region: str, *, tags: Sequence[tuple[str, str | None]] = (),
                       status: str | None = None) -> Iterator[Any]:
        """Every instance of ``region`` matching the filters, page by page (NextToken)."""
        call = self._region_call(region)
        m = call.models
        tag = [m.DescribeInstancesRequestTag(key=k, value=v) for k, v in tags] or None
        token: str | None = None
        while True:
            body = self._describe(call, max_results=PAGE, next_token=token, status=status,
                                  tag=tag)
            wrapper = getattr(body, "instances", None)
            yield from (wrapper.instance or []) if wrapper else []
            token = body.next_token or None
            if not token:
                return

    def describe_ids(self, region: str, ids: Sequence[str]) -> dict[str, Any]:
        """Look up known ids, 100 per call; ids missing from the answer are not in the map."""
        call = self._region_call(region)
        found: dict[str, Any] = {}
        for start in range(0, len(ids), PAGE):
            chunk = list(ids[start:start + PAGE])
            token: str | None = None
            while True:
                body = self._describe(call, instance_ids=json.dumps(chunk), max_results=PAGE,
                                      next_token=token)
                wrapper = getattr(body, "instances", None)
                for inst in (wrapper.instance or []) if wrapper else []:
                    if inst.instance_id in chunk:
                        found[inst.instance_id] = inst
                token = body.next_token or None
                if not token:
                    break
        return found

    # One instance ---------------------------------------------------------------------------

    def fetch_listed(self, region: str, inst: Any, *, screenshot: bool = True) -> Evidence:
        """Like EcsFetcher.fetch_instance, with the facts the listing already returned."""
        call = self._region_call(region, inst.instance_id)
        with redacting(call.secrets):
            family = family_of(inst.instance_type, inst.instance_type_family)
            created = parse_creation_time(inst.creation_time)
            os_type = (inst.ostype or "").strip().lower() or None
            plan = plan_for(os_type=os_type, family=family, created=created,
                            status=inst.status, want_screenshot=screenshot)
            facts = ecsf._facts(inst, region, family, created)
            errors: list[ecsf.ApiError] = []
            console, console_art = self._console(call, plan.console_skip, errors)
            shot, shot_art = self._screenshot(call, plan.screenshot_skip, errors)
            events, events_art, health = self._events(call)
            if health:
                facts.append(("health", health))
            skip_reason = None
            if console is None and shot is None:
                if errors:
                    raise ecsf._fatal_many(errors)
                reasons = [r for r in (console_art.reason, shot_art.reason) if r]
                skip_reason = "; ".join(dict.fromkeys(reasons)) or "nothing could be fetched"
            return Evidence(subject=Subject("ecs", inst.instance_id, tuple(facts)),
                            console=console, screenshot=shot,
                            artifacts=(console_art, shot_art, events_art), events=events,
                            os_hint=os_type if os_type in ("linux", "windows") else None,
                            skip_reason=skip_reason)


def not_fetched(instance_id: str, region: str, reason: str) -> Evidence:
    """Evidence for an instance that could not be fetched at all: judged `skipped`."""
    from ..model import Artifact

    arts = (Artifact("console", False, 0, reason), Artifact("screenshot", False, 0, reason))
    return Evidence(Subject("ecs", instance_id, (("region", region),)), None, None, arts,
                    skip_reason=reason)


__all__ = ["FetchError", "LimitedClient", "ScanFetcher", "not_fetched"]
