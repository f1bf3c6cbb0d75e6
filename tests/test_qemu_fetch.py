"""The qemu fetcher against dead and silent sockets, and against real QEMU processes that are
started paused (-S): no guest kernel is needed, so these run in a second or two each.

The live tests that boot real failing guests are in test_qemu_live.py.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from diagnose.errors import FetchError, UsageError
from diagnose.fetchers import _png, get_fetcher
from diagnose.fetchers.qemu import fetch_qemu, read_serial_log, serial_sources

try:
    import qemu.qmp  # noqa: F401
except ImportError:
    if os.environ.get("CI"):
        raise  # CI installs the qemu extra: these tests must run there
    pytest.skip("qemu.qmp is not installed (pip install 'diagnose[qemu]')",
                allow_module_level=True)

QEMU = "qemu-system-x86_64"


def _need_qemu() -> None:
    if shutil.which(QEMU) is None:
        if os.environ.get("CI"):
            pytest.fail(f"{QEMU} is missing in CI (scripts/setup.sh --test installs it)")
        pytest.skip(f"{QEMU} is not installed")


@pytest.fixture
def sockdir() -> Iterator[Path]:
    # AF_UNIX paths are limited to 108 bytes: pytest's tmp_path can be longer
    path = Path(tempfile.mkdtemp(prefix="dq-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@contextmanager
def paused_qemu(qmp: Path, *extra: str, cwd: Path | None = None, pass_fds: tuple[int, ...] = (),
                user: str | None = None) -> Iterator[subprocess.Popen]:
    """A real QEMU, stopped before the guest runs (-S), with a QMP socket at ``qmp``."""
    _need_qemu()
    argv = [QEMU, "-S", "-machine", "pc", "-accel", "tcg", "-display", "none", "-vga", "std",
            "-monitor", "none", "-parallel", "none",
            "-qmp", f"unix:{qmp},server=on,wait=off", *extra]
    if user is not None:
        entry = pwd.getpwnam(user)
        argv = ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}",
                "--clear-groups", *argv]
    proc = subprocess.Popen(argv, cwd=cwd, pass_fds=pass_fds, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 15
        while not qmp.exists():
            if proc.poll() is not None:
                raise RuntimeError(f"QEMU exited: {proc.stderr.read().decode()[-500:]}")
            if time.monotonic() > deadline:
                raise RuntimeError("QEMU did not create its QMP socket")
            time.sleep(0.05)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        proc.stderr.close()


# --------------------------------------------------------------------------------------------
# Dead, stale and silent sockets


def test_missing_socket_is_one_line_error(sockdir):
    with pytest.raises(FetchError, match="no such file") as info:
        fetch_qemu(str(sockdir / "nope.sock"))
    assert "\n" not in str(info.value)


def test_stale_socket_is_refused(sockdir):
    path = sockdir / "stale.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.close()  # the file stays, nobody listens: what a crashed QEMU leaves behind
    with pytest.raises(FetchError, match="connection refused"):
        fetch_qemu(str(path))


def test_not_a_socket(sockdir):
    path = sockdir / "file"
    path.write_text("x")
    with pytest.raises(FetchError, match="not a unix socket"):
        fetch_qemu(str(path))


def test_silent_socket_times_out(sockdir):
    path = sockdir / "silent.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)  # accepts connections (backlog) but never says a word
    try:
        t0 = time.monotonic()
        with pytest.raises(FetchError, match=r"no QMP greeting within 0\.5 s") as info:
            fetch_qemu(str(path), timeout=0.5)
        assert time.monotonic() - t0 < 5
        assert "\n" not in str(info.value)
    finally:
        server.close()


def _serve(path: Path, behaviour: str) -> threading.Thread:
    """A one-shot unix server: 'garbage' says nonsense; 'mute' greets, negotiates, then says
    nothing more (QEMU stuck in a long command)."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)

    def run() -> None:
        conn, _ = server.accept()
        with conn:
            if behaviour == "garbage":
                conn.sendall(b"220 smtp.example ESMTP\r\n")
                time.sleep(0.5)
                return
            greeting = {"QMP": {"version": {"qemu": {"major": 7, "minor": 2, "micro": 0},
                                            "package": ""}, "capabilities": []}}
            conn.sendall(json.dumps(greeting).encode() + b"\r\n")
            buf = b""
            while b"\n" not in buf and b"}" not in buf:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                buf += chunk
            request = json.loads(buf.split(b"\n")[0])
            reply = {"return": {}}
            if "id" in request:
                reply["id"] = request["id"]
            conn.sendall(json.dumps(reply).encode() + b"\r\n")
            conn.settimeout(5)
            try:
                while conn.recv(4096):
                    pass  # read commands, answer none
            except OSError:
                pass
        server.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_not_qmp_is_clear_error(sockdir):
    path = sockdir / "smtp.sock"
    _serve(path, "garbage")
    with pytest.raises(FetchError, match="not a working QMP monitor"):
        fetch_qemu(str(path), timeout=3)


