"""Kernel-level failure scenarios booted from a busybox initramfs.

Every scenario provokes a real failure in a real Debian kernel: the kernel, the modules,
busybox and e2fsprogs are the distribution's binaries; only the /init scripts are ours.
Expected verdicts use the ids of the shared verdict taxonomy.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from lab.busybox import (
    DISK_MODULES,
    block_of,
    block_size,
    build_initramfs,
    debugfs,
    make_ext4,
)
from lab.core import BootSpec, BuildContext, Scenario, file_lock, register

NO_REBOOT = "panic=0"  # stay in the panic so QEMU is still up for the screendump
PANIC_RE = r"Kernel panic - not syncing"
LOGIN_RE = r"login: "


def _drive(image: Path, fmt: str = "raw", extra: str = "") -> str:
    # snapshot=on: the guest's writes go to a throw-away overlay, the cached image stays intact
    # (writes survive a guest reboot inside the same QEMU process).
    value = f"file={image},format={fmt},if=virtio,snapshot=on"
    return value + (f",{extra}" if extra else "")


def _cached_image(ctx: BuildContext, name: str, make: Callable[[Path], None]) -> Path:
    """Build a disk image once into lab/work/images (inter-process safe)."""
    path = ctx.work / "images" / name
    with file_lock(ctx.work / "images" / f".{name}.lock"):
        if not path.exists():
            tmp = path.with_name(f"{name}.building")
            make(tmp)
            tmp.replace(path)
    return path


def _sample_files(n: int = 24) -> dict[str, bytes]:
    files = {f"data/d/record-{i:03d}.txt": f"record {i}\n".encode() * 8 for i in range(n)}
    files["etc/lab-release"] = b"lab data volume\n"
    return files


# --------------------------------------------------------------------------- panics at boot


def build_vfs_panic(ctx: BuildContext) -> BootSpec:
    # A Debian kernel booted without its initramfs: virtio_blk and ext4 are modules, so the
    # root disk is attached but invisible to the kernel.
    disk = _cached_image(ctx, "rootfs-small.img", lambda p: make_ext4(p, 32, _sample_files()))
    return BootSpec(append=f"root=/dev/vda rw {NO_REBOOT}", drives=(_drive(disk),))


def build_init_exits(ctx: BuildContext) -> BootSpec:
    init = """
say "lab: init started, pretending the service manager crashed"
say "lab: init exiting with status 1"
exit 1
"""
    return BootSpec(append=NO_REBOOT, initrd=build_initramfs(ctx.work, ctx.kernel, init))


def build_no_working_init(ctx: BuildContext) -> BootSpec:
    # /init exists but its interpreter (busybox) is missing, and there is no /sbin/init,
    # /etc/init, /bin/init or /bin/sh to fall back on.
    initrd = build_initramfs(ctx.work, ctx.kernel, "exit 0\n", busybox=False)
    return BootSpec(append=NO_REBOOT, initrd=initrd)


def build_sysrq_crash(ctx: BuildContext) -> BootSpec:
    init = """
say "lab: userspace up, triggering a crash through /proc/sysrq-trigger"
sleep 1
echo c > /proc/sysrq-trigger
"""
    return BootSpec(append=NO_REBOOT, initrd=build_initramfs(ctx.work, ctx.kernel, init))


# --------------------------------------------------------------------------- memory

# busybox dd allocates one buffer of `bs` bytes and fills it from /dev/zero: a real 200 MiB
# resident process in a 256 MiB guest without swap. PID 1 protects itself from the OOM killer;
# the job resets the (inherited) adjustment so that it is the one to be killed.
MEMORY_HOG = (
    "sh -c 'echo 0 > /proc/self/oom_score_adj; exec dd if=/dev/zero of=/dev/null bs=200M count=1'"
)


def build_oom_kill(ctx: BuildContext) -> BootSpec:
    init = f"""
echo -1000 > /proc/1/oom_score_adj
say "lab: starting a memory hungry job"
{MEMORY_HOG}
say "lab: job ended with status $?, continuing boot"
boot_to_login
"""
    return BootSpec(append=NO_REBOOT, initrd=build_initramfs(ctx.work, ctx.kernel, init))


def build_oom_panic(ctx: BuildContext) -> BootSpec:
    init = f"""
echo 1 > /proc/sys/vm/panic_on_oom
say "lab: vm.panic_on_oom = $(cat /proc/sys/vm/panic_on_oom), starting a memory hungry job"
{MEMORY_HOG}
say "lab: still alive?"
boot_to_login
"""
    return BootSpec(append=NO_REBOOT, initrd=build_initramfs(ctx.work, ctx.kernel, init))


def build_oom_deadlock(ctx: BuildContext) -> BootSpec:
    # PID 1 makes itself unkillable and its job inherits oom_score_adj=-1000: when memory
    # runs out the OOM killer finds no victim at all.
    init = """
