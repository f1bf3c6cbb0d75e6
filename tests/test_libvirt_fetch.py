"""The libvirt fetcher through libvirt itself.

Most tests use libvirt's built-in ``test:///default`` driver (libvirt's own code, no daemon):
domains defined there take our XML, report state and answer virDomainScreenshot. The live test
at the end boots the lab's vfs-panic guest under a real libvirtd (qemu:///system) and is skipped
when no libvirtd answers there.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from diagnose.errors import FetchError, UsageError
from diagnose.fetchers import _png, get_fetcher
from diagnose.fetchers.libvirt import _serial, fetch_libvirt

libvirt = pytest.importorskip("libvirt")

REPO = Path(__file__).resolve().parents[1]
TEST_URI = "test:///default"


@pytest.fixture
def test_conn():
    """A connection that keeps test:///default's state alive while the fetcher opens its own."""
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    conn = libvirt.open(TEST_URI)
    created: list = []
    yield conn, created
    for dom in created:
        try:
            if dom.isActive():
                dom.destroy()
            dom.undefine()
        except libvirt.libvirtError:
            pass
    conn.close()


def _define(test_conn, devices: str, start: bool = True):
    conn, created = test_conn
    name = f"diag-{uuid.uuid4().hex[:8]}"
    dom = conn.defineXML(f"<domain type='test'><name>{name}</name><memory>65536</memory>"
                         f"<os><type>hvm</type></os><devices>{devices}</devices></domain>")
    created.append(dom)
    if start:
        dom.create()
    return name, dom


def test_running_domain_with_file_serial(test_conn, tmp_path):
    log = tmp_path / "ttyS0.log"
    log.write_bytes(b"[    1.000000] Kernel panic - not syncing: VFS: Unable to mount root fs\n")
    name, dom = _define(test_conn, f"<serial type='file'><source path='{log}'/>"
                                   "<target port='0'/></serial>")
    ev = fetch_libvirt(name, connect=TEST_URI, timeout=5)
    facts = dict(ev.subject.facts)
    assert ev.subject.kind == "qemu" and ev.subject.name == name
    assert facts["status"] == "running" and facts["libvirt_uri"] == TEST_URI
    assert facts["uuid"] == dom.UUIDString() and facts["serial_log"] == str(log)
    console, shot = ev.artifacts
    assert console.available and ev.console == log.read_bytes()
    assert shot.available and shot.detail["format"] == "png"
    assert _png.png_size(ev.screenshot) == (shot.detail["width"], shot.detail["height"])
    # by UUID, through the registry, with the CLI's prefix
    again = get_fetcher("libvirt").fetch(f"libvirt:{dom.UUIDString()}", connect=TEST_URI)
    assert again.subject.name == name


def test_shut_off_domain_still_gives_its_log(test_conn, tmp_path):
    log = tmp_path / "pty.log"
    log.write_bytes(b"last words\n")
    name, _ = _define(test_conn, f"<serial type='pty'><log file='{log}'/><target port='0'/>"
                                 "</serial>", start=False)
    ev = fetch_libvirt(name, connect=TEST_URI, timeout=5)
    assert dict(ev.subject.facts)["status"] == "shutoff"
    assert ev.console == b"last words\n"
    assert not ev.artifacts[1].available and "not running" in ev.artifacts[1].reason
    assert ev.skip_reason is None


def test_paused_domain_state_and_missing_log(test_conn, tmp_path):
    name, dom = _define(test_conn, f"<serial type='file'><source path='{tmp_path / 'no.log'}'/>"
                                   "<target port='0'/></serial>")
    dom.suspend()
    ev = fetch_libvirt(name, connect=TEST_URI, timeout=5)
    facts = dict(ev.subject.facts)
    assert facts["status"] == "paused" and facts["state_reason"] == "user"
    assert not ev.artifacts[0].available and "no such file" in ev.artifacts[0].reason
    assert ev.artifacts[1].available


def test_no_serial_device_reason(test_conn):
    name, _ = _define(test_conn, "", start=False)
    ev = fetch_libvirt(name, connect=TEST_URI, timeout=5)
    assert ev.console is None and ev.screenshot is None
    assert "log file" in ev.artifacts[0].reason
    assert ev.skip_reason and "console:" in ev.skip_reason and "screenshot:" in ev.skip_reason


