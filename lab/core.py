"""Shared lab data model, scenario registry, kernel fetching and the QEMU runner.

The dataclasses and ``REGISTRY`` follow the contract in the lab API brief; other lab
modules (busybox scenarios, Debian-root scenarios) build on them.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

LAB_DIR = Path(__file__).resolve().parent
REPO_DIR = LAB_DIR.parent
WORK_DIR = LAB_DIR / "work"
OUT_DIR = LAB_DIR / "out"
FIXTURES_DIR = REPO_DIR / "tests" / "fixtures" / "lab"


@dataclass(frozen=True)
class Kernel:
    """An extracted (never installed) Debian kernel package."""

    flavour: str  # "generic" | "cloud"
    version: str  # e.g. "6.1.0-28-amd64"
    package: str  # e.g. "linux-image-6.1.0-28-amd64_6.1.119-1_amd64.deb"
    vmlinuz: Path
    modules: Path  # .../lib/modules/<version>


@dataclass(frozen=True)
class BootSpec:
    """What to boot. Returned by a scenario's build function."""

    append: str  # kernel command line WITHOUT console=/vga= (the runner adds those)
    initrd: Path | None = None
    drives: tuple[str, ...] = ()  # each a full QEMU -drive value
    memory_mb: int = 256
    firmware_boot: bool = False  # True: no -kernel; boot the first drive through BIOS
    qemu_extra: tuple[str, ...] = ()


@dataclass(frozen=True)
class Scenario:
    name: str  # kebab-case, e.g. "vfs-panic"
    description: str
    expect_status: str  # taxonomy status of the expected verdict
    expect_category: str  # taxonomy category id
    build: Callable[[BuildContext], BootSpec]
    kernel: str = "generic"  # "generic" | "cloud"
    modes: tuple[str, ...] = ("text", "fb")
    end_when: str | None = None  # regex on serial output: failure reached -> settle, capture
    settle: float = 3.0  # seconds to wait after end_when before capture
    timeout: float = 180.0  # hard stop; capture anyway and record timed_out in meta
    boots: int = 1  # >1: the guest reboots and the serial log keeps every boot
    # lab extension: regex on serial output that means the run went wrong (e.g. an unexpected
    # panic in a scenario that should reach login): stop early, record it in meta.json
    abort_when: str | None = None


@dataclass(frozen=True)
class BuildContext:
    work: Path  # lab/work
    kernel: Kernel
    mode: str  # "text" | "fb"
    scratch: Path  # a per-run temp dir for images that the run may modify


REGISTRY: dict[str, Scenario] = {}


def register(s: Scenario) -> Scenario:
    """Add a scenario to the registry (names must be unique)."""
    if s.name in REGISTRY:
        raise ValueError(f"duplicate scenario name: {s.name}")
    REGISTRY[s.name] = s
    return s


# --------------------------------------------------------------------------- kernels

KERNEL_META = {"generic": "linux-image-amd64", "cloud": "linux-image-cloud-amd64"}


def _run(argv: list[str], cwd: Path | None = None) -> str:
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def _resolve_meta(meta: str) -> str:
    """Name of the versioned linux-image package the meta package depends on."""
    out = _run(["apt-cache", "depends", meta])
    for line in out.splitlines():
        m = re.match(r"\s*Depends:\s*(linux-image-\S+)", line)
        if m:
            return m.group(1)
    raise RuntimeError(f"cannot resolve {meta} to a kernel package")


def get_kernel(flavour: str, work: Path) -> Kernel:
    """Download (apt-get download) and extract (dpkg -x) a Debian kernel into ``work``.

    Cached: a second call reuses the extracted tree. Nothing is installed into the system.
    """
    if flavour not in KERNEL_META:
        raise ValueError(f"unknown kernel flavour {flavour!r}")
    base = work / "kernels" / flavour
    stamp = base / "kernel.json"
    with file_lock(work / "kernels" / f".{flavour}.lock"):
        if not stamp.exists():
            pkg = _resolve_meta(KERNEL_META[flavour])
            debs = work / "debs"
            debs.mkdir(parents=True, exist_ok=True)
            for old in debs.glob(f"{pkg}_*.deb"):
                old.unlink()
            _run(["apt-get", "download", pkg], cwd=debs)
            deb = next(debs.glob(f"{pkg}_*.deb"))
            root = base / "root"
            if root.exists():
                shutil.rmtree(root)
            root.mkdir(parents=True)
            _run(["dpkg", "-x", str(deb), str(root)])
            version = pkg.removeprefix("linux-image-")
            stamp.write_text(json.dumps({"version": version, "package": deb.name}))
        info = json.loads(stamp.read_text())
    root = base / "root"
    version = info["version"]
    return Kernel(
        flavour=flavour,
        version=version,
        package=info["package"],
        vmlinuz=root / "boot" / f"vmlinuz-{version}",
        modules=root / "lib" / "modules" / version,
    )


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Exclusive inter-process lock on ``path`` (parallel runs share lab/work)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# --------------------------------------------------------------------------- QMP


