"""A local ECS endpoint that speaks the RPC API the way the official Python SDK sends it.

It serves one "region" described by a directory (``region.json`` plus per-instance
``console.log`` and ``screenshot.png``/``.jpg``), checks both request signatures the SDK can
produce, answers in the documented JSON shapes, paginates, filters, and can be told to
misbehave per action (throttling, 5xx, timeouts, malformed bodies, NotSupported,
IncorrectInstanceStatus, Forbidden.RAM, wrong signatures). It enforces ECS's rule of one
screenshot per instance per 10 s with an injectable clock.

Used by the tests (the SDK is the client, over real HTTP on loopback) and by ``diagnose demo``::

    with EcsServer(DEMO_REGION_DIR, **DEMO_CREDENTIALS.as_kwargs()) as server:
        evidence = fetch_instance("i-...", region=server.region_id, profile=None,
                                  endpoint=server.endpoint, credentials=DEMO_CREDENTIALS)

Run ``python -m diagnose.testing.ecs_server`` to serve the demo region in the foreground.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import logging
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from ..fetchers.base import INSTANCE_ID_RE, sniff_image, validate_case_name
from ..fetchers.ecs_auth import AccessKey, mask
from ..fetchers.ecs_policy import (
    BEIJING,
    CONSOLE_CUTOFF,
    family_of,
    is_retired_family,
    parse_creation_time,
)
from .acs_signature import (
    EMPTY_SHA256,
    parse_v3_authorization,
    same,
    v1_signature,
    v3_signature,
)

log = logging.getLogger("diagnose.testing.ecs_server")

API_VERSION = "2014-05-26"
DEMO_REGION_DIR = Path(__file__).resolve().parent.parent / "demo_region"
# Fixed, public, useless outside this server. Never a real key.
DEMO_CREDENTIALS = AccessKey("diagnose-demo-key", "diagnose-demo-secret-not-a-real-key")

MAX_CLOCK_SKEW = 15 * 60  # seconds; ECS refuses requests whose time is further off
STATUSES = ("Pending", "Running", "Starting", "Stopping", "Stopped")
# Numeric codes that the ECS documentation shows in its samples; others are left out.
_STATUS_CODE = {"Running": 1}
_HEALTH_CODE = {"Warning": 64}
_EVENT_TYPE_CODE = {"SystemMaintenance.Reboot": 1, "SystemFailure.Reboot": 65,
                    "InstanceExpiration.Stop": 34}
_CYCLE_CODE = {"Executed": 0, "Scheduled": 24}
_DEFAULT_CYCLES = ("Executed", "Avoided", "Canceled", "Failed")

_ANSI_RE = re.compile(rb"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
_CONTROL_RE = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


# --------------------------------------------------------------------------------------------
# Faults


FAULT_KINDS = {
    # kind: (HTTP status, Code, Message); None status = special handling
    "throttling": (400, "Throttling", "Request was denied due to request throttling."),
    "throttling_user": (400, "Throttling.User", "Request was denied due to user flow control."),
    "internal_error": (500, "InternalError", "The request processing has failed due to some "
                       "unknown error, exception or failure."),
    "service_unavailable": (503, "ServiceUnavailable", "The request has failed due to a "
                            "temporary failure of the server."),
    "not_supported": (405, "NotSupported", "The operation is not supported for this "
                      "instance."),
    "incorrect_status": (405, "IncorrectInstanceStatus", "The current status of the resource "
                         "does not support this operation."),
    "forbidden": (403, "Forbidden.RAM", "User not authorized to operate on the specified "
                  "resource, or this API doesn't support RAM."),
    "not_found": (404, "InvalidInstanceId.NotFound", "The specified InstanceId does not "
                  "exist."),
    "bad_signature": (400, "SignatureDoesNotMatch", "Specified signature is not matched with "
                      "our calculation."),
    "timeout": (None, "", ""),  # sleep ``delay`` seconds, then answer normally
    "malformed": (None, "", ""),  # HTTP 200 with a truncated JSON body
    "bad_gateway": (None, "", ""),  # HTTP 502 with an HTML page, as a proxy would send
}


@dataclass
class Fault:
    """Misbehave for ``action`` ("*" = any), optionally only for one instance.

    ``times`` = how many matching requests are affected (None: all of them). ``delay`` is the
    sleep of a ``timeout`` fault: make it longer than the client's read timeout.
    ``retry_after_ms`` adds the ``x-acs-retry-after`` header to an error answer.
    """

    kind: str
    action: str = "*"
    instance_id: str | None = None
    times: int | None = 1
    delay: float = 2.0
    retry_after_ms: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; one of {sorted(FAULT_KINDS)}")

    def matches(self, action: str, instance_id: str | None) -> bool:
        if self.times is not None and self.times <= 0:
            return False
        if self.action not in ("*", action):
            return False
        return self.instance_id is None or self.instance_id == instance_id


class ManualClock:
    """A clock for tests: ``clock()`` reads it, ``clock.sleep(s)`` / ``advance(s)`` move it."""

    def __init__(self, start: float = 1000.0):
        self.now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds

    sleep = advance


# --------------------------------------------------------------------------------------------
# The region description


@dataclass
class Instance:
    id: str
    name: str
    os_type: str
    os_name: str
    instance_type: str
    family: str  # as the API shows it: "ecs.g7"
    status: str
    creation_time: str
    zone: str
    tags: dict[str, str] = field(default_factory=dict)
    health: str = "Ok"
    console: bytes | None = None
    screenshot: bytes | None = None
    console_age_minutes: float = 5.0
    history: list[dict[str, Any]] = field(default_factory=list)
    scheduled: list[dict[str, Any]] = field(default_factory=list)

    @property
    def bare_family(self) -> str:
        return family_of(self.instance_type, self.family)

    def unsupported(self) -> bool:
        """Retired type or created before 2018: neither console output nor screenshot."""
        created = parse_creation_time(self.creation_time)
        return is_retired_family(self.bare_family) or (created is not None
                                                       and created < CONSOLE_CUTOFF)


@dataclass
class Region:
    region_id: str
    instances: list[Instance]
    faults: list[Fault]

    def get(self, instance_id: str) -> Instance | None:
        return next((i for i in self.instances if i.id == instance_id), None)


def _need(entry: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in entry:
        raise ValueError(f"{where}: missing {key!r}")
    return entry[key]


def write_region(root: str | Path, instances: Sequence[Mapping[str, Any]], *,
                 region_id: str = "cn-hangzhou") -> Path:
    """Write a region directory (for tests). Each instance may carry ``console`` (bytes) and
    ``screenshot`` (bytes; the file name follows the sniffed format) next to its facts."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    entries = []
    for inst in instances:
        entry = {k: v for k, v in inst.items() if k not in ("console", "screenshot")}
        folder = root / validate_case_name(entry["id"])
        folder.mkdir(exist_ok=True)
        if inst.get("console") is not None:
            (folder / "console.log").write_bytes(inst["console"])
        if inst.get("screenshot") is not None:
            kind = sniff_image(inst["screenshot"])
            name = "screenshot.jpg" if kind == "jpeg" else "screenshot.png"
            (folder / name).write_bytes(inst["screenshot"])
        entries.append(entry)
    (root / "region.json").write_text(json.dumps({"region_id": region_id,
                                                  "instances": entries}, indent=1))
    return root


