"""Fetch evidence about an Alibaba Cloud ECS instance with the official SDK.

Calls, in order: DescribeInstances (facts; fatal when it fails), GetInstanceConsoleOutput and
GetInstanceScreenshot (each skipped when the instance cannot have it, each recorded as an
Artifact reason when it fails), DescribeInstanceHistoryEvents (last 30 days) and
DescribeInstancesFullStatus (health and scheduled events), which never make the fetch fail.

The SDK (about half a second to import) is imported only inside ``EcsFetcher``'s calls.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from ..errors import CredentialsError, DiagnoseError, FetchError, UsageError
from ..model import Artifact, Event, Evidence, Subject
from .base import sniff_image, validate_instance_id
from .ecs_auth import AccessKey, Target, redact, redacting, resolve
from .ecs_policy import (
    DEFAULT_PACER,
    ApiFailure,
    Kind,
    RetryPolicy,
    ScreenshotPacer,
    classify,
    describe,
    family_of,
    iso_utc,
    one_line,
    parse_console_time,
    parse_creation_time,
    parse_ecs_time,
    plan_for,
)

log = logging.getLogger("diagnose.fetchers.ecs")

EVENT_WINDOW = timedelta(days=30)
MAX_EVENT_PAGES = 10
SCREENSHOT_RETRY = RetryPolicy(attempts=3)


class ApiError(Exception):
    """A call failed for good (after any retries). Internal: becomes a reason or a FetchError."""

    def __init__(self, action: str, failure: ApiFailure, attempts: int, message: str):
        super().__init__(message)
        self.action = action
        self.failure = failure
        self.attempts = attempts
        self.kind = classify(failure)
        self.message = message

    @property
    def authoritative(self) -> bool:
        """The API said 'not for this instance': a reason, never an error."""
        return self.kind in (Kind.UNSUPPORTED, Kind.WRONG_STATE)


# --------------------------------------------------------------------------------------------
# SDK exceptions -> ApiFailure


def _network_kind(text: str) -> str:
    low = text.lower()
    if "timed out" in low or "timeout" in low:
        return "timeout"
    if "refused" in low:
        return "refused"
    if ("name or service not known" in low or "nodename nor servname" in low
            or "failed to resolve" in low or "temporary failure in name resolution" in low
            or "getaddrinfo" in low):
        return "dns"
    return "connection"


def failure_from_exception(exc: BaseException) -> ApiFailure:
    """Reduce whatever the SDK raised to an ApiFailure (keeping no request, URL or header)."""
    from alibabacloud_tea_openapi.exceptions import AlibabaCloudException, ThrottlingException
    from darabonba.exceptions import RetryError

    if isinstance(exc, AlibabaCloudException):
        data = exc.data if isinstance(exc.data, dict) else {}
        code = exc.code if exc.code and exc.code != "None" else None
        message = data.get("Message") or data.get("message") or ""
        detail = getattr(exc, "access_denied_detail", None) or data.get("AccessDeniedDetail")
        auth_action = None
        if isinstance(detail, dict) and isinstance(detail.get("AuthAction"), str):
            auth_action = one_line(detail["AuthAction"], 80) or None
        retry_after = None
        if isinstance(exc, ThrottlingException) and exc.retry_after:
            retry_after = float(exc.retry_after) / 1000.0
        request_id = exc.request_id if exc.request_id and exc.request_id != "None" else None
        return ApiFailure(code=code, http_status=exc.status_code, message=one_line(message),
                          request_id=request_id, retry_after=retry_after,
                          auth_action=auth_action)
    inner = getattr(exc, "inner_exception", None)
    if isinstance(inner, RetryError) or isinstance(exc, (OSError, RetryError)):
        return ApiFailure(network=_network_kind(str(inner or exc)))
    code = getattr(exc, "code", None)
    if isinstance(code, str) and code and code != "None":
        return ApiFailure(code=code, message=one_line(getattr(exc, "message", "")))
    # A JSON parse failure, a body the models cannot map, any other surprise from the SDK.
    return ApiFailure(malformed=True)


# --------------------------------------------------------------------------------------------
# The fetcher


@dataclass
class _Call:
    """One instance's worth of calls: the client, where it points, and how to retry."""

    client: Any
    models: Any
    runtime: Any
    region: str
    instance_id: str
    endpoint: str
    secrets: tuple[str, ...]