class QMPError(RuntimeError):
    pass


class QMP:
    """Minimal QMP client: one JSON object per line over a unix socket."""

    def __init__(
        self, path: Path, connect_timeout: float = 15.0, proc: subprocess.Popen | None = None
    ) -> None:
        deadline = time.monotonic() + connect_timeout
        last: OSError | None = None
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(str(path))
                break
            except OSError as exc:
                sock.close()
                last = exc
                if proc is not None and proc.poll() is not None:
                    raise QMPError(f"QEMU exited ({proc.returncode}) before QMP was up") from exc
                if time.monotonic() > deadline:
                    raise QMPError(f"cannot connect to QMP socket {path}: {last}") from exc
                time.sleep(0.1)
        sock.settimeout(30.0)
        self._sock = sock
        self._buf = b""
        greeting = self._read()
        if "QMP" not in greeting:
            raise QMPError(f"unexpected QMP greeting: {greeting}")
        self.command("qmp_capabilities")

    def _read(self) -> dict:
        while b"\n" not in self._buf:
            chunk = self._sock.recv(65536)
            if not chunk:
                raise QMPError("QMP connection closed")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)

    def command(self, name: str, **arguments: object) -> object:
        msg: dict[str, object] = {"execute": name}
        if arguments:
            msg["arguments"] = arguments
        self._sock.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            reply = self._read()
            if "event" in reply:
                continue
            if "error" in reply:
                raise QMPError(f"{name}: {reply['error']}")
            return reply.get("return")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()


# --------------------------------------------------------------------------- display helpers

TEXT_COLS, TEXT_ROWS = 80, 25
VGA_TEXT_BASE = 0xB8000
VGA_TEXT_SIZE = 0x8000
DISPLAY = {
    "text": {"width": 720, "height": 400, "cols": 80, "rows": 25},
    "fb": {"width": 1024, "height": 768, "cols": 128, "rows": 48},
}
CONSOLE_ARGS = {
    # vgacon's "no-scroll" disables hardware scrolling, so the visible page always starts
    # at 0xb8000 and the pmemsave dump matches the screen.
    "text": "console=tty0 console=ttyS0,115200 no-scroll",
    # 791 = 0x317: VESA 1024x768, 16 bpp (vesafb + fbcon: 128x48 with the 8x16 font)
    "fb": "console=tty0 console=ttyS0,115200 vga=791",
}


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    with open(path, "rb") as fh:
        head = fh.read(24)
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        raise ValueError(f"{path} is not a PNG")
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def decode_text_screen(vga: bytes, cols: int = TEXT_COLS, rows: int = TEXT_ROWS) -> str:
    """Decode the visible page of a VGA text buffer (char, attribute pairs) as CP437 text."""
    lines = []
    for row in range(rows):
        cells = vga[row * cols * 2 : (row + 1) * cols * 2]
        chars = bytes(max(b, 0x20) for b in cells[0::2])
        lines.append(chars.decode("cp437").rstrip())
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- runner

BOOT_MARKER = re.compile(rb"Linux version \d")
QEMU = "qemu-system-x86_64"


def qemu_version() -> str:
    out = _run([QEMU, "--version"])
    m = re.search(r"version (\S+)", out)
    return m.group(1) if m else out.splitlines()[0]


def build_argv(spec: BootSpec, kernel: Kernel, mode: str, serial: Path, qmp: Path) -> list[str]:
    argv = [
        QEMU,
        "-accel", "tcg",
        "-m", str(spec.memory_mb),
        "-smp", "1",
        "-display", "none",
        "-vga", "std",
        "-serial", f"file:{serial}",
        "-qmp", f"unix:{qmp},server=on,wait=off",
        "-monitor", "none",
        "-parallel", "none",
    ]  # fmt: skip
    if not spec.firmware_boot:
        append = f"{spec.append} {CONSOLE_ARGS[mode]}".strip()
        argv += ["-kernel", str(kernel.vmlinuz), "-append", append]
        if spec.initrd is not None:
            argv += ["-initrd", str(spec.initrd)]
    for drive in spec.drives:
        argv += ["-drive", drive]
    argv += list(spec.qemu_extra)
    return argv