def load_region(region_dir: str | Path) -> Region:
    """Read ``region.json`` and each instance's files from ``<region_dir>/<instance id>/``."""
    root = Path(region_dir)
    spec = json.loads((root / "region.json").read_text(encoding="utf-8"))
    region_id = _need(spec, "region_id", "region.json")
    instances: list[Instance] = []
    faults: list[Fault] = []
    seen: set[str] = set()
    for n, entry in enumerate(_need(spec, "instances", "region.json")):
        where = f"region.json instances[{n}]"
        iid = _need(entry, "id", where)
        if not INSTANCE_ID_RE.fullmatch(iid) or iid in seen:
            raise ValueError(f"{where}: bad or duplicate instance id {iid!r}")
        seen.add(iid)
        status = _need(entry, "Status", where)
        if status not in STATUSES:
            raise ValueError(f"{where}: Status must be one of {STATUSES}")
        folder = root / validate_case_name(iid)
        console = None
        if (folder / "console.log").is_file():
            console = (folder / "console.log").read_bytes()
        screenshot = None
        for name in ("screenshot.png", "screenshot.jpg"):
            if (folder / name).is_file():
                screenshot = (folder / name).read_bytes()
                if sniff_image(screenshot) is None:
                    raise ValueError(f"{folder / name} is neither PNG nor JPEG")
                break
        instances.append(Instance(
            id=iid, name=_need(entry, "name", where), os_type=_need(entry, "OSType", where),
            os_name=_need(entry, "OSName", where),
            instance_type=_need(entry, "InstanceType", where),
            family=_need(entry, "InstanceTypeFamily", where), status=status,
            creation_time=_need(entry, "CreationTime", where),
            zone=_need(entry, "ZoneId", where), tags=dict(entry.get("tags", {})),
            health=entry.get("HealthStatus", "Ok"), console=console, screenshot=screenshot,
            console_age_minutes=float(entry.get("console_age_minutes", 5)),
            history=list(entry.get("events", [])), scheduled=list(entry.get("scheduled", []))))
        for f in entry.get("faults", []):
            faults.append(Fault(kind=f["kind"], action=f.get("action", "*"), instance_id=iid,
                                times=f.get("times"), delay=float(f.get("delay", 2.0))))
    return Region(region_id, instances, faults)


