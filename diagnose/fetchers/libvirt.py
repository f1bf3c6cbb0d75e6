"""Evidence from a libvirt domain: its state, a screenshot, and the serial log its XML names.

``fetch_libvirt("vm1", connect="qemu:///system")`` uses libvirt-python (imported only here): the
domain's state and reason, ``virDomainScreenshot`` through a stream (PNG, or PPM converted to
PNG here; PNGs from the QEMU versions that swap red and blue are corrected), and the serial log
file found in the domain XML: ``<serial type='file'><source path=...>``, ``<log file=...>`` on any
serial or console, and the same on ``<console>``.

libvirt calls block in C and have no timeout of their own, so each one runs in a worker thread
that we stop waiting for after ``timeout`` seconds (the call is then abandoned, with its
connection). Only fatal problems raise ``FetchError``; a missing screenshot or log is a reason.
"""

from __future__ import annotations

import re
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from ..errors import FetchError, UsageError
from ..model import Artifact, Evidence, Subject
from . import _png
from .base import sniff_image
from .qemu import read_serial_log

T = TypeVar("T")

PREFIX = "libvirt:"
MAX_SCREENSHOT = 256 * 1024 * 1024
_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-?([0-9a-fA-F]{4}-?){3}[0-9a-fA-F]{12}$")
_LOCAL_HOSTS = {"", "localhost", "127.0.0.1", "::1"}
_MIME_PPM = ("image/x-portable-pixmap", "image/x-portable-anymap", "image/x-ppm")

_error_handler_set = False


class LibvirtFetcher:
    """``get_fetcher("libvirt").fetch("vm1", connect="qemu:///system")``: a libvirt domain."""

    name = "libvirt"

    def fetch(self, target: str, **options: Any) -> Evidence:
        domain = target[len(PREFIX):] if target.startswith(PREFIX) else target
        return fetch_libvirt(domain, connect=options.get("connect"),
                             timeout=float(options.get("timeout") or 10.0))


# --------------------------------------------------------------------------------------------
# Domain XML


def serial_log_paths(domain_xml: str) -> list[str]:
    """Files that receive the guest's serial console, per the libvirt domain XML, best first.

    Serial ports in the order of their target port, then consoles: a ``file`` device's
    ``<source path>``, and the ``<log file>`` of any device type (pty, unix, tcp, ...).
    Duplicates (a ``<console>`` that mirrors ``<serial>``) are listed once.
    """
    root = _parse(domain_xml)
    devices = root.find("devices")
    if devices is None:
        return []
    serials = devices.findall("serial")

    def port(el: ET.Element) -> int:
        target = el.find("target")
        raw = target.get("port") if target is not None else None
        return int(raw) if raw is not None and raw.isdigit() else 1 << 30

    ordered = sorted(enumerate(serials), key=lambda pair: (port(pair[1]), pair[0]))
    out: list[str] = []
    for el in [e for _, e in ordered] + devices.findall("console"):
        for path in _device_paths(el):
            if path not in out:
                out.append(path)
    return out


def _device_paths(el: ET.Element) -> list[str]:
    paths = []
    if el.get("type") == "file":
        source = el.find("source")
        if source is not None and source.get("path"):
            paths.append(source.get("path", ""))
    log = el.find("log")
    if log is not None and log.get("file"):
        paths.append(log.get("file", ""))
    return paths


def _parse(domain_xml: str) -> ET.Element:
    # libvirt never writes a DTD; refusing one keeps entity tricks out of the parser.
    if "<!DOCTYPE" in domain_xml or "<!ENTITY" in domain_xml:
        raise ValueError("domain XML with a DTD is not accepted")
    try:
        root = ET.fromstring(domain_xml)
    except ET.ParseError as exc:
        raise ValueError(f"domain XML does not parse: {exc}") from None
    if root.tag != "domain":
        raise ValueError(f"expected a <domain> document, got <{root.tag}>")
    return root


# --------------------------------------------------------------------------------------------
# Fetch


class _Timeout(Exception):
    pass