def test_command_timeout_names_the_command(sockdir):
    path = sockdir / "mute.sock"
    _serve(path, "mute")
    t0 = time.monotonic()
    with pytest.raises(FetchError, match=r"did not answer query-version within 0\.7 s"):
        fetch_qemu(str(path), timeout=0.7)
    assert time.monotonic() - t0 < 5


def test_bad_arguments():
    with pytest.raises(UsageError):
        fetch_qemu("")
    with pytest.raises(UsageError):
        fetch_qemu("/tmp/x.sock", timeout=0)


def test_second_client_times_out_while_first_holds_the_monitor(sockdir):
    qmp = sockdir / "qmp.sock"
    with paused_qemu(qmp):
        holder = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        holder.connect(str(qmp))
        try:
            holder.recv(4096)  # the greeting went to the first client
            with pytest.raises(FetchError, match="another client"):
                fetch_qemu(str(qmp), timeout=1)
        finally:
            holder.close()


# --------------------------------------------------------------------------------------------
# Real QEMU (paused)


def test_paused_vm_facts_screenshot_and_discovered_relative_serial(sockdir, tmp_path):
    qmp = sockdir / "qmp.sock"
    with paused_qemu(qmp, "-name", "guest=web-01", "-serial", "file:rel-serial.log",
                     cwd=tmp_path):
        log = tmp_path / "rel-serial.log"
        deadline = time.monotonic() + 5
        while not log.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        with open(log, "ab") as fh:  # QEMU opened (and truncated) it; the guest would write
            fh.write(b"[    0.000000] Linux version 6.1.0 (test)\n")
        ev = fetch_qemu(str(qmp), timeout=5)
        version = subprocess.run([QEMU, "--version"], capture_output=True, text=True).stdout
    facts = dict(ev.subject.facts)
    assert ev.subject.kind == "qemu" and ev.subject.name == "web-01"
    assert facts["vm_name"] == "web-01"
    assert facts["status"] == "prelaunch"
    assert facts["qmp_socket"] == str(qmp)
    assert version.split("version ", 1)[1].startswith(facts["qemu_version"])
    console, shot = ev.artifacts
    assert console.available and console.origin == str(tmp_path / "rel-serial.log")
    assert console.detail["discovered"] is True
    assert ev.console == b"[    0.000000] Linux version 6.1.0 (test)\n"
    assert facts["serial_log"] == str(tmp_path / "rel-serial.log")
    assert shot.available and shot.detail["format"] == "png"
    assert shot.detail["via"] == "file"  # QEMU runs as our user: it writes into our temp dir
    assert _png.png_size(ev.screenshot) == (shot.detail["width"], shot.detail["height"])
    assert ev.skip_reason is None


def test_explicit_serial_log_wins_and_registry_strips_prefix(sockdir, tmp_path):
    qmp = sockdir / "qmp.sock"
    named = tmp_path / "named.log"
    named.write_bytes(b"from the named file\n")
    with paused_qemu(qmp, "-serial", f"file:{tmp_path / 'other.log'}"):
        ev = get_fetcher("qemu").fetch(f"qemu:{qmp}", serial_log=str(named), timeout=5)
    assert ev.console == b"from the named file\n"
    assert ev.artifacts[0].origin == str(named)
    assert "discovered" not in ev.artifacts[0].detail