# --------------------------------------------------------------------------------------------
# Answers


class _Reply(Exception):
    """An error answer, raised from anywhere in the request handling."""

    def __init__(self, status: int, code: str, message: str,
                 extra: Mapping[str, Any] | None = None, headers: Mapping[str, str] | None = None):
        super().__init__(code)
        self.status, self.code, self.message = status, code, message
        self.extra = dict(extra or {})
        self.headers = dict(headers or {})


@dataclass
class _Raw:
    """A non-JSON or deliberately broken answer."""

    status: int
    body: bytes
    content_type: str
    delay: float = 0.0


@dataclass(frozen=True)
class CallRecord:
    """What the server saw (no signature, no token, no secret)."""

    action: str
    instance_id: str | None
    params: Mapping[str, str]
    signature: str  # "v3" | "v1" | "none"
    status: int
    code: str | None
    retry_attempt: str | None


_HIDDEN_PARAMS = {"Signature", "SecurityToken", "AccessKeyId", "SignatureNonce", "BearerToken"}


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() == "true"


def _strip_symbols(data: bytes) -> bytes:
    return _CONTROL_RE.sub(b"", _ANSI_RE.sub(b"", data))


def _encode_token(offset: int, key: str) -> str:
    raw = json.dumps({"o": offset, "k": key[:16]}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_token(token: str, key: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        offset = int(data["o"])
    except (ValueError, KeyError, TypeError):
        raise _Reply(400, "InvalidParameter", "The specified NextToken is not valid.") from None
    if data.get("k") != key[:16] or offset < 0:
        raise _Reply(400, "InvalidParameter", "The NextToken does not belong to this query.")
    return offset


def _indexed(params: Mapping[str, str], prefix: str, limit: int, code: str) -> list[str]:
    """``Prefix.1``, ``Prefix.2``, ... in index order."""
    found: dict[int, str] = {}
    pattern = re.compile(re.escape(prefix) + r"\.(\d+)$")
    for key, value in params.items():
        m = pattern.match(key)
        if m:
            n = int(m.group(1))
            if n < 1 or n > limit:
                raise _Reply(400, code, f"The number of {prefix} values exceeds {limit}.")
            found[n] = value
    return [found[n] for n in sorted(found)]


def _page(items: list[Any], params: Mapping[str, str], key: str, *,
          token_mode_allowed: bool = True) -> tuple[list[Any], dict[str, Any]]:
    """Slice ``items`` by NextToken/MaxResults, or by PageNumber/PageSize."""
    total = len(items)
    if token_mode_allowed and ("NextToken" in params or "MaxResults" in params):
        try:
            size = int(params.get("MaxResults") or 10)
        except ValueError:
            raise _Reply(400, "InvalidParameter", "MaxResults must be an integer.") from None
        size = max(10, min(size, 100))
        token = params.get("NextToken") or ""
        start = _decode_token(token, key) if token else 0
        chunk = items[start:start + size]
        nxt = _encode_token(start + size, key) if start + size < total else ""
        return chunk, {"NextToken": nxt, "TotalCount": total}
    try:
        number = int(params.get("PageNumber") or 1)
        size = int(params.get("PageSize") or 10)
    except ValueError:
        raise _Reply(400, "InvalidParameter", "PageNumber and PageSize must be integers.") \
            from None
    if number < 1 or size < 1 or size > 100:
        raise _Reply(400, "InvalidParameter", "PageNumber must be >= 1 and PageSize 1..100.")
    start = (number - 1) * size
    return items[start:start + size], {"TotalCount": total, "PageNumber": number,
                                       "PageSize": size}


class _Api:
    """The request handling, separate from the HTTP plumbing."""

    def __init__(self, region: Region, *, access_key_id: str, access_key_secret: str,
                 security_token: str | None, faults: Iterable[Fault],
                 latency: float | Mapping[str, float], clock: Callable[[], float],
                 wall_clock: Callable[[], float], screenshot_interval: float,
                 stop: threading.Event):
        self.region = region
        self.access_key_id = access_key_id
        self._secret = access_key_secret
        self._token = security_token
        self.faults: list[Fault] = list(region.faults) + list(faults)
        self.latency = latency
        self.clock = clock
        self.wall_clock = wall_clock
        self.screenshot_interval = screenshot_interval
        self.stop = stop
        self.lock = threading.Lock()
        self.calls: list[CallRecord] = []
        self._last_shot: dict[str, float] = {}
        self._nonces: deque[str] = deque(maxlen=50_000)
        self._nonce_set: set[str] = set()

    # Entry ----------------------------------------------------------------------------------

    def handle(self, method: str, path: str, pairs: list[tuple[str, str]],
               headers: Mapping[str, str], body: bytes) -> tuple[int, Any, dict[str, str]]:
        params = dict(pairs)
        action = headers.get("x-acs-action") or params.get("Action") or ""
        instance_id = params.get("InstanceId")
        signature = "none"
        request_id = str(uuid.uuid4()).upper()
        status, code = 200, None
        try:
            signature = self._authenticate(method, path, pairs, headers, body)
            version = headers.get("x-acs-version") or params.get("Version")
            if not action:
                raise _Reply(400, "MissingParameter", "The input parameter \"Action\" that is "
                             "mandatory for processing this request is not supplied.")
            if version != API_VERSION:
                raise _Reply(400, "InvalidVersion", "Specified parameter Version is not valid.")
            handler = getattr(self, f"_do_{action}", None)
            if handler is None:
                raise _Reply(404, "InvalidApi.NotFound", "Specified api is not found, please "
                             "check your url and method.")
            raw = self._fault(action, instance_id)
            if isinstance(raw, _Raw):
                status = raw.status
                return raw.status, raw, {"x-acs-request-id": request_id}
            self._wait(self._latency_for(action))
            answer = handler(params)
            answer["RequestId"] = request_id
            return 200, answer, {"x-acs-request-id": request_id}
        except _Reply as reply:
            status, code = reply.status, reply.code
            payload = {"RequestId": request_id, "HostId": "ecs.aliyuncs.com",
                       "Code": reply.code, "Message": reply.message,
                       "Recommend": f"https://api.aliyun.com/troubleshoot?q={reply.code}"
                                    "&product=Ecs"}
            payload.update(reply.extra)
            return reply.status, payload, {"x-acs-request-id": request_id, **reply.headers}
        finally:
            record = CallRecord(action, instance_id,
                                {k: v for k, v in params.items() if k not in _HIDDEN_PARAMS},
                                signature, status, code, headers.get("x-acs-retry-attempts"))
            with self.lock:
                self.calls.append(record)
            log.debug("%s %s -> %d %s (signature %s, key %s)", action or "-",
                      instance_id or "-", status, code or "OK", signature,
                      mask(headers.get("x-acs-accesskey-id") or self._caller_key(headers,
                                                                                   params)))

    @staticmethod
    def _caller_key(headers: Mapping[str, str], params: Mapping[str, str]) -> str:
        auth = parse_v3_authorization(headers.get("authorization", ""))
        return auth.access_key_id if auth else params.get("AccessKeyId", "")

    def _wait(self, seconds: float) -> None:
        if seconds > 0:
            self.stop.wait(seconds)

    def _latency_for(self, action: str) -> float:
        if isinstance(self.latency, Mapping):
            return float(self.latency.get(action, self.latency.get("*", 0.0)))
        return float(self.latency)

    def _fault(self, action: str, instance_id: str | None) -> _Raw | None:
        with self.lock:
            fault = next((f for f in self.faults if f.matches(action, instance_id)), None)
            if fault is None:
                return None
            if fault.times is not None:
                fault.times -= 1
        status, code, message = FAULT_KINDS[fault.kind]
        if fault.kind == "timeout":
            self._wait(fault.delay)
            return None  # then answer normally, to a client that has given up
        if fault.kind == "malformed":
            return _Raw(200, b'{"RequestId": "0", "Instances": {"Instance": [', "application/json")
        if fault.kind == "bad_gateway":
            return _Raw(502, b"<html><body><h1>502 Bad Gateway</h1></body></html>",
                        "text/html")
        assert status is not None
        if code == "Throttling" and action.startswith("GetInstance"):
            status = 429  # the GetInstance* error tables list Throttling as 429
        extra: dict[str, Any] = {}
        if code == "Forbidden.RAM":
            extra["AccessDeniedDetail"] = {"AuthAction": f"ecs:{action}",
                                           "PolicyType": "AccountLevelIdentityBasedPolicy",
                                           "NoPermissionType": "ImplicitDeny"}
        headers = {}
        if fault.retry_after_ms:
            headers["x-acs-retry-after"] = str(fault.retry_after_ms)
        raise _Reply(status, code, message, extra, headers)

    # Authentication -------------------------------------------------------------------------

    def _check_time(self, stamp: str | None) -> None:
        try:
            moment = datetime.strptime(stamp or "", "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        except ValueError:
            raise _Reply(400, "InvalidTimeStamp.Format", "Specified time stamp or date value "
                         "is not well formatted.") from None
        if abs(moment.timestamp() - self.wall_clock()) > MAX_CLOCK_SKEW:
            raise _Reply(400, "InvalidTimeStamp.Expired", "Specified time stamp or date value "
                         "is expired.")

    def _check_nonce(self, nonce: str | None) -> None:
        if not nonce:
            raise _Reply(400, "MissingParameter", "The input parameter \"SignatureNonce\" that "
                         "is mandatory for processing this request is not supplied.")
        with self.lock:
            if nonce in self._nonce_set:
                raise _Reply(400, "SignatureNonceUsed", "Specified signature nonce was used "
                             "already.")
            if len(self._nonces) == self._nonces.maxlen:
                self._nonce_set.discard(self._nonces[0])
            self._nonces.append(nonce)
            self._nonce_set.add(nonce)

    def _check_key(self, key_id: str, token: str | None) -> None:
        if not same(key_id, self.access_key_id):
            raise _Reply(404, "InvalidAccessKeyId.NotFound", "Specified access key is not "
                         "found.")
        if self._token is not None and not same(token or "", self._token):
            raise _Reply(400, "InvalidSecurityToken.Mismatch", "Specified SecurityToken "
                         "mismatch with the AccessKey.")
        if self._token is None and token:
            raise _Reply(400, "InvalidSecurityToken.Malformed", "Specified SecurityToken is "
                         "malformed.")

    def _authenticate(self, method: str, path: str, pairs: list[tuple[str, str]],
                      headers: Mapping[str, str], body: bytes) -> str:
        params = dict(pairs)
        if "Signature" in params:
            if params.get("SignatureMethod") != "HMAC-SHA1" or \
                    params.get("SignatureVersion") != "1.0":
                raise _Reply(400, "InvalidParameter", "SignatureMethod must be HMAC-SHA1 and "
                             "SignatureVersion 1.0.")
            self._check_time(params.get("Timestamp"))
            self._check_key(params.get("AccessKeyId", ""), params.get("SecurityToken"))
            expected = v1_signature(self._secret, method=method,
                                    params=[(k, v) for k, v in pairs if k != "Signature"])
            if not same(expected, params["Signature"]):
                raise _Reply(400, "SignatureDoesNotMatch", "Specified signature is not matched "
                             "with our calculation.")
            self._check_nonce(params.get("SignatureNonce"))
            return "v1"
        auth = parse_v3_authorization(headers.get("authorization", ""))
        if auth is None:
            raise _Reply(400, "IncompleteSignature", "The request signature does not conform "
                         "to Alibaba Cloud standards.")
        self._check_time(headers.get("x-acs-date"))
        self._check_key(auth.access_key_id, headers.get("x-acs-security-token"))
        required = {"host", "x-acs-action", "x-acs-date", "x-acs-signature-nonce",
                    "x-acs-version", "x-acs-content-sha256"}
        if not required <= set(auth.signed_headers):
            raise _Reply(400, "IncompleteSignature", "The request signature does not conform "
                         "to Alibaba Cloud standards.")
        payload_hash = hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256
        if not same(headers.get("x-acs-content-sha256", ""), payload_hash):
            raise _Reply(400, "SignatureDoesNotMatch", "The request body does not match "
                         "x-acs-content-sha256.")
        expected = v3_signature(self._secret, method=method, path=urlsplit(path).path or "/",
                                query=pairs, headers=headers,
                                signed_headers=auth.signed_headers, payload_hash=payload_hash)
        if not same(expected, auth.signature):
            raise _Reply(400, "SignatureDoesNotMatch", "Specified signature is not matched "
                         "with our calculation.")
        self._check_nonce(headers.get("x-acs-signature-nonce"))
        return "v3"

    # Actions --------------------------------------------------------------------------------

    def _region(self, params: Mapping[str, str]) -> str:
        region = params.get("RegionId")
        if not region:
            raise _Reply(400, "MissingParameter", "The input parameter \"RegionId\" that is "
                         "mandatory for processing this request is not supplied.")
        return region

    def _instance(self, params: Mapping[str, str]) -> Instance:
        region = self._region(params)
        iid = params.get("InstanceId")
        if not iid:
            raise _Reply(400, "MissingParameter", "The input parameter \"InstanceId\" that is "
                         "mandatory for processing this request is not supplied.")
        inst = self.region.get(iid) if region == self.region.region_id else None
        if inst is None:
            raise _Reply(404, "InvalidInstanceId.NotFound", "The specified InstanceId does not "
                         "exist.")
        return inst

    def _instance_json(self, inst: Instance) -> dict[str, Any]:
        out: dict[str, Any] = {
            "InstanceId": inst.id, "InstanceName": inst.name, "HostName": inst.name,
            "OSType": inst.os_type, "OSName": inst.os_name, "OSNameEn": inst.os_name,
            "InstanceType": inst.instance_type, "InstanceTypeFamily": inst.family,
            "CreationTime": inst.creation_time, "StartTime": inst.creation_time,
            "Status": inst.status, "RegionId": self.region.region_id, "ZoneId": inst.zone,
        }
        if inst.tags:
            out["Tags"] = {"Tag": [{"TagKey": k, "TagValue": v} for k, v in inst.tags.items()]}
        return out

    def _do_DescribeInstances(self, params: Mapping[str, str]) -> dict[str, Any]:  # noqa: N802
        region = self._region(params)
        found = list(self.region.instances) if region == self.region.region_id else []
        if params.get("InstanceIds"):
            try:
                ids = json.loads(params["InstanceIds"])
                if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
                    raise ValueError
            except ValueError:
                raise _Reply(400, "InvalidInstanceIds.Malformed", "The specified parameter "
                             "InstanceIds is not valid.") from None
            if len(ids) > 100:
                raise _Reply(400, "InvalidInstanceIds.Malformed", "The specified parameter "
                             "InstanceIds has more than 100 values.")
            found = [i for i in found if i.id in set(ids)]
        status = params.get("Status")
        if status:
            if status not in STATUSES:
                raise _Reply(404, "InvalidStatus.NotFound", "The specified Status is not "
                             "found.")
            found = [i for i in found if i.status == status]
        tag_filters = self._tag_filters(params)
        for key, value in tag_filters:
            found = [i for i in found if key in i.tags and (value is None
                                                            or i.tags[key] == value)]
        for param, attr in (("ZoneId", "zone"), ("InstanceType", "instance_type"),
                            ("InstanceTypeFamily", "family")):
            if params.get(param):
                found = [i for i in found if getattr(i, attr) == params[param]]
        if params.get("InstanceName"):
            pattern = params["InstanceName"]
            found = [i for i in found if fnmatch.fnmatchcase(i.name, pattern)]
        key = hashlib.sha256(json.dumps(sorted(
            (k, v) for k, v in params.items()
            if k not in ("NextToken", "MaxResults", "PageNumber", "PageSize", "RegionId"))
        ).encode()).hexdigest()
        page, meta = _page(found, params, key)
        return {**meta, "Instances": {"Instance": [self._instance_json(i) for i in page]}}

    @staticmethod
    def _tag_filters(params: Mapping[str, str]) -> list[tuple[str, str | None]]:
        pattern = re.compile(r"^Tag\.(\d+)\.(Key|Value)$")
        by_index: dict[int, dict[str, str]] = {}
        for name, value in params.items():
            m = pattern.match(name)
            if m:
                by_index.setdefault(int(m.group(1)), {})[m.group(2)] = value
        if any(n < 1 or n > 20 for n in by_index):
            raise _Reply(400, "InvalidTagCount", "The specified tags are beyond the permitted "
                         "range.")
        out: list[tuple[str, str | None]] = []
        for n in sorted(by_index):
            entry = by_index[n]
            if not entry.get("Key"):
                raise _Reply(400, "InvalidTag.Mismatch", "The specified Tag.n.Key and "
                             "Tag.n.Value are not match.")
            out.append((entry["Key"], entry.get("Value")))
        return out

    def _do_GetInstanceConsoleOutput(self, params: Mapping[str, str]) -> dict[str, Any]:  # noqa: N802
        inst = self._instance(params)
        if inst.unsupported() or inst.os_type.lower() == "windows":
            raise _Reply(405, "NotSupported", f"The operation is not supported for "
                         f"\"{inst.id}\".")
        if inst.status != "Running":
            raise _Reply(405, "IncorrectInstanceStatus", "The current status of the resource "
                         "does not support this operation.")
        data = inst.console or b""
        if _truthy(params.get("RemoveSymbols")):
            data = _strip_symbols(data)
        updated = datetime.fromtimestamp(self.wall_clock(), UTC) - timedelta(
            minutes=inst.console_age_minutes)
        return {"InstanceId": inst.id,
                "LastUpdateTime": updated.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S"),
                "ConsoleOutput": base64.b64encode(data).decode("ascii")}

    def _do_GetInstanceScreenshot(self, params: Mapping[str, str]) -> dict[str, Any]:  # noqa: N802
        inst = self._instance(params)
        if inst.unsupported():
            raise _Reply(405, "NotSupported", f"The operation is not supported for "
                         f"\"{inst.id}\".")
        if inst.status != "Running":
            raise _Reply(405, "IncorrectInstanceStatus", "The current status of the resource "
                         "does not support this operation.")
        with self.lock:
            now = self.clock()
            last = self._last_shot.get(inst.id)
            if last is not None and now - last < self.screenshot_interval:
                raise _Reply(429, "Throttling", "Request was denied due to request "
                             "throttling.")
            self._last_shot[inst.id] = now
        data = inst.screenshot or b""
        return {"InstanceId": inst.id, "Screenshot": base64.b64encode(data).decode("ascii")}

    def _event_json(self, inst: Instance, ev: Mapping[str, Any], n: int, *,
                    scheduled: bool) -> dict[str, Any]:
        now = datetime.fromtimestamp(self.wall_clock(), UTC)
        kind = ev["type"]
        cycle = "Scheduled" if scheduled else ev.get("status", "Executed")
        if scheduled:
            published = now - timedelta(hours=float(ev.get("published_hours_ago", 1)))
            not_before = now + timedelta(hours=float(ev.get("in_hours", 24)))
        else:
            published = now - timedelta(hours=float(ev.get("age_hours", 1)))
            not_before = published + timedelta(minutes=float(ev.get("after_minutes", 0)))
        digest = hashlib.sha256(f"{inst.id}/{n}/{kind}/{scheduled}".encode()).hexdigest()
        out: dict[str, Any] = {
            "EventId": "e-" + digest[:20],
            "EventType": {"Name": kind},
            "EventCycleStatus": {"Name": cycle},
            "EventPublishTime": _iso(published),
            "NotBefore": _iso(not_before),
            "Reason": ev.get("reason", ""),
            "ImpactLevel": str(ev.get("impact", "")),
        }
        if kind in _EVENT_TYPE_CODE:
            out["EventType"]["Code"] = _EVENT_TYPE_CODE[kind]
        if cycle in _CYCLE_CODE:
            out["EventCycleStatus"]["Code"] = _CYCLE_CODE[cycle]
        if not scheduled:
            out["InstanceId"] = inst.id
            out["ResourceType"] = "instance"
            if cycle in ("Executed", "Failed", "Canceled", "Avoided"):
                finish = not_before + timedelta(minutes=float(ev.get("duration_minutes", 3)))
                out["EventFinishTime"] = _iso(finish)
            if ev.get("reason_code"):
                out["ReasonCode"] = ev["reason_code"]
        return out

    @staticmethod
    def _window(params: Mapping[str, str], name: str) -> tuple[datetime | None, datetime | None]:
        def parse(key: str) -> datetime | None:
            value = params.get(key)
            if not value:
                return None
            moment = parse_creation_time(value)
            if moment is None:
                raise _Reply(400, "InvalidParameter", f"The specified {key} is not valid.")
            return moment
        return parse(f"{name}.Start"), parse(f"{name}.End")

    def _do_DescribeInstanceHistoryEvents(self, params: Mapping[str, str]) -> dict[str, Any]:  # noqa: N802
        region = self._region(params)
        instances = self.region.instances if region == self.region.region_id else []
        if params.get("InstanceId"):
            instances = [i for i in instances if i.id == params["InstanceId"]]
        types = _indexed(params, "InstanceEventType", 30, "InvalidParameter") or (
            [params["EventType"]] if params.get("EventType") else [])
        cycles = _indexed(params, "InstanceEventCycleStatus", 7, "InvalidParameter") or (
            [params["EventCycleStatus"]] if params.get("EventCycleStatus") else
            list(_DEFAULT_CYCLES))
        ids = _indexed(params, "EventId", 100, "EventIdLimitExceeded")
        pub_start, pub_end = self._window(params, "EventPublishTime")
        nb_start, nb_end = self._window(params, "NotBefore")
        events: list[dict[str, Any]] = []
        for inst in instances:
            for n, ev in enumerate(inst.history):
                events.append(self._event_json(inst, ev, n, scheduled=False))
            for n, ev in enumerate(inst.scheduled):
                item = self._event_json(inst, ev, n, scheduled=True)
                item.update(InstanceId=inst.id, ResourceType="instance")
                events.append(item)
        selected = []
        for ev in events:
            published = parse_creation_time(ev["EventPublishTime"])
            not_before = parse_creation_time(ev["NotBefore"])
            if types and ev["EventType"]["Name"] not in types:
                continue
            if ev["EventCycleStatus"]["Name"] not in cycles:
                continue
            if ids and ev["EventId"] not in ids:
                continue
            if (pub_start and published < pub_start) or (pub_end and published > pub_end):
                continue
            if (nb_start and not_before < nb_start) or (nb_end and not_before > nb_end):
                continue
            selected.append(ev)
        selected.sort(key=lambda e: e["EventPublishTime"], reverse=True)
        key = hashlib.sha256(json.dumps(sorted(
            (k, v) for k, v in params.items()
            if k not in ("NextToken", "MaxResults", "PageNumber", "PageSize"))).encode()
        ).hexdigest()
        page, meta = _page(selected, params, key)
        return {**meta, "InstanceSystemEventSet": {"InstanceSystemEventType": page}}

    def _do_DescribeInstancesFullStatus(self, params: Mapping[str, str]) -> dict[str, Any]:  # noqa: N802
        region = self._region(params)
        instances = self.region.instances if region == self.region.region_id else []
        ids = _indexed(params, "InstanceId", 100, "InstanceIdLimitExceeded")
        if ids:
            instances = [i for i in instances if i.id in ids]
        if params.get("Status"):
            instances = [i for i in instances if i.status == params["Status"]]
        if params.get("HealthStatus"):
            instances = [i for i in instances if i.health == params["HealthStatus"]]
        page, meta = _page(instances, params, "full-status", token_mode_allowed=False)
        items = []
        for inst in page:
            status: dict[str, Any] = {"Name": inst.status}
            if inst.status in _STATUS_CODE:
                status["Code"] = _STATUS_CODE[inst.status]
            health: dict[str, Any] = {"Name": inst.health}
            if inst.health in _HEALTH_CODE:
                health["Code"] = _HEALTH_CODE[inst.health]
            scheduled = [self._event_json(inst, ev, n, scheduled=True)
                         for n, ev in enumerate(inst.scheduled)]
            items.append({"InstanceId": inst.id, "Status": status, "HealthStatus": health,
                          "ScheduledSystemEventSet": {"ScheduledSystemEventType": scheduled}})
        return {**meta, "InstanceFullStatusSet": {"InstanceFullStatusType": items}}


# --------------------------------------------------------------------------------------------
# HTTP plumbing


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate small writes
    server_version = "diagnose-ecs-local/1"
    sys_version = ""

    def _serve(self) -> None:
        api: _Api = self.server.api  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        split = urlsplit(self.path)
        pairs = parse_qsl(split.query, keep_blank_values=True)
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if body and content_type == "application/x-www-form-urlencoded":
            pairs += parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, payload, extra = api.handle(self.command, self.path, pairs, headers, body)
        if isinstance(payload, _Raw):
            data, ctype = payload.body, payload.content_type
        else:
            data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
            ctype = "application/json;charset=utf-8"
        try:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            for name, value in extra.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (timeout fault)

    do_POST = _serve  # noqa: N815 - http.server's naming
    do_GET = _serve  # noqa: N815

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        # The request line holds the query string, which in v1 requests carries the AccessKey
        # ID and an STS token: never log it. _Api.handle logs a safe summary instead.
        return


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("connection from %s ended with an error", client_address[0])


class EcsServer:
    """The local ECS endpoint, as a context manager. ``endpoint`` is ``http://127.0.0.1:PORT``."""

    def __init__(self, region_dir: str | Path, *, access_key_id: str, access_key_secret: str,
                 security_token: str | None = None, faults: Sequence[Fault] = (),
                 latency: float | Mapping[str, float] = 0.0,
                 clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time,
                 screenshot_interval: float = 10.0,
                 host: str = "127.0.0.1", port: int = 0):
        self.region_dir = Path(region_dir)
        self._stop = threading.Event()
        self._api = _Api(load_region(self.region_dir), access_key_id=access_key_id,
                         access_key_secret=access_key_secret, security_token=security_token,
                         faults=faults, latency=latency, clock=clock, wall_clock=wall_clock,
                         screenshot_interval=screenshot_interval, stop=self._stop)
        self._host, self._port = host, port
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"EcsServer({str(self.region_dir)!r}, endpoint={self.endpoint!r})"

    # Lifecycle ------------------------------------------------------------------------------

    def start(self) -> EcsServer:
        if self._httpd is not None:
            return self
        self._stop.clear()
        httpd = _Server((self._host, self._port), _Handler)
        httpd.api = self._api  # type: ignore[attr-defined]
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="ecs-server", daemon=True)
        self._thread.start()
        log.debug("serving region %s on %s", self.region_id, self.endpoint)
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._stop.set()  # wakes any request sleeping in a timeout fault or latency
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> EcsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # What tests and the demo use ------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        if self._httpd is None:
            return ""
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def region_id(self) -> str:
        return self._api.region.region_id

    @property
    def instance_ids(self) -> tuple[str, ...]:
        return tuple(i.id for i in self._api.region.instances)

    @property
    def calls(self) -> list[CallRecord]:
        with self._api.lock:
            return list(self._api.calls)

    def calls_to(self, action: str) -> list[CallRecord]:
        return [c for c in self.calls if c.action == action]

    def inject(self, *faults: Fault) -> None:
        with self._api.lock:
            self._api.faults.extend(faults)

    def clear_faults(self) -> None:
        with self._api.lock:
            self._api.faults.clear()

    def set_latency(self, latency: float | Mapping[str, float]) -> None:
        self._api.latency = latency


def main(argv: Sequence[str] | None = None) -> int:
    """Serve a region directory in the foreground (default: the demo region)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m diagnose.testing.ecs_server",
                                     description=main.__doc__)
    parser.add_argument("region_dir", nargs="?", default=str(DEMO_REGION_DIR))
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    with EcsServer(args.region_dir, port=args.port, **DEMO_CREDENTIALS.as_kwargs()) as server:
        print(f"ECS endpoint {server.endpoint}, region {server.region_id}")
        print(f"AccessKey ID {DEMO_CREDENTIALS.access_key_id!r}, secret "
              f"{DEMO_CREDENTIALS.access_key_secret!r} (demo only)")
        print("instances: " + ", ".join(server.instance_ids))
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            return 0


if __name__ == "__main__":
    raise SystemExit(main())
