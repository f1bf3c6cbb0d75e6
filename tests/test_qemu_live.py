"""Live: boot real lab scenarios (real Debian kernel, QEMU TCG) with a QMP socket and a serial
log file, leave them running, diagnose them through the qemu fetcher and the pipeline, tear down.

The kernel comes from the lab's getter (apt-get download into lab/work on first use). Without
qemu-system-x86_64 the tests skip, except in CI (CI set), where they fail.
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from diagnose.fetchers import _png, get_fetcher
from diagnose.fetchers.qemu import fetch_qemu
from diagnose.pipeline import Analyzer

try:
    import qemu.qmp  # noqa: F401
except ImportError:
    if os.environ.get("CI"):
        raise  # CI installs the qemu extra: these tests must run there
    pytest.skip("qemu.qmp is not installed (pip install 'diagnose[qemu]')",
                allow_module_level=True)

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

QEMU = "qemu-system-x86_64"


def _need_qemu() -> None:
    if shutil.which(QEMU) is None:
        if os.environ.get("CI"):
            pytest.fail(f"{QEMU} is missing in CI (scripts/setup.sh --test installs it)")
        pytest.skip(f"{QEMU} is not installed")


@dataclass
class LiveVM:
    name: str
    qmp: Path
    serial: Path
    proc: subprocess.Popen
    seconds_to_failure: float
    expect_status: str
    expect_category: str


@contextmanager
def live_vm(name: str, tmp: Path, mode: str = "text") -> Iterator[LiveVM]:
    """Boot lab scenario ``name`` and yield it once its failure shows on the serial log.

    The VM keeps running (the lab's own runner stops it before capturing; here the fetcher is
    what captures). Teardown: SIGTERM, then SIGKILL.
    """
    _need_qemu()
    from lab import core

    importlib.import_module("lab.scenarios")
    scenario = core.REGISTRY[name]
    kernel = core.get_kernel(scenario.kernel, core.WORK_DIR)
    scratch = tmp / "scratch"
    scratch.mkdir()
    spec = scenario.build(core.BuildContext(work=core.WORK_DIR, kernel=kernel, mode=mode,
                                            scratch=scratch))
    sockdir = Path(tempfile.mkdtemp(prefix="dq-live-"))  # AF_UNIX paths: 108 bytes at most
    qmp = sockdir / "qmp.sock"
    serial = tmp / "serial.log"
    argv = core.build_argv(spec, kernel, mode, serial, qmp)
    stderr = open(tmp / "qemu.stderr", "wb")  # closed in finally
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr,
                            start_new_session=True)
    try:
        end = re.compile(scenario.end_when.encode())
        t0 = time.monotonic()
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"QEMU exited ({proc.returncode}): "
                                   f"{(tmp / 'qemu.stderr').read_text()[-1000:]}")
            data = serial.read_bytes() if serial.exists() else b""
            if end.search(data):
                break
            if time.monotonic() - t0 > scenario.timeout:
                raise RuntimeError(f"{name}: no {scenario.end_when!r} within {scenario.timeout}s; "
                                   f"serial tail: {data[-800:]!r}")
            time.sleep(0.1)
        seconds = time.monotonic() - t0
        time.sleep(min(scenario.settle, 3.0))  # let the panic trace / prompt finish drawing
        yield LiveVM(name, qmp, serial, proc, seconds, scenario.expect_status,
                     scenario.expect_category)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        stderr.close()
        shutil.rmtree(sockdir, ignore_errors=True)


@pytest.fixture(scope="module")
def analyzer() -> Analyzer:
    return Analyzer.load()


def _qemu_version() -> str:
    out = subprocess.run([QEMU, "--version"], capture_output=True, text=True).stdout
    return re.search(r"version (\d+\.\d+\.\d+)", out).group(1)


def test_vfs_panic_live(tmp_path, analyzer):
    """The user's command: diagnose qemu:/path/qmp.sock --serial-log /path/serial.log."""
    t0 = time.monotonic()
    with live_vm("vfs-panic", tmp_path) as vm:
        evidence = get_fetcher("qemu").fetch(f"qemu:{vm.qmp}", serial_log=str(vm.serial),
                                             timeout=10)
        # the same VM without naming the log: found on QEMU's command line
        discovered = fetch_qemu(str(vm.qmp))
        assert vm.proc.poll() is None  # the fetcher did not stop or kill the VM
    facts = dict(evidence.subject.facts)
    assert evidence.subject.kind == "qemu"
    assert facts["qmp_socket"] == str(vm.qmp)
    assert facts["status"] in ("running", "guest-panicked")
    assert facts["qemu_version"] == _qemu_version()
    console, shot = evidence.artifacts
    assert console.available and console.origin == str(vm.serial)
    assert b"Kernel panic - not syncing: VFS" in evidence.console
    assert shot.available and shot.detail["format"] == "png"
    assert _png.png_size(evidence.screenshot) == (720, 400)  # VGA text mode, 80x25 cells
    assert discovered.artifacts[0].origin == str(vm.serial)
    assert discovered.artifacts[0].detail["discovered"] is True

    diagnosis = analyzer.analyse(evidence)
    assert (diagnosis.verdict.status, diagnosis.verdict.category) == ("failed",
                                                                       "kernel-panic-vfs")
    # the screenshot alone tells the same story
    screen_only = analyzer.analyse(type(evidence)(evidence.subject, None, evidence.screenshot,
                                                  evidence.artifacts))
    assert screen_only.verdict.category == "kernel-panic-vfs"
    print(f"\nvfs-panic live: failure after {vm.seconds_to_failure:.1f}s, "
          f"whole test {time.monotonic() - t0:.1f}s")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["init-exits", "no-working-init", "healthy-login"])
