"""ECS rules that need no SDK: time formats, eligibility, error codes, retries, screenshot pacing.

Everything here is pure or takes its clock and sleep as arguments, so it is tested without a
network and without waiting.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from enum import Enum

BEIJING = timezone(timedelta(hours=8), "UTC+08:00")

# Console output and screenshots are not served for instances created before this day.
CONSOLE_CUTOFF = datetime(2018, 1, 1, tzinfo=BEIJING)

# Retired ("phased-out") instance type families: no console output, no screenshot.
RETIRED_FAMILIES = frozenset({
    "sn1", "sn2", "t1", "s1", "s2", "s3", "m1", "m2", "c1", "c2", "c4", "ce4", "cm4",
    "n1", "n2", "e3", "gn4", "ga1", "sccgn6ne",
})

RUNNING = "Running"


# --------------------------------------------------------------------------------------------
# Times

_ISO_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?$")
_PLAIN_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[ ](\d{2}):(\d{2})(?::(\d{2}))?$")


def _tz(suffix: str | None, default: timezone) -> timezone:
    if suffix is None:
        return default
    if suffix == "Z":
        return UTC
    sign = -1 if suffix[0] == "-" else 1
    digits = suffix[1:].replace(":", "")
    return timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))


def parse_ecs_time(value: str | None, *, naive_tz: timezone = UTC) -> datetime | None:
    """Parse the time formats ECS documents, or None if ``value`` is empty or unreadable.

    ``2017-12-10T04:04Z`` and ``2017-12-10T04:04:05Z`` (ISO, minute or second precision, UTC),
    ``2018-03-22 10:04:57`` (no zone: read in ``naive_tz``).
    """
    if not value or not isinstance(value, str):
        return None
    text = value.strip()
    m = _ISO_RE.match(text)
    if m:
        y, mo, d, h, mi, s, zone = m.groups()
        tz = _tz(zone, naive_tz)
    else:
        m = _PLAIN_RE.match(text)
        if not m:
            return None
        y, mo, d, h, mi, s = m.groups()
        tz = naive_tz
    try:
        return datetime(int(y), int(mo), int(d), int(h), int(mi), int(s or 0), tzinfo=tz)
    except ValueError:
        return None


def parse_creation_time(value: str | None) -> datetime | None:
    """DescribeInstances ``CreationTime``: ISO 8601 UTC, often without seconds."""
    return parse_ecs_time(value, naive_tz=UTC)


def parse_console_time(value: str | None) -> datetime | None:
    """GetInstanceConsoleOutput ``LastUpdateTime``.

    Documented both as ``yyyy-MM-dd HH:mm:ss`` in Beijing time and as ISO 8601 with ``Z`` in
    UTC. A value without a zone is read as UTC+8, one ending in ``Z`` as UTC.
    """
    return parse_ecs_time(value, naive_tz=BEIJING)


def iso_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------------------------
# Eligibility


def family_of(instance_type: str | None, instance_type_family: str | None) -> str:
    """The bare family name: ``ecs.s2`` / ``ecs.s2.large`` -> ``s2``; '' when unknown."""
    for raw in (instance_type_family, instance_type):
        if not raw:
            continue
        parts = raw.strip().lower().split(".")
        if parts and parts[0] == "ecs":
            parts = parts[1:]
        if parts and parts[0]:
            return parts[0]
    return ""


def is_retired_family(family: str) -> bool:
    family = family.lower()
    # gn4 comes in sub-variants such as gn4-c4g1 and gn4-c8g1.
    return family in RETIRED_FAMILIES or family.split("-")[0] == "gn4"


@dataclass(frozen=True)
class Plan:
    """What to ask ECS for. A reason means: do not call, record this instead."""

    console_skip: str | None
    screenshot_skip: str | None

    @property
    def nothing(self) -> bool:
        return self.console_skip is not None and self.screenshot_skip is not None


def plan_for(*, os_type: str | None, family: str, created: datetime | None, status: str | None,
             want_screenshot: bool = True) -> Plan:
    """Decide before calling which of the two artifacts ECS can serve for this instance."""
    both: str | None = None
    if family and is_retired_family(family):
        both = (f"instance type family {family} is retired: ECS serves no console output "
                "or screenshot for it")
    elif created is not None and created < CONSOLE_CUTOFF:
        both = (f"instance was created on {created.astimezone(BEIJING):%Y-%m-%d}, before "
                "2018-01-01: ECS serves no console output or screenshot for it")
    elif status != RUNNING:
        both = (f"instance is {status or 'in an unknown state'}: ECS serves console output "
                "and screenshots only for Running instances")
    console = both
    if console is None and (os_type or "").lower() == "windows":
        console = "Windows instance: ECS serves no console output for Windows (screenshot only)"
    screenshot = both if both is not None else (None if want_screenshot
                                                else "screenshot not requested")
    return Plan(console, screenshot)


# --------------------------------------------------------------------------------------------
# Errors, keyed on the API's Code (never on the HTTP status)


class Kind(Enum):
    RETRY = "retry"  # throttling, 5xx-like codes, network trouble, unreadable bodies
    NOT_FOUND = "not-found"
    PERMISSION = "permission"  # the cloud understood who we are and said no
    CREDENTIALS = "credentials"  # the cloud did not accept who we say we are
    UNSUPPORTED = "unsupported"  # NotSupported: authoritative "not for this instance"
    WRONG_STATE = "wrong-state"  # IncorrectInstanceStatus: authoritative
    OTHER = "other"


_NOT_FOUND = {"InvalidInstanceId.NotFound", "Forbidden.InstanceNotFound",
              "InvalidInstanceId.NotExist"}
_PERMISSION = {"Forbidden.RAM", "Forbidden", "Forbidden.RiskControl", "Forbidden.NoPermission",
               "NoPermission", "Forbidden.AccessDenied", "Forbidden.Unauthorized"}
_CREDENTIALS = {"InvalidAccessKeyId.NotFound", "InvalidAccessKeyId.Inactive",
                "InvalidAccessKeyId", "SignatureDoesNotMatch", "IncompleteSignature",
                "InvalidTimeStamp.Expired", "InvalidTimeStamp.Format", "SignatureNonceUsed",
                "InvalidSecurityToken.Expired", "InvalidSecurityToken.Malformed",
                "InvalidSecurityToken.Mismatch", "InvalidCredentials"}
_RETRY = {"ServiceUnavailable", "InternalError", "SystemBusy", "UnknownError",
          "ServiceUnavailable.Throttling"}


@dataclass(frozen=True)
class ApiFailure:
    """One failed call, reduced to what decides retry and wording. No secrets inside."""

    code: str | None = None
    http_status: int | None = None
    message: str = ""  # the server's own Message, cleaned to one short line
    request_id: str | None = None
    retry_after: float | None = None  # seconds, when the server said so
    auth_action: str | None = None  # e.g. "ecs:GetInstanceScreenshot" from AccessDeniedDetail
    network: str | None = None  # "timeout" | "refused" | "dns" | "connection" when no answer
    malformed: bool = False  # an answer came but could not be read

    @property
    def throttled(self) -> bool:
        return bool(self.code) and self.code.startswith("Throttling")


def classify(failure: ApiFailure) -> Kind:
    code = failure.code or ""
    if failure.network or failure.malformed:
        return Kind.RETRY
    if code.startswith("Throttling") or code in _RETRY:
        return Kind.RETRY
    if code in _NOT_FOUND:
        return Kind.NOT_FOUND
    if code in _CREDENTIALS or code.startswith("InvalidAccessKeyId"):
        return Kind.CREDENTIALS
    if code in _PERMISSION or code.startswith("Forbidden"):
        return Kind.PERMISSION
    if code == "NotSupported" or code.startswith("NotSupported."):
        return Kind.UNSUPPORTED
    if code == "IncorrectInstanceStatus" or code.startswith("IncorrectInstanceStatus."):
        return Kind.WRONG_STATE
    if not code and failure.http_status is not None and failure.http_status >= 500:
        return Kind.RETRY
    return Kind.OTHER


_NETWORK_WORDS = {
    "timeout": "the endpoint did not answer in time",
    "refused": "the connection was refused",
    "dns": "the endpoint's host name does not resolve",
    "connection": "the connection failed",
}

_WHAT = {
    "DescribeInstances": "describe the instance",
    "GetInstanceConsoleOutput": "get the console output",
    "GetInstanceScreenshot": "take a screenshot",
    "DescribeInstanceHistoryEvents": "list the instance's events",
    "DescribeInstancesFullStatus": "get the instance's health status",
}


def one_line(text: str | None, limit: int = 200) -> str:
    """Printable, single-line, bounded: server text is untrusted."""
    if not text:
        return ""
    cleaned = "".join(ch if ch.isprintable() else " " for ch in str(text))
    cleaned = " ".join(cleaned.split())
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 3] + "..."


def describe(failure: ApiFailure, *, action: str, instance_id: str, region: str,
             endpoint: str, attempts: int = 1) -> str:
    """The one-line message an operator reads for this failure."""
    kind = classify(failure)
    what = _WHAT.get(action, action)
    code = failure.code or ""
    tried = f" after {attempts} attempts" if attempts > 1 else ""
    if kind is Kind.NOT_FOUND:
        return f"instance {instance_id} not found in {region}"
    if kind is Kind.PERMISSION:
        needed = failure.auth_action or f"ecs:{action}"
        return f"RAM user lacks {needed} ({code}); cannot {what} of {instance_id}"
    if kind is Kind.CREDENTIALS:
        if code.startswith("InvalidAccessKeyId"):
            return f"ECS does not accept the AccessKey ID ({code}); check the credentials in use"
        if code == "SignatureDoesNotMatch" or code == "IncompleteSignature":
            return (f"ECS rejected the request signature ({code}); the AccessKey secret "
                    "does not match the AccessKey ID")
        if code.startswith("InvalidTimeStamp"):
            return f"ECS rejected the request time ({code}); check this machine's clock"
        if code.startswith("InvalidSecurityToken"):
            return f"ECS rejected the STS security token ({code}); get fresh credentials"
        return f"ECS refused the credentials ({code})"
    if kind is Kind.UNSUPPORTED:
        return (f"ECS does not support this for {instance_id} (NotSupported): Windows, a "
                "retired instance type or an instance created before 2018")
    if kind is Kind.WRONG_STATE:
        return (f"instance {instance_id} is not in a state that allows it "
                "(IncorrectInstanceStatus): it must be Running")
    if failure.network:
        return f"cannot {what} of {instance_id}: {_NETWORK_WORDS[failure.network]} " \
               f"({endpoint}){tried}"
    if failure.malformed:
        return f"cannot {what} of {instance_id}: ECS sent an unreadable answer{tried}"
    if failure.throttled:
        return f"ECS throttled the request to {what} of {instance_id} ({code}){tried}"
    detail = one_line(failure.message, 120)
    label = code or (f"HTTP {failure.http_status}" if failure.http_status else "error")
    return f"cannot {what} of {instance_id}: {label}" + (f": {detail}" if detail else "") + tried


# --------------------------------------------------------------------------------------------
# Retries


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff with equal jitter: half fixed, half random."""

    attempts: int = 4  # total calls, first one included
    base: float = 0.5  # seconds before the first retry (before jitter)
    cap: float = 8.0  # no single wait is longer than this
    honour_retry_after: bool = True

    def delay(self, retry: int, rng: random.Random, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (0 = the first retry)."""
        step = min(self.cap, self.base * (2 ** retry))
        wait = step / 2 + rng.uniform(0, step / 2)
        if self.honour_retry_after and retry_after is not None:
            wait = max(wait, min(retry_after, self.cap))
        return wait


# --------------------------------------------------------------------------------------------
# Screenshot pacing


class ScreenshotPacer:
    """At most one GetInstanceScreenshot per instance per ``interval`` seconds.

    Thread-safe: each caller reserves the next free slot under a lock and sleeps outside it, so
    a fleet scan can share one pacer between workers; different instances never wait for each
    other.
    """

    def __init__(self, interval: float = 10.0, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.interval = interval
        self._clock = clock
        self._sleep = sleep
        self._next: dict[str, float] = {}
        self._lock = threading.Lock()

    def reserve(self, instance_id: str) -> float:
        """Book the next slot for ``instance_id``; returns how long the caller must wait."""
        with self._lock:
            now = self._clock()
            slot = max(now, self._next.get(instance_id, now))
            self._next[instance_id] = slot + self.interval
            return slot - now

    def acquire(self, instance_id: str) -> float:
        """Wait for this instance's next slot; returns the seconds waited."""
        wait = self.reserve(instance_id)
        if wait > 0:
            self._sleep(wait)
        return wait

    def push_back(self, instance_id: str, seconds: float) -> None:
        """The server throttled us anyway: keep the next slot at least ``seconds`` away."""
        with self._lock:
            self._next[instance_id] = max(self._next.get(instance_id, 0.0),
                                          self._clock() + seconds)


DEFAULT_PACER = ScreenshotPacer()
