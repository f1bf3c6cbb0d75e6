"""Failure scenarios on a real Debian 12 root (systemd, initramfs-tools, dracut, GRUB).

The roots, initrds and disks come from lab/debian.py: debootstrap, mkinitramfs and dracut
run inside the chroot, GRUB's own boot.img/core.img are written to a partitioned disk.
Each scenario changes one thing a real operator could get wrong and boots it under QEMU.
Expected verdicts use the ids of the shared verdict taxonomy.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from lab import debian
from lab.core import BootSpec, BuildContext, Scenario, register

ROOT_APPEND = f"root=UUID={debian.ROOT_UUID} ro"
MEMORY_MB = 512
# A systemd boot to the login prompt takes ~50-70 s under TCG; failures add their own delays.
LOGIN_RE = r"login: "
EMERGENCY_RE = r"You are in emergency mode"
# QEMU's pc machine has a floppy controller that cloud VMs lack; the kernel's floppy driver
# would fill the console with "I/O error, dev fd0" while blkid probes it. No drive on it.
NO_FLOPPY = ("-global", "isa-fdc.fdtypeA=none")
# Debian's udev loads the bochs DRM driver for QEMU's std VGA, which replaces the VGA text
# console by a 1280x800 framebuffer console. In text mode keep VGA text for the whole boot
# (as on a VM without a KMS driver), so screen.png and the decoded text buffer agree.
TEXT_MODE_ARGS = "nomodeset"
# A filesystem UUID that no disk in the lab carries (as after a disk was replaced or re-made).
MISSING_UUID = "0dd5e3b0-7c1a-4f26-9a4e-6b9d2f0c4a11"


def _append(ctx: BuildContext, cmdline: str) -> str:
    return f"{cmdline} {TEXT_MODE_ARGS}" if ctx.mode == "text" else cmdline


def _drive(image: Path, snapshot: bool = True, iface: str = "virtio") -> str:
    value = f"file={image},format=raw,if={iface}"
    return value + (",snapshot=on" if snapshot else "")


def _root_copy(ctx: BuildContext) -> Path:
    """A private, writable copy of the cached root image for debugfs edits."""
    return debian.copy_image(debian.root_image(ctx.work, ctx.kernel), ctx.scratch / "root.ext4")


def _fstab(*extra_lines: str) -> str:
    return (
        "# <file system> <mount point> <type> <options> <dump> <pass>\n"
        f"UUID={debian.ROOT_UUID} / ext4 errors=remount-ro 0 1\n" + "".join(extra_lines)
    )


def _systemd_spec(
    ctx: BuildContext, root: Path, *more_drives: str, snapshot: bool = False
) -> BootSpec:
    return BootSpec(
        append=_append(ctx, ROOT_APPEND),
        initrd=debian.initramfs_tools_initrd(ctx.work, ctx.kernel),
        drives=(_drive(root, snapshot=snapshot), *more_drives),
        memory_mb=MEMORY_MB,
        qemu_extra=NO_FLOPPY,
    )


# --------------------------------------------------------------------------- systemd


def build_healthy(ctx: BuildContext) -> BootSpec:
    return _systemd_spec(ctx, debian.root_image(ctx.work, ctx.kernel), snapshot=True)


def build_emergency_fstab(ctx: BuildContext) -> BootSpec:
    """fstab names a filesystem by a UUID no disk has, without nofail (root stays locked)."""
    root = _root_copy(ctx)
    debian.ImageEdit(root).write(
        "/etc/fstab", _fstab(f"UUID={MISSING_UUID} /srv/data ext4 defaults 0 2\n")
    ).apply()
    return _systemd_spec(ctx, root)


def build_emergency_mount_option(ctx: BuildContext) -> BootSpec:
    """The data disk exists, but fstab misspells nofail as 'nofial'; root has a password."""
    root = _root_copy(ctx)
    data = debian.make_ext4(ctx.scratch / "data.ext4", "32M", label="data")
    debian.ImageEdit(root).write(
        "/etc/fstab", _fstab("LABEL=data /srv/data ext4 defaults,nofial 0 2\n")
    ).write(
        "/etc/shadow",
        debian.root_password_shadow(root, debian.ROOT_PASSWORD),
        mode=0o640,
        gid=debian.SHADOW_GID,
    ).apply()
    return _systemd_spec(ctx, root, _drive(data, snapshot=False))


def build_sshd_bad_config(ctx: BuildContext) -> BootSpec:
    """A misspelt value in sshd_config: 'sshd -t' fails, ssh.service gives up after retries."""
    root = _root_copy(ctx)
    edit = debian.ImageEdit(root)
    config = edit.read("/etc/ssh/sshd_config").decode()
    config += "\n# hardening (with a typo)\nPermitRootLogin prohibit-passwd\n"
    edit.write("/etc/ssh/sshd_config", config).apply()
    return _systemd_spec(ctx, root)


# --------------------------------------------------------------------------- initramfs


def build_initramfs_missing_root(ctx: BuildContext) -> BootSpec:
    """initramfs-tools initrd, root=UUID= of a filesystem that is not there; rootdelay=5."""
    return BootSpec(
        append=_append(ctx, f"root=UUID={MISSING_UUID} ro rootdelay=5"),
        initrd=debian.initramfs_tools_initrd(ctx.work, ctx.kernel),
        drives=(_drive(debian.root_image(ctx.work, ctx.kernel)),),
        memory_mb=MEMORY_MB,
        qemu_extra=NO_FLOPPY,
    )


def build_dracut_missing_root(ctx: BuildContext) -> BootSpec:
    """Debian's dracut initrd, root=UUID= of a filesystem that is not there; rd.retry=30."""
    return BootSpec(
        append=_append(ctx, f"root=UUID={MISSING_UUID} ro rd.retry=30"),
        initrd=debian.dracut_initrd(ctx.work, ctx.kernel),
        drives=(_drive(debian.root_image(ctx.work, ctx.kernel)),),
        memory_mb=MEMORY_MB,
        qemu_extra=NO_FLOPPY,
    )