class EcsFetcher:
    """The ECS fetcher. Construct with fakes (retry policy, pacer, sleep, rng, clock) to test."""

    name = "ecs"

    def __init__(self, *, retry: RetryPolicy | None = None,
                 screenshot_retry: RetryPolicy | None = None,
                 pacer: ScreenshotPacer | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 rng: random.Random | None = None,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC),
                 signature_algorithm: str | None = None):
        self.retry = retry or RetryPolicy()
        self.screenshot_retry = screenshot_retry or SCREENSHOT_RETRY
        self.pacer = pacer or DEFAULT_PACER
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.now = now
        # None: ACS3-HMAC-SHA256 (the SDK default); "v2": the older RPC HMAC-SHA1 signature.
        self.signature_algorithm = signature_algorithm
        # One credentials lookup per (region, profile, key) for the life of this fetcher, so a
        # fleet scan does not re-read config files or the metadata service per instance.
        self._targets: dict[tuple[Any, ...], Target] = {}
        self._lock = threading.Lock()

    # The Fetcher protocol -------------------------------------------------------------------

    def fetch(self, target: str, **options: Any) -> Evidence:
        return self.fetch_instance(target, **options)

    # ---------------------------------------------------------------------------------------

    def fetch_instance(self, instance_id: str, *, region: str | None = None,
                       profile: str | None = None, endpoint: str | None = None,
                       screenshot: bool = True, timeout: float = 10.0,
                       credentials: AccessKey | None = None) -> Evidence:
        validate_instance_id(instance_id)
        if timeout <= 0:
            raise UsageError("timeout must be a positive number of seconds")
        target = self._target(region, profile, credentials)
        with redacting(target.secrets):
            try:
                call = self._connect(target, instance_id, endpoint, timeout)
                return self._fetch(call, screenshot)
            except DiagnoseError as exc:
                if any(s in str(exc) for s in target.secrets):
                    raise type(exc)(redact(str(exc), target.secrets)) from None
                raise

    def _target(self, region: str | None, profile: str | None,
                credentials: AccessKey | None) -> Target:
        key = (region, profile, credentials)
        with self._lock:
            cached = self._targets.get(key)
        if cached is None:
            cached = resolve(region=region, profile=profile, credentials=credentials)
            with self._lock:
                self._targets[key] = cached
        return cached

    # Client ---------------------------------------------------------------------------------

    def _connect(self, target: Target, instance_id: str, endpoint: str | None,
                 timeout: float) -> _Call:
        from alibabacloud_credentials.client import Client as CredentialClient
        from alibabacloud_ecs20140526 import models
        from alibabacloud_ecs20140526.client import Client
        from alibabacloud_tea_openapi.utils_models import Config
        from darabonba.runtime import RuntimeOptions

        host, protocol = _split_endpoint(endpoint)
        config = Config(credential=CredentialClient(provider=target.provider),
                        region_id=target.region, read_timeout=int(timeout * 1000),
                        connect_timeout=int(min(timeout, 5.0) * 1000))
        if host:
            config.endpoint = host
            config.protocol = protocol
        if self.signature_algorithm:
            config.signature_algorithm = self.signature_algorithm
        client = Client(config)
        shown = host or f"ecs.{target.region}.aliyuncs.com"
        runtime = RuntimeOptions(read_timeout=int(timeout * 1000),
                                 connect_timeout=int(min(timeout, 5.0) * 1000))
        return _Call(client, models, runtime, target.region, instance_id, shown, target.secrets)

    def _invoke(self, call: _Call, action: str, method: str, request: Any, *,
                policy: RetryPolicy | None = None, paced: bool = False) -> Any:
        """Call ``client.<method>_with_options`` with retries; return the response body."""
        policy = policy or self.retry
        fn = getattr(call.client, f"{method}_with_options")
        attempts = max(1, policy.attempts)
        for attempt in range(attempts):
            if paced:
                waited = self.pacer.acquire(call.instance_id)
                if waited > 0:
                    log.debug("%s: waited %.1fs for the screenshot interval", call.instance_id,
                              waited)
            try:
                response = fn(request, call.runtime)
                body = getattr(response, "body", None)
                if body is None:
                    raise ValueError("no body")
                return body
            except Exception as exc:  # noqa: BLE001 - every SDK failure is classified below
                inner = getattr(exc, "inner_exception", None)
                if isinstance(inner, DiagnoseError):  # e.g. credentials could not be refreshed
                    raise inner from None
                failure = failure_from_exception(exc)
            kind = classify(failure)
            log.debug("%s %s attempt %d/%d failed: code=%s status=%s network=%s malformed=%s "
                      "request_id=%s", action, call.instance_id, attempt + 1, attempts,
                      failure.code, failure.http_status, failure.network, failure.malformed,
                      failure.request_id)
            if kind is not Kind.RETRY or attempt + 1 >= attempts:
                message = redact(describe(failure, action=action, instance_id=call.instance_id,
                                          region=call.region, endpoint=call.endpoint,
                                          attempts=attempt + 1), call.secrets)
                raise ApiError(action, failure, attempt + 1, message)
            delay = policy.delay(attempt, self.rng, failure.retry_after)
            if paced and failure.throttled:
                # The slot we used counted; the pacer already keeps the next one 10 s away.
                self.pacer.push_back(call.instance_id, delay)
                continue
            self.sleep(delay)
        raise AssertionError("unreachable")

    # The fetch ------------------------------------------------------------------------------

    def _fetch(self, call: _Call, want_screenshot: bool) -> Evidence:
        m = call.models
        try:
            body = self._invoke(call, "DescribeInstances", "describe_instances",
                                m.DescribeInstancesRequest(
                                    region_id=call.region,
                                    instance_ids=json.dumps([call.instance_id])))
        except ApiError as err:
            raise _fatal(err) from None
        inst = _find_instance(body, call.instance_id)
        if inst is None:
            raise FetchError(f"instance {call.instance_id} not found in {call.region}")

        family = family_of(inst.instance_type, inst.instance_type_family)
        created = parse_creation_time(inst.creation_time)
        os_type = (inst.ostype or "").strip().lower() or None
        plan = plan_for(os_type=os_type, family=family, created=created, status=inst.status,
                        want_screenshot=want_screenshot)
        facts = _facts(inst, call.region, family, created)

        errors: list[ApiError] = []
        console, console_art = self._console(call, plan.console_skip, errors)
        shot, shot_art = self._screenshot(call, plan.screenshot_skip, errors)
        events, events_art, health = self._events(call)
        if health:
            facts.append(("health", health))

        subject = Subject("ecs", call.instance_id, tuple(facts))
        os_hint = os_type if os_type in ("linux", "windows") else None
        skip_reason = None
        if console is None and shot is None:
            if errors:
                raise _fatal_many(errors)
            reasons = [r for r in (console_art.reason, shot_art.reason) if r]
            skip_reason = "; ".join(dict.fromkeys(reasons)) or "nothing could be fetched"
        return Evidence(subject=subject, console=console, screenshot=shot,
                        artifacts=(console_art, shot_art, events_art), events=events,
                        os_hint=os_hint, skip_reason=skip_reason)

    def _console(self, call: _Call, skip: str | None,
                 errors: list[ApiError]) -> tuple[bytes | None, Artifact]:
        origin = "ecs:GetInstanceConsoleOutput"
        if skip:
            return None, Artifact("console", False, 0, skip, origin)
        request = call.models.GetInstanceConsoleOutputRequest(
            region_id=call.region, instance_id=call.instance_id, remove_symbols=False)
        try:
            body = self._invoke(call, "GetInstanceConsoleOutput", "get_instance_console_output",
                                request)
        except ApiError as err:
            if not err.authoritative:
                errors.append(err)
            return None, Artifact("console", False, 0, err.message, origin,
                                  _err_detail(err))
        detail: dict[str, Any] = {}
        stamp = parse_console_time(body.last_update_time)
        if stamp is not None:
            detail["last_update_time"] = iso_utc(stamp)
        raw = body.console_output or ""
        try:
            data = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            return None, Artifact("console", False, 0, "ECS sent console output that is not "
                                  "valid base64", origin, detail)
        if not data:
            return None, Artifact("console", False, 0, "ECS has no console output for this "
                                  "instance (empty)", origin, detail)
        return data, Artifact("console", True, len(data), None, origin, detail)

    def _screenshot(self, call: _Call, skip: str | None,
                    errors: list[ApiError]) -> tuple[bytes | None, Artifact]:
        origin = "ecs:GetInstanceScreenshot"
        if skip:
            return None, Artifact("screenshot", False, 0, skip, origin)
        request = call.models.GetInstanceScreenshotRequest(
            region_id=call.region, instance_id=call.instance_id, wake_up=False)
        try:
            body = self._invoke(call, "GetInstanceScreenshot", "get_instance_screenshot",
                                request, policy=self.screenshot_retry, paced=True)
        except ApiError as err:
            if not err.authoritative:
                errors.append(err)
            return None, Artifact("screenshot", False, 0, err.message, origin,
                                  _err_detail(err))
        try:
            data = base64.b64decode(body.screenshot or "", validate=True)
        except (binascii.Error, ValueError):
            return None, Artifact("screenshot", False, 0, "ECS sent a screenshot that is not "
                                  "valid base64", origin)
        if not data:
            return None, Artifact("screenshot", False, 0, "ECS returned an empty screenshot",
                                  origin)
        kind = sniff_image(data)
        if kind is None:
            return None, Artifact("screenshot", False, len(data), "ECS sent a screenshot that "
                                  "is neither PNG nor JPEG", origin)
        return data, Artifact("screenshot", True, len(data), None, origin, {"format": kind})

    def _events(self, call: _Call) -> tuple[tuple[Event, ...], Artifact, str | None]:
        origin = "ecs:DescribeInstanceHistoryEvents+DescribeInstancesFullStatus"
        events: list[Event] = []
        problems: list[str] = []
        history = scheduled = 0
        try:
            found = self._history(call)
            history = len(found)
            events.extend(found)
        except ApiError as err:
            problems.append(err.message)
        health = None
        try:
            health, upcoming = self._full_status(call)
            scheduled = len(upcoming)
            events.extend(upcoming)
        except ApiError as err:
            problems.append(err.message)
        events.sort(key=lambda e: (e.time, e.kind))
        available = len(problems) < 2
        reason = "; ".join(problems) or None
        art = Artifact("events", available, 0, reason, origin,
                       {"history": history, "scheduled": scheduled} if available else {})
        return tuple(events), art, health

    def _history(self, call: _Call) -> list[Event]:
        m = call.models
        end = self.now()
        start = end - EVENT_WINDOW
        out: list[Event] = []
        token: str | None = None
        for _ in range(MAX_EVENT_PAGES):
            request = m.DescribeInstanceHistoryEventsRequest(
                region_id=call.region, instance_id=call.instance_id, max_results=100,
                next_token=token,
                event_publish_time=m.DescribeInstanceHistoryEventsRequestEventPublishTime(
                    start=iso_utc(start), end=iso_utc(end)))
            body = self._invoke(call, "DescribeInstanceHistoryEvents",
                                "describe_instance_history_events", request)
            wrapper = body.instance_system_event_set
            for item in (wrapper.instance_system_event_type or []) if wrapper else []:
                event = _event(item, scheduled=False)
                if event is not None:
                    out.append(event)
            token = body.next_token or None
            if not token:
                break
        return out

    def _full_status(self, call: _Call) -> tuple[str | None, list[Event]]:
        m = call.models
        request = m.DescribeInstancesFullStatusRequest(region_id=call.region,
                                                       instance_id=[call.instance_id])
        body = self._invoke(call, "DescribeInstancesFullStatus",
                            "describe_instances_full_status", request)
        wrapper = body.instance_full_status_set
        health = None
        upcoming: list[Event] = []
        for item in (wrapper.instance_full_status_type or []) if wrapper else []:
            if item.instance_id != call.instance_id:
                continue
            if item.health_status is not None and item.health_status.name:
                health = one_line(item.health_status.name, 40)
            events = item.scheduled_system_event_set
            for ev in (events.scheduled_system_event_type or []) if events else []:
                event = _event(ev, scheduled=True)
                if event is not None:
                    upcoming.append(event)
        return health, upcoming