def _last_boot(data: bytes, boots: int) -> bytes | None:
    """Serial output of boot number ``boots`` onwards, None while that boot has not started."""
    if boots <= 1:
        return data
    starts = [m.start() for m in BOOT_MARKER.finditer(data)]
    if len(starts) < boots:
        return None
    return data[starts[boots - 1] :]


KERNEL_TIME = re.compile(rb"^\[\s*(\d+\.\d+)\]", re.MULTILINE)


def _kernel_time_before(data: bytes, end: int) -> float | None:
    """The last printk timestamp that starts a line before offset ``end``."""
    last = None
    for m in KERNEL_TIME.finditer(data, 0, end):
        last = m
    return float(last.group(1)) if last else None


@dataclass(frozen=True)
class RunResult:
    scenario: str
    mode: str
    out: Path
    seconds_to_failure: float | None
    timed_out: bool
    meta: dict
    aborted_on: str | None = None


def run_scenario(
    scenario: Scenario,
    mode: str,
    work: Path = WORK_DIR,
    out_root: Path = OUT_DIR,
    log: Callable[[str], None] = print,
) -> RunResult:
    """Boot one scenario in one display mode and capture serial, screen and meta.json."""
    if mode not in DISPLAY:
        raise ValueError(f"unknown mode {mode!r}")
    kernel = get_kernel(scenario.kernel, work)
    out = out_root / f"{scenario.name}__{mode}"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    scratch_root = work / "scratch"
    scratch_root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f"{scenario.name}__{mode}.", dir=scratch_root))
    # unix socket paths are limited to ~108 bytes: keep the socket in /tmp
    sockdir = Path(tempfile.mkdtemp(prefix="lab-qmp."))
    try:
        spec = scenario.build(BuildContext(work=work, kernel=kernel, mode=mode, scratch=scratch))
        serial = out / "serial.log"
        qmp_path = sockdir / "qmp.sock"
        argv = build_argv(spec, kernel, mode, serial, qmp_path)
        log(f"[{scenario.name}__{mode}] starting: {' '.join(argv)}")
        result = _boot_and_capture(scenario, mode, kernel, argv, out, qmp_path, log)
        return result
    finally:
        shutil.rmtree(sockdir, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)