# --------------------------------------------------------------------------- GRUB


BOOT_UUID = "3e7d0c55-21a8-4b9e-8f3c-5a1b2c3d4e5f"


def _boot_fs(
    ctx: BuildContext, size_mib: int, kernel: bool = True, grub_cfg: str | None = None
) -> Path:
    """An ext4 filesystem with a /boot directory: the kernel's config, optionally the kernel
    itself and optionally a GRUB directory (all i386-pc modules and ``grub_cfg``)."""
    stage = ctx.scratch / "bootfs"
    (stage / "boot").mkdir(parents=True)
    src = ctx.kernel.vmlinuz.parent
    names = [f"config-{ctx.kernel.version}"] + ([ctx.kernel.vmlinuz.name] if kernel else [])
    for name in names:
        if (src / name).exists():
            shutil.copyfile(src / name, stage / "boot" / name)
    if grub_cfg is not None:
        debian.grub_directory(stage / "boot" / "grub", grub_cfg)
    image = ctx.scratch / "boot.ext4"
    debian.make_ext4(image, f"{size_mib}M", source=stage, uuid=BOOT_UUID, label="boot")
    return image


def _grub_spec(
    ctx: BuildContext,
    prefix: str,
    with_fs: bool = True,
    kernel: bool = True,
    grub_cfg: str | None = None,
) -> BootSpec:
    size = 64
    fs = None
    if with_fs:
        fs = _boot_fs(ctx, debian.partition_size_mib(size), kernel=kernel, grub_cfg=grub_cfg)
    disk = debian.grub_disk(ctx.scratch / "disk.img", prefix=prefix, filesystem=fs, size_mib=size)
    return BootSpec(
        append="",
        drives=(_drive(disk, snapshot=False),),
        memory_mb=128,
        firmware_boot=True,
    )


def build_grub_rescue(ctx: BuildContext) -> BootSpec:
    """GRUB's prefix points at (hd0,msdos1)/boot/grub, which was deleted: normal.mod missing."""
    return _grub_spec(ctx, "(hd0,msdos1)/boot/grub")


def build_grub_no_partition(ctx: BuildContext) -> BootSpec:
    """GRUB's prefix names partition 2, which the disk no longer has."""
    return _grub_spec(ctx, "(hd0,msdos2)/boot/grub")


def build_grub_unknown_fs(ctx: BuildContext) -> BootSpec:
    """GRUB's partition exists but holds no filesystem (wiped)."""
    return _grub_spec(ctx, "(hd0,msdos1)/boot/grub", with_fs=False)


def build_grub_missing_kernel(ctx: BuildContext) -> BootSpec:
    """GRUB works and shows its menu on screen and serial, but the kernel file was deleted."""
    v = ctx.kernel.version
    cfg = (
        "# written by the lab (the layout follows what update-grub makes on Debian)\n"
        "serial --unit=0 --speed=115200\n"
        "terminal_input console serial\n"
        "terminal_output console serial\n"
        "set default=0\n"
        "set timeout=1\n"
        "menuentry 'Debian GNU/Linux' {\n"
        "\tinsmod part_msdos\n"
        "\tinsmod ext2\n"
        f"\tsearch --no-floppy --fs-uuid --set=root {BOOT_UUID}\n"
        f"\techo 'Loading Linux {v} ...'\n"
        f"\tlinux /boot/vmlinuz-{v} root=UUID={debian.ROOT_UUID} ro console=tty0 "
        "console=ttyS0,115200\n"
        "\techo 'Loading initial ramdisk ...'\n"
        f"\tinitrd /boot/initrd.img-{v}\n"
        "}\n"
    )
    return _grub_spec(ctx, "(hd0,msdos1)/boot/grub", kernel=False, grub_cfg=cfg)