def fetch_instance(instance_id: str, *, region: str | None, profile: str | None,
                   endpoint: str | None = None, screenshot: bool = True, timeout: float = 10.0,
                   credentials: AccessKey | None = None) -> Evidence:
    """Fetch console output, screenshot, facts and events of one ECS instance.

    ``endpoint`` (``http://127.0.0.1:PORT``) points the SDK at another server (the demo, the
    tests). ``credentials`` bypasses the credentials chain (the demo's fixed AccessKey).
    """
    return EcsFetcher().fetch_instance(instance_id, region=region, profile=profile,
                                       endpoint=endpoint, screenshot=screenshot,
                                       timeout=timeout, credentials=credentials)


# --------------------------------------------------------------------------------------------
# Helpers


def _split_endpoint(endpoint: str | None) -> tuple[str | None, str]:
    if not endpoint:
        return None, "https"
    text = endpoint.strip()
    if "://" not in text:
        text = "https://" + text
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"endpoint {endpoint!r} is not an http(s) URL or host[:port]")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise UsageError(f"endpoint {endpoint!r} must be a bare scheme://host[:port]")
    try:
        port = parts.port
    except ValueError:
        raise UsageError(f"endpoint {endpoint!r} has an invalid port") from None
    host = parts.hostname if port is None else f"{parts.hostname}:{port}"
    return host, parts.scheme