def test_lab_scenarios_live(name, tmp_path, analyzer):
    t0 = time.monotonic()
    with live_vm(name, tmp_path) as vm:
        evidence = fetch_qemu(str(vm.qmp))  # serial log discovered from QEMU's command line
    assert evidence.artifacts[0].available and evidence.artifacts[1].available
    verdict = analyzer.analyse(evidence).verdict
    assert (verdict.status, verdict.category) == (vm.expect_status, vm.expect_category)
    print(f"\n{name} live: failure after {vm.seconds_to_failure:.1f}s, "
          f"whole test {time.monotonic() - t0:.1f}s")


COLOUR_INIT = r"""
printf '\033[2J\033[H\033[?25l' > /dev/tty1
printf '\033[41m  RED  \033[0m \033[44m  BLUE  \033[0m \033[42m  GREEN  \033[0m\n' > /dev/tty1
echo colours-drawn
while true; do sleep 60; done
"""


@pytest.mark.slow
def test_screenshot_colours_match_ppm_live(tmp_path):
    """QEMU 7.1-7.2.2 and 8.0.0 wrote PNG screendumps with red and blue swapped. Whatever this
    QEMU is, the fetcher's PNG must have the colours of QEMU's PPM dump of the same screen."""
    _need_qemu()
    from lab import core
    from lab.busybox import build_initramfs

    kernel = core.get_kernel("generic", core.WORK_DIR)
    initrd = build_initramfs(core.WORK_DIR, kernel, COLOUR_INIT)
    sockdir = Path(tempfile.mkdtemp(prefix="dq-colour-"))
    qmp, serial = sockdir / "qmp.sock", tmp_path / "serial.log"
    argv = core.build_argv(core.BootSpec(append="quiet panic=0", initrd=initrd), kernel, "text",
                           serial, qmp)
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while b"colours-drawn" not in (serial.read_bytes() if serial.exists() else b""):
            assert proc.poll() is None and time.monotonic() < deadline, "guest did not draw"
            time.sleep(0.2)
        time.sleep(1.0)
        evidence = fetch_qemu(str(qmp))
        monitor = core.QMP(qmp)
        try:
            monitor.command("screendump", filename=str(tmp_path / "screen.ppm"))
        finally:
            monitor.close()
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        shutil.rmtree(sockdir, ignore_errors=True)
    w, h, channels, got = _png.decode_png(evidence.screenshot)
    _, _, _, want = _png.decode_png(_png.ppm_to_png((tmp_path / "screen.ppm").read_bytes()))
    if channels == 4:
        got = bytes(b for i, b in enumerate(got) if i % 4 != 3)
    assert (w, h) == (720, 400)
    assert got == want
    colours = {got[i:i + 3] for i in range(0, len(got), 3)}
    # the VGA palette's red, blue and green backgrounds are all on screen, red is red
    assert {bytes([168, 0, 0]), bytes([0, 0, 168]), bytes([0, 168, 0])} <= colours
