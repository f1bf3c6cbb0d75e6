"""Evidence from a QEMU/KVM virtual machine that the user runs: its QMP socket and serial log.

``fetch_qemu("/run/vm1.qmp", serial_log="/var/log/vm1-serial.log")`` talks QMP through the
``qemu.qmp`` package (imported only here): ``query-version``, ``query-status``, ``query-name`` and
``screendump``. The screenshot is written by QEMU into a file descriptor that we pass over the
socket (``add-fd``), so it works when QEMU runs as another user or is confined; without fd passing
QEMU writes into a private temporary directory instead.

The serial log is a file on this host. When the user does not name it, it is looked up in the
QEMU process's own command line (a ``file`` chardev's ``path=`` or any chardev's ``logfile=``):
``query-chardev`` reports only ``"file"`` as the filename of a file backend, never its path. The
process is found through the socket's peer credentials (``SO_PEERCRED``); a path that libvirt
passed in as ``/dev/fdset/N`` is resolved with ``query-fdsets`` where /proc allows it.

Only fatal problems raise ``FetchError`` (no socket, nobody answering, not QMP). A screenshot or a
serial log that cannot be had is an ``Artifact`` with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import stat
import struct
import tempfile
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import FetchError, UsageError
from ..model import Artifact, Evidence, Subject
from . import _png
from .base import sniff_image

SERIAL_TAIL = 1024 * 1024  # read at most the last 1 MiB of the serial log
MAX_SCREENDUMP = 256 * 1024 * 1024  # an 8192x8192 PPM is 192 MiB; anything larger is refused
PREFIX = "qemu:"

# Frontends whose chardev carries the guest's console output, best first.
SERIAL_DRIVERS = frozenset({"isa-serial", "pci-serial", "pci-serial-2x", "pci-serial-4x",
                            "spapr-vty", "pl011", "sifive_uart", "cfspi"})
CONSOLE_DRIVERS = frozenset({"virtconsole", "sclpconsole", "sclplmconsole"})


class QemuFetcher:
    """``get_fetcher("qemu").fetch("/run/vm1.qmp", serial_log=...)``: a VM's QMP socket."""

    name = "qemu"

    def fetch(self, target: str, **options: Any) -> Evidence:
        path = target[len(PREFIX):] if target.startswith(PREFIX) else target
        return fetch_qemu(path, serial_log=options.get("serial_log"),
                          timeout=float(options.get("timeout") or 10.0))


def fetch_qemu(socket_path: str, *, serial_log: str | None = None,
               timeout: float = 10.0) -> Evidence:
    """Status, screenshot and serial log of the QEMU VM behind the QMP unix socket."""
    if not socket_path:
        raise UsageError("give the path of the VM's QMP socket (qemu:/path/to/qmp.sock)")
    if not timeout or timeout <= 0:
        raise UsageError(f"timeout must be a positive number of seconds, not {timeout!r}")
    try:
        import qemu.qmp  # noqa: F401 - fail early with an install hint
    except ImportError:
        raise FetchError("the qemu fetcher needs the qemu.qmp package "
                         "(pip install 'diagnose[qemu]')") from None
    sock, pid, uid = _connect(socket_path, timeout)
    session = _Session(socket_path, sock, pid, timeout, peer_uid=uid)
    return _run_sync(lambda: session.run(serial_log))


# --------------------------------------------------------------------------------------------
# Plumbing: the socket, the event loop, the errors