def _find_instance(body: Any, instance_id: str) -> Any:
    wrapper = getattr(body, "instances", None)
    if wrapper is None:
        raise FetchError(f"cannot describe the instance {instance_id}: ECS answered "
                         "DescribeInstances without an Instances list")
    for inst in wrapper.instance or []:
        if inst.instance_id == instance_id:
            return inst
    return None


def _facts(inst: Any, region: str, family: str, created: datetime | None) -> list[tuple[str,
                                                                                       str]]:
    pairs = [
        ("region", region),
        ("zone", inst.zone_id),
        ("name", inst.instance_name),
        ("instance_type", inst.instance_type),
        ("family", family),
        ("os_type", (inst.ostype or "").lower()),
        ("os_name", inst.osname),
        ("status", inst.status),
        ("creation_time", iso_utc(created) if created else inst.creation_time),
    ]
    return [(k, one_line(str(v), 200)) for k, v in pairs if v]


def _event(item: Any, *, scheduled: bool) -> Event | None:
    kind = item.event_type.name if item.event_type is not None else None
    if not kind:
        return None
    status = item.event_cycle_status.name if item.event_cycle_status is not None else ""
    when = parse_ecs_time(item.not_before if scheduled else item.event_publish_time) \
        or parse_ecs_time(item.event_publish_time) or parse_ecs_time(item.not_before)
    reason = getattr(item, "reason", None) or ""
    code = getattr(item, "reason_code", None)
    description = one_line(reason, 300)
    if code:
        description = f"{description} ({one_line(code, 60)})" if description else one_line(code)
    return Event(time=iso_utc(when) if when else "", kind=one_line(kind, 80),
                 status=one_line(status or ("Scheduled" if scheduled else ""), 40),
                 description=description, scheduled=scheduled)


def _err_detail(err: ApiError) -> dict[str, Any]:
    detail: dict[str, Any] = {"attempts": err.attempts}
    if err.failure.code:
        detail["code"] = err.failure.code
    if err.failure.request_id:
        detail["request_id"] = one_line(err.failure.request_id, 80)
    return detail


def _fatal(err: ApiError) -> FetchError:
    if err.kind in (Kind.CREDENTIALS, Kind.PERMISSION):
        return CredentialsError(err.message)
    return FetchError(err.message)


def _fatal_many(errors: list[ApiError]) -> FetchError:
    message = "; ".join(dict.fromkeys(e.message for e in errors))
    if any(e.kind in (Kind.CREDENTIALS, Kind.PERMISSION) for e in errors):
        return CredentialsError(message)
    return FetchError(message)