echo -1000 > /proc/self/oom_score_adj
say "lab: init is OOM-protected and so is its memory hungry job"
dd if=/dev/zero of=/dev/null bs=200M count=1
say "lab: still alive?"
boot_to_login
"""
    return BootSpec(append=NO_REBOOT, initrd=build_initramfs(ctx.work, ctx.kernel, init))


# --------------------------------------------------------------------------- filesystems


def _make_corrupt_extent(path: Path) -> None:
    """ext4 image whose /data/d directory inode has a zeroed extent header."""
    make_ext4(path, 32, _sample_files())
    debugfs(path, "set_inode_field /data/d block[0] 0")


def build_ext4_errors_panic(ctx: BuildContext) -> BootSpec:
    disk = _cached_image(ctx, "ext4-bad-extent.img", _make_corrupt_extent)
    init = """
load_modules
say "lab: mounting /dev/vda on /mnt with errors=panic"
mount -t ext4 -o errors=panic /dev/vda /mnt
say "lab: mounted; listing and touching /mnt/data/d"
ls /mnt/data/d
touch /mnt/data/d/touched
say "lab: survived?"
boot_to_login
"""
    initrd = build_initramfs(ctx.work, ctx.kernel, init, modules=DISK_MODULES)
    return BootSpec(append=NO_REBOOT, initrd=initrd, drives=(_drive(disk),))


def _make_fsck_dirty(path: Path) -> None:
    """ext4 image with a zeroed directory block, its superblock marked as having errors."""
    make_ext4(path, 32, _sample_files())
    block = block_of(path, "/data/d")
    bs = block_size(path)
    with open(path, "r+b") as fh:
        fh.seek(block * bs)
        fh.write(b"\0" * bs)
    # e2fsck -p skips a clean filesystem: record that the kernel saw errors on it
    debugfs(path, "ssv state 2")


FSCK_INIT = """
load_modules
say "lab: checking /dev/vda (e2fsck -p)"
{ e2fsck -p /dev/vda; echo $? > /tmp/fsck.rc; } 2>&1 | tee /dev/tty1
rc=$(cat /tmp/fsck.rc)
if [ $((rc & 4)) -ne 0 ]; then
    say "lab: e2fsck exited with status $rc: /dev/vda needs a manual fsck"
    say "lab: boot stopped; run e2fsck /dev/vda by hand"
    while :; do sleep 3600; done
fi
say "lab: filesystem clean (status $rc)"
boot_to_login
"""


def build_fsck_required(ctx: BuildContext) -> BootSpec:
    disk = _cached_image(ctx, "ext4-dirty-dir.img", _make_fsck_dirty)
    initrd = build_initramfs(
        ctx.work, ctx.kernel, FSCK_INIT, modules=DISK_MODULES, host_binaries=("/sbin/e2fsck",)
    )
    return BootSpec(append=NO_REBOOT, initrd=initrd, drives=(_drive(disk),))


def _make_big_fs(path: Path) -> None:
    """A 2 GiB ext4 with many small files, so a forced e2fsck runs for a long while."""
    files = {f"srv/{i // 500:03d}/item-{i:05d}": b"x" * 100 for i in range(40000)}
    make_ext4(path, 2048, files, extra=("-N", "400000"))


def build_fsck_in_progress(ctx: BuildContext) -> BootSpec:
    disk = _cached_image(ctx, "ext4-big.img", _make_big_fs)
    init = """
load_modules
say "lab: /dev/vda has gone 180 days without being checked, check forced."
e2fsck -f -p -C 0 /dev/vda 2>&1 | tee /dev/tty1
say "lab: fsck finished"
boot_to_login
"""
    initrd = build_initramfs(
        ctx.work, ctx.kernel, init, modules=DISK_MODULES, host_binaries=("/sbin/e2fsck",)
    )
    # a slow (1 MiB/s) disk, like a throttled cloud volume, keeps the check running for a while
    drive = _drive(disk, extra="throttling.bps-total=1048576")
    return BootSpec(append=NO_REBOOT, initrd=initrd, drives=(drive,))


def build_disk_full(ctx: BuildContext) -> BootSpec:
    disk = _cached_image(ctx, "ext4-8m.img", lambda p: make_ext4(p, 8, _sample_files(4)))
    init = """
load_modules
mount -t ext4 /dev/vda /mnt
say "lab: a runaway log writer fills /mnt"
dd if=/dev/zero of=/mnt/runaway.log bs=1M 2>&1 | tee /dev/tty1
say "lab: starting the app service, which writes a 256 KiB cache file"
if ! dd if=/dev/urandom of=/mnt/app-cache.db bs=64k count=4 2>/tmp/err; then
    say "app: cannot create /mnt/app-cache.db: $(grep -v records /tmp/err)"
    say "app: service failed to start"