def test_logfile_of_a_pty_chardev_is_found(sockdir, tmp_path):
    qmp = sockdir / "qmp.sock"
    log = tmp_path / "pty.log"
    with paused_qemu(qmp, "-chardev", f"pty,id=con0,logfile={log},logappend=on",
                     "-serial", "chardev:con0"):
        ev = fetch_qemu(str(qmp), timeout=5)
    assert ev.artifacts[0].available and ev.artifacts[0].origin == str(log)


def test_fdset_serial_is_resolved_through_proc(sockdir, tmp_path):
    # what libvirt does: QEMU gets an open fd (-add-fd) and path=/dev/fdset/N
    qmp = sockdir / "qmp.sock"
    log = tmp_path / "passed.log"
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        with paused_qemu(qmp, "-add-fd", f"set=3,fd={fd},opaque=serial0-source",
                         "-chardev", "file,id=charserial0,path=/dev/fdset/3,append=on",
                         "-device", json.dumps({"driver": "isa-serial", "chardev": "charserial0",
                                                "id": "serial0", "index": 0}),
                         pass_fds=(fd,)):
            os.write(fd, b"written through the passed descriptor\n")
            ev = fetch_qemu(str(qmp), timeout=5)
    finally:
        os.close(fd)
    assert ev.artifacts[0].origin == str(log)
    assert ev.console == b"written through the passed descriptor\n"


def test_no_file_serial_gives_reason_and_keeps_screenshot(sockdir):
    qmp = sockdir / "qmp.sock"
    with paused_qemu(qmp, "-serial", "pty"):
        ev = fetch_qemu(str(qmp), timeout=5)
    console, shot = ev.artifacts
    assert not console.available and ev.console is None
    assert "--serial-log" in console.reason and "pty" in console.reason
    assert shot.available and ev.skip_reason is None


def test_missing_named_serial_log_is_a_reason(sockdir, tmp_path):
    qmp = sockdir / "qmp.sock"
    with paused_qemu(qmp):
        ev = fetch_qemu(str(qmp), serial_log=str(tmp_path / "absent.log"), timeout=5)
    assert not ev.artifacts[0].available
    assert "no such file" in ev.artifacts[0].reason
    assert ev.artifacts[1].available


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to start QEMU as another user")
@pytest.mark.parametrize("log_owner", ["nobody", "root"])
def test_qemu_as_another_user(sockdir, log_owner):
    """QEMU as 'nobody': the screenshot comes through a passed fd, and a discovered serial log
    is read only when QEMU's user owns it (else the command line could name any file)."""
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv is not installed")
    os.chmod(sockdir, 0o777)  # the unprivileged QEMU creates its socket and log here
    qmp = sockdir / "qmp.sock"
    log = sockdir / "serial.log"
    if log_owner == "root":
        log.write_bytes(b"")
        os.chmod(log, 0o666)  # QEMU can write it, but it is root's file
    with paused_qemu(qmp, "-serial", f"file:{log}", user="nobody"):
        # one round trip first: QEMU answers QMP only once every chardev is open (and the
        # serial file truncated), so the line below cannot be lost to that truncation
        fetch_qemu(str(qmp), timeout=5)
        with open(log, "ab") as fh:
            fh.write(b"console line\n")
        ev = fetch_qemu(str(qmp), timeout=5)
        named = fetch_qemu(str(qmp), serial_log=str(log), timeout=5)
    shot = ev.artifacts[1]
    assert shot.available, shot.reason
    assert shot.detail["via"] == "add-fd"  # nobody cannot write into our private temp dir
    assert dict(ev.subject.facts)["status"] == "prelaunch"
    if log_owner == "nobody":
        assert ev.console == b"console line\n"
    else:
        assert ev.console is None and "not owned by QEMU's user" in ev.artifacts[0].reason
    assert named.console == b"console line\n"  # the user's own choice is always read