def _bounded(call: Callable[[], T], timeout: float) -> T:
    """Run a blocking libvirt call in a daemon thread; give up waiting after ``timeout``."""
    box: dict[str, Any] = {}

    def worker() -> None:
        try:
            box["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            box["error"] = exc

    thread = threading.Thread(target=worker, name="diagnose-libvirt", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise _Timeout()
    if "error" in box:
        raise box["error"]
    return box["value"]


def _import_libvirt() -> Any:
    global _error_handler_set
    try:
        import libvirt
    except ImportError:
        raise FetchError("the libvirt fetcher needs libvirt-python (pip install "
                         "'diagnose[libvirt]'; it builds against libvirt-dev)") from None
    if not _error_handler_set:
        # libvirt's default handler prints every error to stderr; ours become one-line errors
        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
        _error_handler_set = True
    return libvirt


def _one_line(text: object, limit: int = 200) -> str:
    flat = " ".join(str(text).split()).encode("ascii", "backslashreplace").decode("ascii")
    return flat if len(flat) <= limit else flat[:limit - 3] + "..."


def _names(libvirt: Any, prefix: str) -> dict[int, str]:
    """{value: lower-case name} of libvirt's constants ``PREFIX*`` (without the LAST marker)."""
    out = {}
    for attr in dir(libvirt):
        if attr.startswith(prefix) and not attr.endswith("_LAST"):
            value = getattr(libvirt, attr)
            if isinstance(value, int):
                out.setdefault(value, attr[len(prefix):].lower())
    return out


def fetch_libvirt(domain: str, *, connect: str | None = None,
                  timeout: float = 10.0) -> Evidence:
    """State, screenshot and serial log of a libvirt domain (by name or UUID)."""
    if not domain:
        raise UsageError("give the libvirt domain name or UUID (libvirt:NAME)")
    if not timeout or timeout <= 0:
        raise UsageError(f"timeout must be a positive number of seconds, not {timeout!r}")
    libvirt = _import_libvirt()
    where = connect or "the default libvirt URI"

    def step(what: str, call: Callable[[], T]) -> T:
        try:
            return _bounded(call, timeout)
        except _Timeout:
            raise FetchError(f"libvirt ({_one_line(where, 80)}): {what} did not finish within "
                             f"{timeout:g} s") from None
        except libvirt.libvirtError as exc:
            raise FetchError(f"libvirt ({_one_line(where, 80)}): {what} failed: "
                             f"{_one_line(exc.get_error_message() or exc)}") from None

    read_only = False
    try:
        conn = _bounded(lambda: libvirt.open(connect), timeout)
    except _Timeout:
        raise FetchError(f"libvirt ({_one_line(where, 80)}): connecting did not finish within "
                         f"{timeout:g} s") from None
    except libvirt.libvirtError as exc:
        if exc.get_error_code() not in (libvirt.VIR_ERR_AUTH_FAILED,
                                        libvirt.VIR_ERR_OPERATION_DENIED,
                                        libvirt.VIR_ERR_ACCESS_DENIED):
            raise FetchError(f"libvirt ({_one_line(where, 80)}): cannot connect: "
                             f"{_one_line(exc.get_error_message() or exc)}") from None
        conn = step("connecting read-only", lambda: libvirt.openReadOnly(connect))
        read_only = True
    try:
        uri = step("getURI", conn.getURI)
        dom = _lookup(libvirt, conn, domain, uri, step, timeout)
        name = step("name", dom.name)
        state, reason = step("state", lambda: dom.state(0))
        active = step("isActive", dom.isActive) == 1
        xml_text = step("XMLDesc", lambda: dom.XMLDesc(0))
        driver = step("getType", conn.getType)
        hv_version = _hypervisor_version(libvirt, conn, timeout)
        shot, shot_art = _screenshot(libvirt, conn, dom, active, read_only, driver, hv_version,
                                     timeout)
        console, console_art = _serial(xml_text, uri)
        facts = [("libvirt_uri", uri), ("domain", name),
                 ("uuid", step("UUIDString", dom.UUIDString)),
                 ("status", _state_names(libvirt).get(state, str(state)))]
        reason_name = _reason_name(libvirt, state, reason)
        if reason_name:
            facts.append(("state_reason", reason_name))
        facts.append(("hypervisor", driver))
        if hv_version:
            facts.append(("hypervisor_version", ".".join(map(str, hv_version))))
        if console_art.available and console_art.origin:
            facts.append(("serial_log", console_art.origin))
    finally:
        try:
            _bounded(conn.close, timeout)
        except Exception:  # noqa: BLE001 - closing is best effort
            pass
    skip = None
    if console is None and shot is None:
        skip = "; ".join(f"{a.name}: {a.reason}" for a in (console_art, shot_art) if a.reason)
    return Evidence(subject=Subject("qemu", name, tuple(facts)), console=console,
                    screenshot=shot, artifacts=(console_art, shot_art), skip_reason=skip or None)


_STATE_REASON_PREFIX = {
    1: "VIR_DOMAIN_RUNNING_", 2: "VIR_DOMAIN_BLOCKED_", 3: "VIR_DOMAIN_PAUSED_",
    4: "VIR_DOMAIN_SHUTDOWN_", 5: "VIR_DOMAIN_SHUTOFF_", 6: "VIR_DOMAIN_CRASHED_",
    7: "VIR_DOMAIN_PMSUSPENDED_",
}


def _reason_name(libvirt: Any, state: int, reason: int) -> str | None:
    prefix = _STATE_REASON_PREFIX.get(state)
    if prefix is None:
        return None
    return _names(libvirt, prefix).get(reason)


def _state_names(libvirt: Any) -> dict[int, str]:
    return {getattr(libvirt, f"VIR_DOMAIN_{n.upper()}"): n
            for n in ("nostate", "running", "blocked", "paused", "shutdown", "shutoff",
                      "crashed", "pmsuspended") if hasattr(libvirt, f"VIR_DOMAIN_{n.upper()}")}


def _lookup(libvirt: Any, conn: Any, domain: str, uri: str, step: Callable,
            timeout: float) -> Any:
    try:
        return _bounded(lambda: conn.lookupByName(domain), timeout)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
            raise FetchError(f"libvirt ({_one_line(uri, 80)}): cannot look up "
                             f"{_one_line(domain, 80)!r}: "
                             f"{_one_line(exc.get_error_message() or exc)}") from None
    except _Timeout:
        raise FetchError(f"libvirt ({_one_line(uri, 80)}): looking up the domain timed "
                         "out") from None
    if _UUID_RE.match(domain):
        try:
            return step("lookupByUUIDString", lambda: conn.lookupByUUIDString(domain))
        except FetchError:
            pass
    raise FetchError(f"libvirt ({_one_line(uri, 80)}): no domain named "
                     f"{_one_line(domain, 80)!r}")


def _hypervisor_version(libvirt: Any, conn: Any, timeout: float) -> tuple[int, int, int] | None:
    try:
        raw = _bounded(conn.getVersion, timeout)
    except (libvirt.libvirtError, _Timeout):
        return None
    if not isinstance(raw, int) or raw <= 0:
        return None
    return raw // 1_000_000, (raw // 1000) % 1000, raw % 1000


def _screenshot(libvirt: Any, conn: Any, dom: Any, active: bool, read_only: bool, driver: str,
                hv_version: tuple[int, int, int] | None,
                timeout: float) -> tuple[bytes | None, Artifact]:
    origin = "libvirt:virDomainScreenshot"
    if not active:
        return None, Artifact("screenshot", False, 0,
                              "the domain is not running: there is no display to capture",
                              origin)
    if read_only:
        return None, Artifact("screenshot", False, 0,
                              "the libvirt connection is read-only; screenshots need a "
                              "read-write connection", origin)
    stream = None
    try:
        stream = _bounded(lambda: conn.newStream(0), timeout)
        mime = _bounded(lambda: dom.screenshot(stream, 0, 0), timeout)
        data = _bounded(lambda: _drain(stream), timeout)
        _bounded(stream.finish, timeout)
        stream = None
    except _Timeout:
        return None, Artifact("screenshot", False, 0,
                              f"the screenshot did not arrive within {timeout:g} s", origin)
    except (libvirt.libvirtError, ValueError) as exc:
        message = exc.get_error_message() if isinstance(exc, libvirt.libvirtError) else exc
        return None, Artifact("screenshot", False, 0,
                              f"screenshot failed: {_one_line(message or exc)}", origin)
    finally:
        if stream is not None:
            try:
                stream.abort()
            except Exception:  # noqa: BLE001 - the stream may already be gone
                pass
    detail: dict[str, Any] = {"mime": _one_line(mime or "", 60)}
    kind = sniff_image(data)
    try:
        if kind == "png":
            if driver == "QEMU" and hv_version and _png.png_channels_swapped(*hv_version):
                data = _png.png_swap_red_blue(data)
                detail["note"] = (f"QEMU {'.'.join(map(str, hv_version))} swaps red and blue "
                                  "in PNG screenshots; corrected")
        elif kind is None and (mime in _MIME_PPM or data.startswith(b"P6")):
            data = _png.ppm_to_png(data)
            detail["converted_from"] = "ppm"
        elif kind is None:
            return None, Artifact("screenshot", False, len(data),
                                  f"screenshot in an unsupported format ({detail['mime']})",
                                  origin, detail)
    except ValueError as exc:
        return None, Artifact("screenshot", False, len(data),
                              f"unreadable screenshot: {_one_line(exc)}", origin, detail)
    size = _png.png_size(data)
    if size:
        detail.update(width=size[0], height=size[1])
    detail["format"] = sniff_image(data)
    return data, Artifact("screenshot", True, len(data), None, origin, detail)


def _drain(stream: Any) -> bytes:
    chunks = []
    total = 0
    while True:
        chunk = stream.recv(256 * 1024)
        if isinstance(chunk, int):  # -2: would block (never on a blocking stream)
            continue
        if not chunk:
            break
        total += len(chunk)
        if total > MAX_SCREENSHOT:
            raise ValueError(f"screenshot larger than {MAX_SCREENSHOT} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _serial(xml_text: str, uri: str) -> tuple[bytes | None, Artifact]:
    try:
        paths = serial_log_paths(xml_text)
    except ValueError as exc:
        return None, Artifact("console", False, 0, f"domain XML: {_one_line(exc)}", None)
    if not paths:
        return None, Artifact("console", False, 0,
                              "the domain has no serial or console device that writes to a "
                              "file (add <log file='...'/> to its <serial>)", None)
    host = urlsplit(uri).hostname or ""
    if host.lower() not in _LOCAL_HOSTS:
        return None, Artifact("console", False, 0,
                              f"the serial log {_one_line(paths[0], 80)} is on the libvirt host "
                              f"{_one_line(host, 60)}, not here", paths[0],
                              {"candidates": len(paths)})
    first: tuple[bytes | None, Artifact] | None = None
    for path in paths:
        data, art = read_serial_log(path)
        if data is not None:
            return data, art
        first = first or (data, art)
    assert first is not None
    return first