def test_unknown_domain_and_bad_uri():
    with pytest.raises(FetchError, match="no domain named 'no-such-vm'"):
        fetch_libvirt("no-such-vm", connect=TEST_URI)
    with pytest.raises(FetchError, match="cannot connect") as info:
        fetch_libvirt("x", connect="qemu+unix:///system?socket=/nonexistent/libvirt.sock")
    assert "\n" not in str(info.value)
    with pytest.raises(UsageError):
        fetch_libvirt("")


def test_silent_daemon_times_out():
    sockdir = Path(tempfile.mkdtemp(prefix="dq-lv-"))
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(sockdir / "s.sock"))
    server.listen(1)  # accepts, never answers the RPC
    try:
        t0 = time.monotonic()
        with pytest.raises(FetchError, match=r"did not finish within 0\.5 s"):
            fetch_libvirt("vm1", connect=f"qemu+unix:///system?socket={sockdir}/s.sock",
                          timeout=0.5)
        assert time.monotonic() - t0 < 5
    finally:
        server.close()
        shutil.rmtree(sockdir, ignore_errors=True)


def test_remote_host_log_is_not_read_here():
    xml = ("<domain><devices><serial type='file'><source path='/var/log/vm.log'/></serial>"
           "</devices></domain>")
    data, art = _serial(xml, "qemu+ssh://kvm-host-7/system")
    assert data is None and "kvm-host-7" in art.reason


# --------------------------------------------------------------------------------------------
# Live: a real libvirtd


def _system_conn():
    try:
        return libvirt.open("qemu:///system")
    except libvirt.libvirtError as exc:
        pytest.skip(f"no libvirtd on qemu:///system: {exc.get_error_message()}")


@pytest.mark.slow
def test_vfs_panic_under_real_libvirtd():
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    conn = _system_conn()
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from diagnose.pipeline import Analyzer
    from lab import core
    from lab.busybox import make_ext4

    kernel = core.get_kernel("generic", core.WORK_DIR)
    # libvirt runs QEMU as its own user and relabels the files: use copies in an open directory
    work = Path(tempfile.mkdtemp(prefix="dq-libvirt-"))
    os.chmod(work, 0o755)
    name = f"diag-live-{uuid.uuid4().hex[:6]}"
    dom = None
    try:
        shutil.copyfile(kernel.vmlinuz, work / "vmlinuz")
        make_ext4(work / "root.img", 16, {"etc/hostname": b"lab\n"})
        serial = work / "serial0.log"
        xml = f"""<domain type='qemu'>
  <name>{name}</name><memory unit='MiB'>256</memory><vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><kernel>{work}/vmlinuz</kernel>
    <cmdline>root=/dev/vda rw panic=0 console=tty0 console=ttyS0,115200</cmdline></os>
  <on_crash>preserve</on_crash>
  <devices>
    <disk type='file' device='disk'><driver name='qemu' type='raw'/>
      <source file='{work}/root.img'/><target dev='vda' bus='virtio'/></disk>
    <serial type='file'><source path='{serial}'/><target port='0'/></serial>
    <video><model type='vga'/></video>
  </devices>
</domain>"""
        dom = conn.createXML(xml, 0)  # transient: gone when destroyed
        deadline = time.monotonic() + 240
        while not re.search(rb"Kernel panic - not syncing: VFS",
                            serial.read_bytes() if serial.exists() else b""):
            assert time.monotonic() < deadline, "the guest did not panic in time"
            time.sleep(0.2)
        time.sleep(2)
        ev = fetch_libvirt(name, connect="qemu:///system", timeout=10)
    finally:
        if dom is not None:
            try:
                dom.destroy()
            except libvirt.libvirtError:
                pass
        conn.close()
        shutil.rmtree(work, ignore_errors=True)
    facts = dict(ev.subject.facts)
    assert facts["status"] in ("running", "crashed", "paused")
    assert facts["serial_log"] == str(serial)
    assert ev.artifacts[1].available and _png.png_size(ev.screenshot) == (720, 400)
    verdict = Analyzer.load().analyse(ev).verdict
    assert (verdict.status, verdict.category) == ("failed", "kernel-panic-vfs")