def _boot_and_capture(
    scenario: Scenario,
    mode: str,
    kernel: Kernel,
    argv: list[str],
    out: Path,
    qmp_path: Path,
    log: Callable[[str], None],
) -> RunResult:
    serial = out / "serial.log"
    pattern = re.compile(scenario.end_when.encode()) if scenario.end_when else None
    abort = re.compile(scenario.abort_when.encode()) if scenario.abort_when else None
    aborted: str | None = None
    guest_seconds: float | None = None
    stderr_path = out / "qemu.stderr"
    started_wall = datetime.now(UTC)
    t0 = time.monotonic()
    seconds: float | None = None
    timed_out = False
    qmp: QMP | None = None
    with open(stderr_path, "wb") as err:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err, start_new_session=True
        )
    try:
        try:
            qmp = QMP(qmp_path, proc=proc)
        except QMPError as exc:
            raise RuntimeError(f"{exc}: {stderr_path.read_text()[-2000:]}") from exc
        while True:
            elapsed = time.monotonic() - t0
            if proc.poll() is not None:
                raise RuntimeError(
                    f"QEMU exited early ({proc.returncode}): {stderr_path.read_text()[-2000:]}"
                )
            data = serial.read_bytes() if serial.exists() else b""
            if pattern is not None:
                tail = _last_boot(data, scenario.boots)
                if tail is not None and (match := pattern.search(tail)):
                    seconds = round(elapsed, 1)
                    guest_seconds = _kernel_time_before(tail, match.end())
                    log(f"[{scenario.name}__{mode}] end condition after {seconds}s")
                    time.sleep(scenario.settle)
                    break
            if abort is not None and (m := abort.search(data)):
                aborted = m.group(0).decode(errors="replace")
                log(f"[{scenario.name}__{mode}] ABORTED after {round(elapsed, 1)}s: {aborted}")
                time.sleep(scenario.settle)
                break
            if elapsed > scenario.timeout:
                timed_out = pattern is not None
                log(f"[{scenario.name}__{mode}] stop after {round(elapsed, 1)}s (timeout)")
                break
            time.sleep(0.1)
        # freeze the guest so the screenshot and the text buffer show the same moment
        qmp.command("stop")
        png = out / "screen.png"
        qmp.command("screendump", filename=str(png), format="png")
        if mode == "text":
            vga = out / "vga.bin"
            qmp.command("pmemsave", val=VGA_TEXT_BASE, size=VGA_TEXT_SIZE, filename=str(vga))
            _wait_for_file(vga, VGA_TEXT_SIZE)
            (out / "screen.txt").write_text(decode_text_screen(vga.read_bytes()))
        _wait_for_file(png, 100)
        with contextlib.suppress(QMPError, OSError):
            qmp.command("quit")
    finally:
        if qmp is not None:
            qmp.close()
        _terminate(proc)
    log_bytes = serial.read_bytes()
    consoles = re.findall(rb"Console: ([^\r\n]*)", _last_boot(log_bytes, scenario.boots) or b"")
    width, height = png_size(out / "screen.png")
    disp = dict(DISPLAY[mode])
    disp.update(width=width, height=height)
    meta = {
        "scenario": scenario.name,
        "description": scenario.description,
        "mode": mode,
        "kernel": {"flavour": kernel.flavour, "version": kernel.version, "package": kernel.package},
        "qemu_version": qemu_version(),
        "command_line": argv,
        "display": {"mode": mode, **disp},
        "seconds_to_failure": seconds,
        # the guest's own clock (last printk timestamp before the end condition, in its boot)
        "guest_seconds_at_failure": guest_seconds,
        "timed_out": timed_out,
        "aborted_on": aborted,
        "expect": {"status": scenario.expect_status, "category": scenario.expect_category},
        "boots": scenario.boots,
        "boots_seen": len(BOOT_MARKER.findall(log_bytes)),
        # what the kernel said about its display console (last boot), e.g. "colour VGA+ 80x25",
        # "switching to colour frame buffer device 128x48", or only "colour dummy device 80x25"
        "kernel_console": consoles[-1].decode(errors="replace").strip() if consoles else None,
        "created": started_wall.replace(microsecond=0).isoformat(),
        "trimmed": False,
        "source": "real QEMU TCG run by lab/, see tests/fixtures/README.md",
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return RunResult(scenario.name, mode, out, seconds, timed_out, meta, aborted)


def _wait_for_file(path: Path, min_size: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.stat().st_size >= min_size:
            return
        time.sleep(0.05)
    raise RuntimeError(f"{path} was not written")


def _terminate(proc: subprocess.Popen) -> None:
    """Make sure QEMU is gone: wait briefly for a clean quit, then SIGTERM, then SIGKILL."""
    for sig in (None, signal.SIGTERM, signal.SIGKILL):
        if sig is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
        try:
            proc.wait(timeout=5)
            return
        except subprocess.TimeoutExpired:
            continue


# --------------------------------------------------------------------------- fixtures

SERIAL_TRIM_LIMIT = 200 * 1024
TRIM_HEAD = 16 * 1024


def trim_serial(data: bytes, limit: int = SERIAL_TRIM_LIMIT) -> tuple[bytes, bool]:
    """Keep the head and the tail of an over-long serial log, with a visible cut marker."""
    if len(data) <= limit:
        return data, False
    cut = len(data) - (limit - TRIM_HEAD)
    head = data[:TRIM_HEAD]
    head = head[: head.rfind(b"\n") + 1] or head
    tail = data[cut:]
    tail = tail[tail.find(b"\n") + 1 :]
    dropped = len(data) - len(head) - len(tail)
    marker = f"[... lab: {dropped} bytes of serial output trimmed ...]\n".encode()
    return head + marker + tail, True


FIXTURE_FILES = ("serial.log", "screen.png", "vga.bin", "screen.txt")


def write_fixture(run_dir: Path, fixtures_root: Path = FIXTURES_DIR) -> Path:
    """Copy one run directory into tests/fixtures/lab/, trimming the serial log if needed."""
    dest = fixtures_root / run_dir.name
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    meta = json.loads((run_dir / "meta.json").read_text())
    serial, trimmed = trim_serial((run_dir / "serial.log").read_bytes())
    (dest / "serial.log").write_bytes(serial)
    for name in FIXTURE_FILES[1:]:
        if (run_dir / name).exists():
            shutil.copyfile(run_dir / name, dest / name)
    meta["trimmed"] = trimmed
    (dest / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return dest