def _connect(path: str, timeout: float) -> tuple[socket.socket, int | None, int | None]:
    """A connected unix socket and the pid and uid of the process on the other end (when the
    system tells them)."""
    shown = _short(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise FetchError(f"QMP socket {shown}: no such file (is the VM running, with "
                         "-qmp unix:PATH,server=on,wait=off?)") from None
    except PermissionError:
        raise FetchError(f"QMP socket {shown}: permission denied") from None
    except OSError as exc:
        raise FetchError(f"QMP socket {shown}: {exc.strerror}") from None
    if not stat.S_ISSOCK(info.st_mode):
        raise FetchError(f"QMP socket {shown}: not a unix socket")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        _connect_path(sock, path)
    except TimeoutError:
        sock.close()
        raise FetchError(f"QMP socket {shown}: connect timed out after {timeout:g} s") from None
    except ConnectionRefusedError:
        sock.close()
        raise FetchError(f"QMP socket {shown}: connection refused (QEMU is not running, "
                         "the socket is stale)") from None
    except PermissionError:
        sock.close()
        raise FetchError(f"QMP socket {shown}: permission denied (read and write access "
                         "to the socket is needed)") from None
    except OSError as exc:
        sock.close()
        raise FetchError(f"QMP socket {shown}: {exc.strerror or exc}") from None
    pid = uid = None
    if hasattr(socket, "SO_PEERCRED"):
        with contextlib.suppress(OSError):
            pid, uid, _gid = struct.unpack("3i", sock.getsockopt(
                socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    sock.setblocking(False)
    return sock, pid or None, uid


def _connect_path(sock: socket.socket, path: str) -> None:
    """connect(); paths longer than sun_path (108 bytes) go through /proc/self/fd/N/name."""
    if len(os.fsencode(path)) < 108:
        sock.connect(path)
        return
    parent, name = os.path.split(os.path.abspath(path))
    dirfd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        sock.connect(f"/proc/self/fd/{dirfd}/{name}")
    finally:
        os.close(dirfd)


def _run_sync(make: Callable[[], Awaitable[Evidence]]) -> Evidence:
    """Run a coroutine to the end, also when the caller is already inside an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())  # type: ignore[arg-type]
    box: dict[str, Any] = {}

    def worker() -> None:
        try:
            box["value"] = asyncio.run(make())  # type: ignore[arg-type]
        except BaseException as exc:  # noqa: BLE001 - handed to the caller below
            box["error"] = exc

    thread = threading.Thread(target=worker, name="diagnose-qmp", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


def _short(text: str, limit: int = 160) -> str:
    """One printable line of at most ``limit`` characters (paths and QEMU messages)."""
    flat = " ".join(str(text).split())
    flat = flat.encode("ascii", "backslashreplace").decode("ascii")
    return flat if len(flat) <= limit else flat[:limit - 3] + "..."


class _Timeout(Exception):
    def __init__(self, what: str):
        super().__init__(what)
        self.what = what


# --------------------------------------------------------------------------------------------
# The QMP session


@dataclass(frozen=True)
class QemuInfo:
    version: tuple[int, int, int]
    package: str
    status: str
    name: str | None


class _Session:
    def __init__(self, path: str, sock: socket.socket, pid: int | None, timeout: float,
                 peer_uid: int | None = None):
        self.peer_uid = peer_uid
        self.same_user = peer_uid is not None and peer_uid == os.geteuid()
        self.path = path
        self.shown = _short(path)
        self.sock = sock
        self.pid = pid
        self.timeout = timeout
        self.client: Any = None

    async def _call(self, command: str, arguments: dict[str, Any] | None = None) -> Any:
        try:
            return await asyncio.wait_for(self.client.execute(command, arguments),
                                          self.timeout)
        except TimeoutError:
            raise _Timeout(command) from None

    async def run(self, serial_log: str | None) -> Evidence:
        from qemu.qmp import ConnectError, QMPClient, QMPError

        self.client = QMPClient("diagnose")
        try:
            try:
                await asyncio.wait_for(self.client.connect(self.sock), self.timeout)
            except TimeoutError:
                raise FetchError(
                    f"QMP socket {self.shown}: no QMP greeting within {self.timeout:g} s (is "
                    "another client connected? QEMU serves one QMP client at a time)") from None
            except ConnectError as exc:
                raise FetchError(f"QMP socket {self.shown}: not a working QMP monitor "
                                 f"({_short(exc, 120)})") from None
            try:
                info = await self._info()
                shot, shot_art = await self._screenshot(info.version)
                console, console_art = await self._console(serial_log)
            except _Timeout as exc:
                raise FetchError(f"QMP socket {self.shown}: QEMU did not answer {exc.what} "
                                 f"within {self.timeout:g} s") from None
            except (QMPError, EOFError, OSError) as exc:
                raise FetchError(f"QMP socket {self.shown}: the session failed "
                                 f"({_short(exc, 120)})") from None
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.client.disconnect(), self.timeout)
            self.sock.close()
        return self._evidence(info, console, console_art, shot, shot_art)

    async def _info(self) -> QemuInfo:
        from qemu.qmp import ExecuteError

        raw_version = await self._call("query-version")
        q = raw_version.get("qemu", {}) if isinstance(raw_version, dict) else {}
        version = tuple(int(q.get(k, 0)) if isinstance(q.get(k), int) else 0
                        for k in ("major", "minor", "micro"))
        package = raw_version.get("package", "") if isinstance(raw_version, dict) else ""
        raw_status = await self._call("query-status")
        status = raw_status.get("status") if isinstance(raw_status, dict) else None
        name = None
        with contextlib.suppress(ExecuteError):
            raw_name = await self._call("query-name")
            if isinstance(raw_name, dict) and isinstance(raw_name.get("name"), str):
                name = raw_name["name"] or None
        return QemuInfo(version=version,  # type: ignore[arg-type]
                        package=package.strip() if isinstance(package, str) else "",
                        status=status if isinstance(status, str) else "unknown", name=name)

    # -- screenshot ----------------------------------------------------------------------------
    async def _screenshot(self, version: tuple[int, int, int]) -> tuple[bytes | None, Artifact]:
        """screendump as PNG where QEMU writes it correctly, else PPM converted here.

        QEMU writes the file itself: into our private temporary directory when it runs as our
        user, else into a file descriptor we pass it (``add-fd``). QEMU keeps a passed fd until
        the VM runs again (it frees fd sets only while running), so the path comes first when
        it can work, and the file is emptied after reading either way.
        """
        png_ok = version >= (7, 1, 0) and not _png.png_channels_swapped(*version)
        formats = ("png", "ppm") if png_ok else ("ppm",)
        detail: dict[str, Any] = {}
        if version >= (7, 1, 0) and not png_ok:
            detail["note"] = (f"QEMU {'.'.join(map(str, version))} swaps red and blue in PNG "
                              "screendumps; took PPM instead")
        methods = ("file", "add-fd") if self.same_user else ("add-fd", "file")
        with tempfile.TemporaryDirectory(prefix="diagnose-qemu.") as tmp:
            target = Path(tmp) / "screendump"
            wfd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                errors: list[str] = []
                for method in methods:
                    error = await self._dump(method, target, wfd, formats)
                    if error is None:
                        detail["via"] = method
                        break
                    errors.append(error)
                    if "did not finish" in error:
                        break  # QEMU is stuck: a second attempt would only wait again
                if "via" not in detail:
                    return None, Artifact("screenshot", False, 0,
                                          f"screendump failed: {errors[0]}", "qmp:screendump",
                                          detail)
                try:
                    data = _read_limited(target, MAX_SCREENDUMP)
                except OSError as exc:
                    return None, Artifact("screenshot", False, 0,
                                          f"cannot read the screendump: {exc.strerror}",
                                          "qmp:screendump", detail)
            finally:
                with contextlib.suppress(OSError):
                    os.ftruncate(wfd, 0)
                os.close(wfd)
        return _as_png(data, detail)

    async def _dump(self, method: str, target: Path, wfd: int,
                    formats: tuple[str, ...]) -> str | None:
        """One screendump attempt into ``target``; None on success, else the error text."""
        from qemu.qmp import ExecuteError

        fdset = None
        if method == "add-fd":
            fdset = await self._add_fd(wfd)
            if fdset is None:
                return "QEMU did not take the file descriptor (add-fd)"
        filename = f"/dev/fdset/{fdset}" if fdset is not None else str(target)
        error = None
        try:
            for fmt in formats:
                os.ftruncate(wfd, 0)
                os.lseek(wfd, 0, os.SEEK_SET)  # the offset is shared with QEMU's dup
                args: dict[str, Any] = {"filename": filename}
                if fmt == "png":
                    args["format"] = "png"
                try:
                    await self._call("screendump", args)
                    return None
                except ExecuteError as exc:
                    error = error or _short(exc, 200)
                except _Timeout:
                    return f"screendump did not finish within {self.timeout:g} s"
        finally:
            if fdset is not None:
                with contextlib.suppress(Exception):
                    await self._call("remove-fd", {"fdset-id": fdset})
        return error

    async def _add_fd(self, wfd: int) -> int | None:
        """Hand QEMU our file descriptor; its fdset id, or None when fd passing failed."""
        from qemu.qmp import QMPError

        try:
            self.client.send_fd_scm(wfd)
            added = await self._call("add-fd", {"opaque": "diagnose screendump"})
        except (QMPError, OSError, AssertionError):
            return None
        fdset = added.get("fdset-id") if isinstance(added, dict) else None
        return fdset if isinstance(fdset, int) else None

    # -- serial log ----------------------------------------------------------------------------
    async def _console(self, serial_log: str | None) -> tuple[bytes | None, Artifact]:
        if serial_log:
            return read_serial_log(serial_log)
        path, why, passed_fd = await self._discover_serial()
        if path is None:
            return None, Artifact("console", False, 0, why, None, {})
        if not passed_fd and not self._owned_by_peer(path):
            # the command line of whatever answers on the socket names this file: read it only
            # if that process could have written it (or the user names it with --serial-log)
            return None, Artifact("console", False, 0,
                                  f"serial log {_short(path, 80)} found on QEMU's command line "
                                  f"is not owned by QEMU's user (uid {self.peer_uid}); give "
                                  "--serial-log PATH to read it anyway", path,
                                  {"discovered": True})
        data, art = read_serial_log(path)
        detail = dict(art.detail, discovered=True)
        return data, Artifact(art.name, art.available, art.bytes, art.reason, art.origin, detail)

    def _owned_by_peer(self, path: str) -> bool:
        """Whether the QEMU process's user owns ``path`` (root's QEMU may use any file)."""
        if self.peer_uid is None or self.peer_uid == 0:
            return True
        try:
            return os.stat(path).st_uid == self.peer_uid
        except OSError:
            return True  # missing or unreadable: read_serial_log says why

    async def _discover_serial(self) -> tuple[str | None, str, bool]:
        """(path, "", passed as an fd?) of the VM's serial log from its command line, or
        (None, why not, False)."""
        from qemu.qmp import ExecuteError

        hint = "give --serial-log PATH"
        chardevs: list[dict[str, Any]] = []
        with contextlib.suppress(ExecuteError, _Timeout):
            raw = await self._call("query-chardev")
            chardevs = [c for c in raw if isinstance(c, dict)] if isinstance(raw, list) else []
        live = {c.get("label"): str(c.get("filename", "")) for c in chardevs}
        argv = _qemu_argv(self.pid)
        if argv is None:
            return None, (f"no serial log named and the QEMU process is not readable; "
                          f"{hint}"), False
        sources = serial_sources(argv)
        if live:
            # chardevs removed at run time are gone; ids we cannot see stay (older QEMU)
            sources = [s for s in sources if s.label in live] or sources
        if not sources:
            serials = ", ".join(f"{k}={_short(v, 40)}" for k, v in sorted(
                (k, v) for k, v in live.items()
                if isinstance(k, str) and k.startswith(("serial", "charserial", "charconsole"))))
            seen = f" ({serials})" if serials else ""
            return None, (f"no serial log named and the VM has no file-backed serial "
                          f"chardev{seen}; {hint}"), False
        fdsets: dict[int, list[int]] | None = None
        for source in sources:
            path = source.path
            passed_fd = path.startswith("/dev/fdset/")
            if passed_fd:
                if fdsets is None:
                    fdsets = await self._fdsets()
                path = _resolve_fdset(self.pid, path, fdsets) or ""
                if not path:
                    continue
            if not os.path.isabs(path):
                cwd = _proc_link(self.pid, "cwd")
                if cwd is None:
                    continue
                path = os.path.join(cwd, path)
            return path, "", passed_fd
        return None, (f"no serial log named and the VM's serial chardev "
                      f"{sources[0].label} writes to {_short(sources[0].path, 60)}, which "
                      f"cannot be resolved from here; {hint}"), False

    async def _fdsets(self) -> dict[int, list[int]]:
        from qemu.qmp import ExecuteError

        out: dict[int, list[int]] = {}
        with contextlib.suppress(ExecuteError, _Timeout):
            raw = await self._call("query-fdsets")
            for item in raw if isinstance(raw, list) else []:
                if isinstance(item, dict) and isinstance(item.get("fdset-id"), int):
                    out[item["fdset-id"]] = [f["fd"] for f in item.get("fds", [])
                                             if isinstance(f, dict)
                                             and isinstance(f.get("fd"), int)]
        return out

    # -- result ---------------------------------------------------------------------------------
    def _evidence(self, info: QemuInfo, console: bytes | None, console_art: Artifact,
                  shot: bytes | None, shot_art: Artifact) -> Evidence:
        facts = [("qmp_socket", self.path), ("status", info.status),
                 ("qemu_version", ".".join(map(str, info.version)))]
        if info.package:
            facts.append(("qemu_package", info.package))
        if info.name:
            facts.append(("vm_name", info.name))
        if console_art.available and console_art.origin:
            facts.append(("serial_log", console_art.origin))
        skip = None
        if console is None and shot is None:
            skip = "; ".join(f"{a.name}: {a.reason}" for a in (console_art, shot_art)
                             if a.reason)
        return Evidence(subject=Subject("qemu", info.name or self.path, tuple(facts)),
                        console=console, screenshot=shot, artifacts=(console_art, shot_art),
                        skip_reason=skip or None)


def _as_png(data: bytes, detail: dict[str, Any]) -> tuple[bytes | None, Artifact]:
    """The screendump as PNG bytes (PPM converted here) and its artifact."""
    origin = "qmp:screendump"
    if not data:
        return None, Artifact("screenshot", False, 0, "screendump wrote an empty file",
                              origin, detail)
    if sniff_image(data) == "png":
        size = _png.png_size(data)
        if size:
            detail.update(width=size[0], height=size[1])
        return data, Artifact("screenshot", True, len(data), None, origin,
                              dict(detail, format="png"))
    try:
        png = _png.ppm_to_png(data)
    except ValueError as exc:
        return None, Artifact("screenshot", False, len(data),
                              f"screendump is neither PNG nor a readable PPM ({exc})", origin,
                              detail)
    size = _png.png_size(png)
    if size:
        detail.update(width=size[0], height=size[1])
    return png, Artifact("screenshot", True, len(png), None, origin,
                         dict(detail, format="png", converted_from="ppm"))


# --------------------------------------------------------------------------------------------
# Files


def _read_limited(path: str | Path, limit: int) -> bytes:
    with open(path, "rb") as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise OSError(0, f"larger than {limit} bytes")
    return data


def read_serial_log(path: str, limit: int = SERIAL_TAIL) -> tuple[bytes | None, Artifact]:
    """The last ``limit`` bytes of a serial log file (cut at a line start) and its artifact.

    Never raises for an unreadable file: the reason goes into the artifact.
    """
    shown = _short(path)
    try:
        # O_NONBLOCK: a FIFO (a named pipe chardev) must not hang us; it is refused below
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return None, Artifact("console", False, 0, f"serial log {shown}: no such file", path)
    except PermissionError:
        return None, Artifact("console", False, 0,
                              f"serial log {shown}: permission denied (run as a user who can "
                              "read it)", path)
    except OSError as exc:
        return None, Artifact("console", False, 0, f"serial log {shown}: {exc.strerror}", path)
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode):
            return None, Artifact("console", False, 0,
                                  f"serial log {shown}: not a regular file", path)
        size = info.st_size
        start = max(0, size - limit)
        fh.seek(start)
        data = fh.read(limit)
    detail: dict[str, Any] = {"file_bytes": size}
    if start > 0:
        cut = data.find(b"\n")
        if 0 <= cut < len(data) - 1:
            data = data[cut + 1:]
        detail.update(truncated=True, skipped_bytes=size - len(data))
    return data, Artifact("console", True, len(data), None, path, detail)


# --------------------------------------------------------------------------------------------
# Finding the serial log on the QEMU command line


@dataclass(frozen=True)
class SerialSource:
    """A chardev whose output lands in a file: ``path=`` of a file backend or ``logfile=``."""

    label: str  # the chardev id / label ("serial0", "charserial0")
    path: str  # as written on the command line (may be relative or /dev/fdset/N)
    role: str  # "serial" | "console" | "other"


def _keyval(text: str, implied: str) -> dict[str, str]:
    """QEMU's ``a,b=c,d=e,,f`` option syntax (',,' is a literal comma; the first bare item
    is the value of ``implied``)."""
    items: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == ",":
            if text[i + 1:i + 2] == ",":
                current.append(",")
                i += 2
                continue
            items.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    items.append("".join(current))
    out: dict[str, str] = {}
    for n, item in enumerate(items):
        key, eq, value = item.partition("=")
        if not eq:
            if n == 0:
                out[implied] = key
            continue
        out[key] = value
    return out


def _object(text: str, implied: str) -> dict[str, str]:
    """A ``-device``/``-chardev`` value: JSON (libvirt) or keyval."""
    if text.lstrip().startswith("{"):
        try:
            raw = json.loads(text)
        except json.JSONDecodeError:
            return {}
        if not isinstance(raw, dict):
            return {}
        return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in raw.items()}
    return _keyval(text, implied)


def _options(argv: list[str]) -> list[tuple[str, str]]:
    """(option, value) pairs of the options we care about, in order ('--opt' as '-opt')."""
    wanted = {"-serial", "-chardev", "-device", "-mon", "-nographic"}
    out = []
    i = 1
    while i < len(argv):
        arg = argv[i]
        opt = arg[1:] if arg.startswith("--") else arg
        if "=" in opt and opt.split("=", 1)[0] in wanted:
            opt, value = opt.split("=", 1)
            out.append((opt, value))
        elif opt == "-nographic":
            out.append((opt, ""))
        elif opt in wanted and i + 1 < len(argv):
            out.append((opt, argv[i + 1]))
            i += 1
        i += 1
    return out


def serial_sources(argv: list[str]) -> list[SerialSource]:
    """Chardevs on a QEMU command line that write the guest's console to a file, best first:
    serial ports in index order, then consoles (virtconsole, ...), then file chardevs whose
    frontend we cannot tell. Monitor chardevs are left out."""
    chardevs: dict[str, dict[str, str]] = {}
    order: list[str] = []
    serial_labels: list[str] = []
    console_labels: list[str] = []
    monitors: set[str] = set()
    serial_index = 0
    for opt, value in _options(argv):
        if opt == "-chardev":
            cfg = _object(value, "backend")
            cid = cfg.get("id")
            if cid:
                chardevs[cid] = cfg
                order.append(cid)
        elif opt == "-serial":
            spec = value[4:] if value.startswith("mon:") else value
            if spec == "none":
                continue
            label = f"serial{serial_index}"
            serial_index += 1
            if spec.startswith("chardev:"):
                serial_labels.append(spec[len("chardev:"):])
            elif spec.startswith("file:"):
                chardevs[label] = {"backend": "file", "path": spec[len("file:"):]}
                order.append(label)
                serial_labels.append(label)
        elif opt == "-device":
            cfg = _object(value, "driver")
            driver = cfg.get("driver", "")
            refs = [cfg[k] for k in ("chardev", "chardev1", "chardev2", "chardev3", "chardev4")
                    if k in cfg]
            if driver in SERIAL_DRIVERS:
                serial_labels.extend(refs)
            elif driver in CONSOLE_DRIVERS:
                console_labels.extend(refs)
        elif opt == "-mon":
            cfg = _keyval(value, "chardev")
            if cfg.get("chardev"):
                monitors.add(cfg["chardev"])

    def log_path(label: str) -> str | None:
        cfg = chardevs.get(label)
        if cfg is None:
            return None
        if cfg.get("logfile"):
            return cfg["logfile"]
        if cfg.get("backend") == "file" and cfg.get("path"):
            return cfg["path"]
        return None

    out: list[SerialSource] = []
    seen: set[str] = set()
    for role, labels in (("serial", serial_labels), ("console", console_labels),
                         ("other", order)):
        for label in labels:
            path = log_path(label)
            if label in seen or label in monitors or path is None:
                continue
            seen.add(label)
            out.append(SerialSource(label, path, role))
    return out


def _qemu_argv(pid: int | None) -> list[str] | None:
    """The command line of process ``pid`` if it is readable and looks like QEMU."""
    if not pid:
        return None
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    argv = [os.fsdecode(a) for a in raw.split(b"\0")]
    if argv and argv[-1] == "":
        argv.pop()
    if not argv or "qemu" not in os.path.basename(argv[0]):
        return None  # another pid namespace, a socket proxy: not the process we want
    return argv


def _proc_link(pid: int | None, name: str) -> str | None:
    if not pid:
        return None
    try:
        return os.readlink(f"/proc/{pid}/{name}")
    except OSError:
        return None


def _resolve_fdset(pid: int | None, path: str, fdsets: dict[int, list[int]]) -> str | None:
    """The file behind ``/dev/fdset/N`` in QEMU's fd table (needs the right to read /proc)."""
    try:
        fdset = int(path[len("/dev/fdset/"):])
    except ValueError:
        return None
    for fd in fdsets.get(fdset, []):
        target = _proc_link(pid, f"fd/{fd}")
        if target and target.startswith("/") and not target.endswith(" (deleted)"):
            return target
    return None