SCENARIOS = [
    Scenario(
        name="systemd-healthy",
        description="Debian 12 root (debootstrap, initramfs-tools initrd) boots to login prompts",
        expect_status="healthy",
        expect_category="healthy",
        build=build_healthy,
        end_when=LOGIN_RE,
        settle=5.0,
        timeout=300.0,
    ),
    Scenario(
        name="systemd-emergency-fstab",
        description=(
            "Debian 12: /etc/fstab mounts UUID= of a missing filesystem without nofail; systemd "
            "waits 90 s for the device, then emergency mode (root account locked)"
        ),
        expect_status="failed",
        expect_category="emergency-mode",
        build=build_emergency_fstab,
        end_when=EMERGENCY_RE,
        settle=8.0,
        timeout=420.0,
    ),
    Scenario(
        name="systemd-emergency-mount-option",
        description=(
            "Debian 12: /etc/fstab misspells nofail as 'nofial' for an existing ext4 data disk; "
            "the mount fails, then emergency mode (root password set: 'lab')"
        ),
        expect_status="failed",
        expect_category="emergency-mode",
        build=build_emergency_mount_option,
        end_when=EMERGENCY_RE,
        settle=8.0,
        timeout=300.0,
    ),
    Scenario(
        name="sshd-bad-config",
        description=(
            "Debian 12: sshd_config has 'PermitRootLogin prohibit-passwd'; ssh.service fails "
            "its config test, the rest of the boot reaches the login prompt"
        ),
        expect_status="degraded",
        expect_category="sshd-failure",
        build=build_sshd_bad_config,
        end_when=(
            r"Failed to start[^\n]*OpenBSD Secure Shell server[\s\S]*login: "
            r"|login: [\s\S]*Failed to start[^\n]*OpenBSD Secure Shell server"
        ),
        settle=20.0,  # ssh.service is restarted a few times; keep the later attempts too
        timeout=300.0,
    ),
    Scenario(
        name="initramfs-missing-root",
        description=(
            "Debian 12 initramfs-tools initrd, root=UUID= of a missing filesystem (rootdelay=5): "
            "ALERT! ... does not exist, busybox (initramfs) shell"
        ),
        expect_status="failed",
        expect_category="dracut-initramfs-timeout",
        build=build_initramfs_missing_root,
        end_when=r"\(initramfs\)",
        settle=3.0,
        timeout=240.0,
    ),
    Scenario(
        name="dracut-missing-root",
        description=(
            "Debian 12 dracut initrd, root=UUID= of a missing filesystem (rd.retry=30): "
            "dracut-initqueue timeout, emergency shell"
        ),
        expect_status="failed",
        expect_category="dracut-initramfs-timeout",
        build=build_dracut_missing_root,
        end_when=r"dracut:/#|Entering emergency mode",
        settle=5.0,
        timeout=600.0,  # ~300 s alone under TCG, ~400 s with other runs sharing the cores
    ),
    # GRUB writes to the screen only (no serial terminal configured), as on most cloud images;
    # the runner's fb mode only changes the kernel command line, so these run in text mode.
    Scenario(
        name="grub-rescue",
        description=(
            "BIOS disk: GRUB core.img with prefix (hd0,msdos1)/boot/grub, /boot/grub deleted: "
            "normal.mod not found, grub rescue> (screen only)"
        ),
        expect_status="failed",
        expect_category="grub-failure",
        build=build_grub_rescue,
        modes=("text",),
        timeout=25.0,
    ),
    Scenario(
        name="grub-no-partition",
        description=(
            "BIOS disk: GRUB core.img with prefix on (hd0,msdos2), which does not exist: "
            "no such partition, grub rescue> (screen only)"
        ),
        expect_status="failed",
        expect_category="grub-failure",
        build=build_grub_no_partition,
        modes=("text",),
        timeout=25.0,
    ),
    Scenario(
        name="grub-unknown-fs",
        description=(
            "BIOS disk: GRUB's boot partition holds no filesystem: unknown filesystem, "
            "grub rescue> (screen only)"
        ),
        expect_status="failed",
        expect_category="grub-failure",
        build=build_grub_unknown_fs,
        modes=("text",),
        timeout=25.0,
    ),
    Scenario(
        name="grub-missing-kernel",
        description=(
            "BIOS disk: GRUB with a serial terminal boots its menu entry, but the kernel "
            "and initrd were deleted from /boot: file not found, load the kernel first"
        ),
        expect_status="failed",
        expect_category="grub-failure",
        build=build_grub_missing_kernel,
        modes=("text",),
        end_when=r"you need to load the kernel first",
        settle=5.0,
        timeout=60.0,
    ),
]

for _s in SCENARIOS:
    register(_s)