fi
df -h /mnt 2>&1 | tee /dev/tty1
boot_to_login
"""
    initrd = build_initramfs(ctx.work, ctx.kernel, init, modules=DISK_MODULES)
    return BootSpec(append=NO_REBOOT, initrd=initrd, drives=(_drive(disk),))


# --------------------------------------------------------------------------- disks


def build_io_error(ctx: BuildContext) -> BootSpec:
    disk = _cached_image(ctx, "rootfs-small.img", lambda p: make_ext4(p, 32, _sample_files()))
    cfg = ctx.scratch / "blkdebug.conf"
    # every read request of the guest fails with EIO (errno 5)
    cfg.write_text('[inject-error]\nevent = "read_aio"\nerrno = "5"\n')
    init = """
load_modules
say "lab: mounting the data disk /dev/vda"
if ! mount -t ext4 /dev/vda /mnt 2>&1 | tee /dev/tty1; then :; fi
grep -q ' /mnt ' /proc/mounts || say "lab: /dev/vda could not be mounted"
dd if=/dev/vda of=/dev/null bs=4k count=16 2>&1 | tee /dev/tty1
boot_to_login
"""
    initrd = build_initramfs(ctx.work, ctx.kernel, init, modules=DISK_MODULES)
    drive = f"file=blkdebug:{cfg}:{disk},format=raw,if=virtio,snapshot=on"
    return BootSpec(append=NO_REBOOT, initrd=initrd, drives=(drive,))


def build_hung_task(ctx: BuildContext) -> BootSpec:
    disk = _cached_image(ctx, "rootfs-small.img", lambda p: make_ext4(p, 32, _sample_files()))
    init = """
load_modules
echo 10 > /proc/sys/kernel/hung_task_timeout_secs
mount -t ext4 /dev/vda /mnt
say "lab: writing 8 MiB to a disk throttled to 4 KiB/s, then sync"
dd if=/dev/zero of=/mnt/blob bs=1M count=8 2>&1 | tee /dev/tty1
sync &
sleep 2
boot_to_login
"""
    initrd = build_initramfs(ctx.work, ctx.kernel, init, modules=DISK_MODULES)
    # QEMU's block throttling makes every write crawl: the writer ends up in D state
    drive = _drive(disk, extra="throttling.bps-total=4096")
    return BootSpec(append=NO_REBOOT, initrd=initrd, drives=(drive,))


# --------------------------------------------------------------------------- healthy


def build_healthy(ctx: BuildContext) -> BootSpec:
    init = """
say "lab: all good, starting login prompts"
boot_to_login
"""
    return BootSpec(append="", initrd=build_initramfs(ctx.work, ctx.kernel, init))


MARKER = "LAB-BOOT-MARKER1"


def build_crash_then_healthy(ctx: BuildContext) -> BootSpec:
    disk = ctx.scratch / "marker.img"
    with open(disk, "wb") as fh:
        fh.truncate(1024 * 1024)
    init = f"""
load_modules
marker=$(dd if=/dev/vda bs=16 count=1 2>/dev/null)
if [ "$marker" = "{MARKER}" ]; then
    say "lab: marker found, the previous boot crashed; booting normally"
    boot_to_login