def test_ppm_conversion_matches_qemus_own_png(sockdir, tmp_path):
    """The same paused screen dumped as PPM (converted here) and as PNG by QEMU: same pixels."""
    qmp = sockdir / "qmp.sock"
    with paused_qemu(qmp):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(str(qmp))
        f = sock.makefile("rwb")
        f.readline()

        def cmd(name, **args):
            f.write(json.dumps({"execute": name, "arguments": args}).encode() + b"\n")
            f.flush()
            while True:
                reply = json.loads(f.readline())
                if "event" not in reply:
                    assert "error" not in reply, reply
                    return reply["return"]

        cmd("qmp_capabilities")
        cmd("screendump", filename=str(tmp_path / "s.ppm"))
        cmd("screendump", filename=str(tmp_path / "s.png"), format="png")
        sock.close()
    converted = _png.decode_png(_png.ppm_to_png((tmp_path / "s.ppm").read_bytes()))
    native = _png.decode_png((tmp_path / "s.png").read_bytes())
    assert converted[:2] == native[:2]
    # QEMU's PNG may carry alpha; compare the colour channels
    rgb = native[3] if native[2] == 3 else bytes(
        b for i, b in enumerate(native[3]) if i % 4 != 3)
    assert converted[3] == rgb


# --------------------------------------------------------------------------------------------
# Pieces


def test_read_serial_log_keeps_the_tail_from_a_line_start(tmp_path):
    log = tmp_path / "big.log"
    lines = [f"line {i:06d} ".encode() + b"x" * 50 + b"\n" for i in range(30000)]
    log.write_bytes(b"".join(lines))
    data, art = read_serial_log(str(log), limit=64 * 1024)
    assert len(data) <= 64 * 1024
    assert data.startswith(b"line ") and data.endswith(lines[-1])
    assert art.detail["truncated"] is True
    assert art.detail["file_bytes"] == log.stat().st_size
    assert art.detail["skipped_bytes"] == log.stat().st_size - len(data)


def test_read_serial_log_refuses_fifo_without_hanging(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    data, art = read_serial_log(str(fifo))
    assert data is None and "not a regular file" in art.reason


def test_serial_sources_from_libvirt_command_line():
    # trimmed from the command line libvirt 9.0.0 gave QEMU 7.2 on this project's machine
    argv = [
        "/usr/bin/qemu-system-x86_64", "-name", "guest=diag-vm1,debug-threads=on", "-S",
        "-chardev", "socket,id=charmonitor,fd=29,server=on,wait=off",
        "-mon", "chardev=charmonitor,id=monitor,mode=control",
        "-add-fd", "set=0,fd=30,opaque=serial0-source",
        "-chardev", "file,id=charserial0,path=/dev/fdset/0,append=on",
        "-device", '{"driver":"isa-serial","chardev":"charserial0","id":"serial0","index":0}',
        "-add-fd", "set=1,fd=31,opaque=serial1-log",
        "-chardev", "pty,id=charserial1,logfile=/dev/fdset/1,logappend=on",
        "-device", '{"driver":"isa-serial","chardev":"charserial1","id":"serial1","index":1}',
    ]
    assert [(s.label, s.path, s.role) for s in serial_sources(argv)] == [
        ("charserial0", "/dev/fdset/0", "serial"), ("charserial1", "/dev/fdset/1", "serial")]


def test_serial_sources_order_and_monitor_exclusion():
    argv = [
        "qemu-system-x86_64",
        "-chardev", "file,id=mon0,path=/var/log/monitor.log", "-mon", "chardev=mon0",
        "-chardev", "file,id=other,path=/var/log/other.log",
        "-chardev", "socket,id=hvc,path=/run/hvc.sock,server=on,wait=off,logfile=/l/hvc.log",
        "-device", "virtconsole,chardev=hvc",
        "-serial", "none",
        "-serial", "mon:file:/l/with,,comma.log",
        "--serial=file:/l/second.log",
    ]
    got = [(s.label, s.path, s.role) for s in serial_sources(argv)]
    assert got == [
        ("serial0", "/l/with,,comma.log", "serial"),
        ("serial1", "/l/second.log", "serial"),
        ("hvc", "/l/hvc.log", "console"),
        ("other", "/var/log/other.log", "other"),
    ]
    # keyval escapes: ",," inside a -chardev value is a literal comma
    argv = ["qemu", "-chardev", "file,id=c,path=/l/a,,b.log", "-serial", "chardev:c"]
    assert serial_sources(argv)[0].path == "/l/a,b.log"