fi
say "lab: first boot: writing the marker, then crashing (panic=1 reboots)"
printf '%s' "{MARKER}" | dd of=/dev/vda bs=16 count=1 conv=fsync 2>/dev/null
echo c > /proc/sysrq-trigger
"""
    initrd = build_initramfs(ctx.work, ctx.kernel, init, modules=["virtio_pci", "virtio_blk"])
    drive = f"file={disk},format=raw,if=virtio"
    return BootSpec(append="panic=1", initrd=initrd, drives=(drive,))


# --------------------------------------------------------------------------- registry

SCENARIOS = [
    Scenario(
        name="vfs-panic",
        description="kernel booted without its initramfs: root=/dev/vda cannot be mounted",
        expect_status="failed",
        expect_category="kernel-panic-vfs",
        build=build_vfs_panic,
        end_when=r"Kernel panic - not syncing: VFS",
    ),
    Scenario(
        name="vfs-panic-cloud",
        description="cloud kernel booted without its initramfs: root=/dev/vda cannot be mounted",
        expect_status="failed",
        expect_category="kernel-panic-vfs",
        build=build_vfs_panic,
        kernel="cloud",
        end_when=r"Kernel panic - not syncing: VFS",
    ),
    Scenario(
        name="init-exits",
        description="/init exits with status 1: the kernel panics with Attempted to kill init",
        expect_status="failed",
        expect_category="kernel-panic-init",
        build=build_init_exits,
        end_when=r"Attempted to kill init",
    ),
    Scenario(
        name="no-working-init",
        description="initramfs whose /init interpreter is missing and no fallback init exists",
        expect_status="failed",
        expect_category="kernel-panic-init",
        build=build_no_working_init,
        end_when=r"No working init found",
    ),
    Scenario(
        name="sysrq-crash",
        description="userspace triggers a crash with echo c > /proc/sysrq-trigger",
        expect_status="failed",
        expect_category="kernel-panic-other",
        build=build_sysrq_crash,
        end_when=PANIC_RE,
    ),
    Scenario(
        name="sysrq-crash-cloud",
        description="cloud kernel: userspace triggers a crash with echo c > /proc/sysrq-trigger",
        expect_status="failed",
        expect_category="kernel-panic-other",
        build=build_sysrq_crash,
        kernel="cloud",
        end_when=PANIC_RE,
    ),
    Scenario(
        name="oom-kill",
        description="a 200 MiB job in a 256 MiB guest is OOM-killed; the system reaches login",
        expect_status="degraded",
        expect_category="oom-killer",
        build=build_oom_kill,
        end_when=r"Killed process[\s\S]*" + LOGIN_RE,
        abort_when=PANIC_RE,
    ),
    Scenario(
        name="oom-panic",
        description="vm.panic_on_oom=1 and a memory hog: the kernel panics instead of killing",
        expect_status="failed",
        expect_category="kernel-panic-other",
        build=build_oom_panic,
        end_when=PANIC_RE,
    ),
    Scenario(
        name="oom-deadlock",
        description="memory hog inherits init's oom_score_adj -1000: no OOM victim, panic",
        expect_status="failed",
        expect_category="kernel-panic-other",
        build=build_oom_deadlock,
        end_when=PANIC_RE,
    ),
    Scenario(
        name="ext4-errors-panic",
        description="ext4 with a corrupted directory inode mounted errors=panic, then accessed",
        expect_status="failed",
        expect_category="kernel-panic-other",
        build=build_ext4_errors_panic,
        end_when=PANIC_RE,
    ),
    Scenario(
        name="fsck-required",
        description="e2fsck -p on an ext4 with a zeroed directory block: manual fsck needed",
        expect_status="failed",
        expect_category="fsck-required",
        build=build_fsck_required,
        end_when=r"boot stopped",
        abort_when=PANIC_RE,
    ),
    Scenario(
        name="healthy-login",
        description="healthy boot to busybox getty login prompts on ttyS0 and tty1",
        expect_status="healthy",
        expect_category="healthy",
        build=build_healthy,
        end_when=LOGIN_RE,
        abort_when=PANIC_RE,
    ),
    Scenario(
        name="healthy-login-cloud",
        description="cloud kernel: healthy boot to busybox getty login prompts",
        expect_status="healthy",
        expect_category="healthy",
        build=build_healthy,
        kernel="cloud",
        end_when=LOGIN_RE,
        abort_when=PANIC_RE,
    ),
    Scenario(
        name="crash-then-healthy",
        description="first boot writes a marker and crashes (panic=1 reboots), second boot is fine",
        expect_status="healthy",
        expect_category="healthy",
        build=build_crash_then_healthy,
        end_when=LOGIN_RE,
        boots=2,
    ),
    Scenario(
        name="fsck-in-progress",
        description="forced e2fsck -f -C 0 on a 2 GiB ext4 with 40000 files, captured mid-check",
        expect_status="in-progress",
        expect_category="fsck-in-progress-hang",
        build=build_fsck_in_progress,
        end_when=r"\|\s*\d+\.\d%",
        settle=2.0,
        abort_when=PANIC_RE,
    ),
    Scenario(
        name="io-error-disk",
        description="QEMU blkdebug fails every read of the data disk with EIO; boot continues",
        expect_status="degraded",
        expect_category="io-error-disk",
        build=build_io_error,
        end_when=r"I/O error[\s\S]*" + LOGIN_RE,
        abort_when=PANIC_RE,
    ),
    Scenario(
        name="disk-full",
        description="a runaway writer fills an 8 MiB ext4; a service then fails to write its cache",
        expect_status="degraded",
        expect_category="disk-full",
        build=build_disk_full,
        end_when=r"No space left on device[\s\S]*" + LOGIN_RE,
        abort_when=PANIC_RE,
    ),
    Scenario(
        name="hung-task",
        description="writes to a disk throttled to 4 KiB/s leave sync blocked: hung task warning",
        expect_status="degraded",
        expect_category="soft-lockup-rcu-stall",
        build=build_hung_task,
        end_when=r"blocked for more than \d+ seconds",
        settle=5.0,
        timeout=240.0,
        abort_when=PANIC_RE,
    ),
]

for _s in SCENARIOS:
    register(_s)
