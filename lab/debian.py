"""A real Debian 12 (bookworm) root for the lab: debootstrap, initrds, ext4 and GRUB disks.

Everything here is built from Debian's own packages and tools and cached under
``lab/work/debian`` so that reruns are fast:

* ``bootstrap/``          debootstrap --variant=minbase plus systemd, udev, initramfs-tools, ...
* ``root-<kver>/``        a copy of it with the lab kernel's modules, a fixed fstab/hostname and
                          an initramfs-tools initrd generated inside the chroot (``mkinitramfs``)
* ``root-<kver>.ext4``    that root as an ext4 image (``mkfs.ext4 -d``, no loop mounts)
* ``dracut-<kver>/``      a second copy where apt replaced initramfs-tools by dracut
* ``grub/``               BIOS disks whose GRUB cannot find its files

The root account is left locked (``*`` in /etc/shadow, as debootstrap leaves it and as cloud
images ship): systemd's emergency shell then reports that root is locked. Scenarios that want
the classic "Give root password for maintenance" prompt set ``ROOT_PASSWORD`` on their copy.
Per-scenario changes are made on a copy of the cached image with ``debugfs`` (see ``ImageEdit``).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from lab.core import Kernel, file_lock

SUITE = "bookworm"
# What a minimal, bootable, login-capable Debian needs on top of minbase. openssh-server is
# there for the sshd scenario (and because a cloud VM without sshd is not realistic).
PACKAGES = (
    "systemd-sysv",
    "udev",
    "initramfs-tools",
    "e2fsprogs",
    "util-linux",
    "kmod",
    "zstd",
    "busybox",
    "procps",
    "login",
    "passwd",
    "openssh-server",
    "dbus",  # with libpam-systemd: logind, as on a standard install (no getty-static fallback)
    "libpam-systemd",
)
HOSTNAME = "bookworm-lab"
ROOT_UUID = "5c0f3a1e-0d1b-4c57-9e3a-2f7c1d0e6b01"  # fixed so fstab and root= stay stable
ROOT_IMAGE_SIZE = "2G"
ROOT_PASSWORD = "lab"  # only for the scenarios that unlock root (recorded in their description)
# Modules the initramfs must carry so the root on a virtio disk can be found.
INITRAMFS_MODULES = ("virtio_pci", "virtio_blk", "ext4")
# Bump when the preparation steps change, so cached roots and images are rebuilt.
PREPARE_VERSION = "3"


def _run(argv: list[str], cwd: Path | None = None, input_text: str | None = None) -> str:
    proc = subprocess.run(
        argv, cwd=cwd, input=input_text, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} failed ({proc.returncode}): {(proc.stderr or proc.stdout)[-3000:]}"
        )
    return proc.stdout


def _digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _stamp_ok(stamp: Path, key: str) -> bool:
    return stamp.exists() and stamp.read_text().strip() == key


# --------------------------------------------------------------------------- mirror


def _sources_files() -> list[Path]:
    files = [Path("/etc/apt/sources.list")]
    d = Path("/etc/apt/sources.list.d")
    if d.is_dir():
        files += sorted(d.glob("*.list")) + sorted(d.glob("*.sources"))
    return [f for f in files if f.is_file()]


def apt_mirror(suite: str = SUITE) -> str:
    """The Debian mirror this machine's apt uses for ``suite`` (one-line or deb822 format)."""
    for f in _sources_files():
        text = f.read_text(errors="replace")
        if f.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                fields: dict[str, str] = {}
                for line in stanza.splitlines():
                    if line.startswith("#") or ":" not in line:
                        continue
                    k, v = line.split(":", 1)
                    fields[k.strip().lower()] = v.strip()
                types = fields.get("types", "").split()
                suites = fields.get("suites", "").split()
                if "deb" in types and suite in suites and fields.get("uris"):
                    return fields["uris"].split()[0]
        else:
            for line in text.splitlines():
                m = re.match(r"\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", line)
                if m and m.group(2) == suite:
                    return m.group(1)
    raise RuntimeError(f"no apt source for {suite} in {', '.join(map(str, _sources_files()))}")


# --------------------------------------------------------------------------- roots


def debian_dir(work: Path) -> Path:
    d = work / "debian"
    d.mkdir(parents=True, exist_ok=True)
    return d


def bootstrap(work: Path) -> Path:
    """debootstrap a minbase bookworm root with PACKAGES once (cached, inter-process safe)."""
    base = debian_dir(work)
    root = base / "bootstrap"
    stamp = base / "bootstrap.done"
    mirror = apt_mirror()
    key = _digest(SUITE, PACKAGES, mirror)
    with file_lock(base / ".bootstrap.lock"):
        if _stamp_ok(stamp, key):
            return root
        stamp.unlink(missing_ok=True)
        if root.exists():
            shutil.rmtree(root)
        _run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(PACKAGES)}",
                SUITE,
                str(root),
                mirror,
            ]
        )
        stamp.write_text(key + "\n")
    return root


def _copy_tree(src: Path, dst: Path) -> None:
    if dst.exists():
        shutil.rmtree(dst)
    _run(["cp", "-a", str(src), str(dst)])


def _install_kernel_files(root: Path, kernel: Kernel) -> None:
    """Copy the extracted kernel's modules and config into the root and run depmod there."""
    mods = root / "lib" / "modules"
    mods.mkdir(parents=True, exist_ok=True)
    target = mods / kernel.version
    if target.exists():
        shutil.rmtree(target)
    _run(["cp", "-a", str(kernel.modules), str(target)])
    boot_src = kernel.vmlinuz.parent
    (root / "boot").mkdir(exist_ok=True)
    for name in (f"config-{kernel.version}", f"System.map-{kernel.version}"):
        if (boot_src / name).exists():
            shutil.copyfile(boot_src / name, root / "boot" / name)
    _run(["chroot", str(root), "depmod", "-a", kernel.version])


def _configure_root(root: Path) -> None:
    etc = root / "etc"
    (etc / "fstab").write_text(
        "# <file system> <mount point> <type> <options> <dump> <pass>\n"
        f"UUID={ROOT_UUID} / ext4 errors=remount-ro 0 1\n"
    )
    (etc / "hostname").write_text(HOSTNAME + "\n")
    (etc / "hosts").write_text(f"127.0.0.1\tlocalhost\n127.0.1.1\t{HOSTNAME}\n")
    # lean images: the package cache and indexes are not needed at boot
    for deb in (root / "var" / "cache" / "apt" / "archives").glob("*.deb"):
        deb.unlink()


def _initramfs_tools_config(root: Path) -> None:
    modules = root / "etc" / "initramfs-tools" / "modules"
    lines = modules.read_text().splitlines() if modules.exists() else []
    for m in INITRAMFS_MODULES:
        if m not in lines:
            lines.append(m)
    modules.write_text("\n".join(lines) + "\n")


def prepared_root(work: Path, kernel: Kernel) -> Path:
    """The bootstrap root plus kernel modules, config and an initramfs-tools initrd (cached)."""
    src = bootstrap(work)
    base = debian_dir(work)
    root = base / f"root-{kernel.version}"
    stamp = base / f"root-{kernel.version}.done"
    key = _digest(PREPARE_VERSION, (base / "bootstrap.done").read_text(), kernel.package)
    with file_lock(base / f".root-{kernel.version}.lock"):
        if _stamp_ok(stamp, key):
            return root
        stamp.unlink(missing_ok=True)
        _copy_tree(src, root)
        _configure_root(root)  # fstab first: the initramfs fsck hook reads it
        _install_kernel_files(root, kernel)
        _initramfs_tools_config(root)
        _run(
            [
                "chroot",
                str(root),
                "mkinitramfs",
                "-o",
                f"/boot/initrd.img-{kernel.version}",
                kernel.version,
            ]
        )
        stamp.write_text(key + "\n")
    return root


def initramfs_tools_initrd(work: Path, kernel: Kernel) -> Path:
    """The initrd mkinitramfs built inside the prepared root."""
    return prepared_root(work, kernel) / "boot" / f"initrd.img-{kernel.version}"


def root_image(work: Path, kernel: Kernel) -> Path:
    """The prepared root as an ext4 image with UUID ROOT_UUID (cached; treat as read-only)."""
    root = prepared_root(work, kernel)
    base = debian_dir(work)
    image = base / f"root-{kernel.version}.ext4"
    stamp = base / f"root-{kernel.version}.ext4.done"
    key = _digest((base / f"root-{kernel.version}.done").read_text(), ROOT_IMAGE_SIZE)
    with file_lock(base / f".root-{kernel.version}.ext4.lock"):
        if _stamp_ok(stamp, key):
            return image
        stamp.unlink(missing_ok=True)
        tmp = image.with_suffix(".building")
        tmp.unlink(missing_ok=True)
        make_ext4(tmp, ROOT_IMAGE_SIZE, source=root, uuid=ROOT_UUID, label="root")
        tmp.rename(image)
        stamp.write_text(key + "\n")
    return image


def make_ext4(
    path: Path,
    size: str,
    source: Path | None = None,
    uuid: str | None = None,
    label: str | None = None,
    extra: tuple[str, ...] = (),
) -> Path:
    """mkfs.ext4 on a regular file (optionally populated from a directory with -d)."""
    argv = ["mkfs.ext4", "-q", "-F"]
    if uuid:
        argv += ["-U", uuid]
    if label:
        argv += ["-L", label]
    if source is not None:
        argv += ["-d", str(source)]
    argv += [*extra, str(path), size]
    _run(argv)
    return path


def dracut_root(work: Path, kernel: Kernel) -> Path:
    """A copy of the prepared root where apt replaced initramfs-tools by Debian's dracut."""
    prepared = prepared_root(work, kernel)
    base = debian_dir(work)
    root = base / f"dracut-{kernel.version}"
    stamp = base / f"dracut-{kernel.version}.done"
    key = _digest(PREPARE_VERSION, (base / f"root-{kernel.version}.done").read_text())
    with file_lock(base / f".dracut-{kernel.version}.lock"):
        if _stamp_ok(stamp, key):
            return root
        stamp.unlink(missing_ok=True)
        _copy_tree(prepared, root)
        (root / "etc" / "resolv.conf").unlink(missing_ok=True)
        shutil.copyfile("/etc/resolv.conf", root / "etc" / "resolv.conf")
        env = ["env", "DEBIAN_FRONTEND=noninteractive", "LC_ALL=C"]
        _run(["chroot", str(root), *env, "apt-get", "update"])
        _run(
            [
                "chroot",
                str(root),
                *env,
                "apt-get",
                "install",
                "-y",
                "--no-install-recommends",
                "dracut",
                "dracut-core",
            ]
        )
        conf = root / "etc" / "dracut.conf.d" / "50-lab.conf"
        conf.parent.mkdir(parents=True, exist_ok=True)
        conf.write_text(
            "# lab: a generic (not host-only) initrd with the virtio disk drivers\n"
            'hostonly="no"\n'
            f'add_drivers+=" {" ".join(INITRAMFS_MODULES)} "\n'
        )
        _run(
            [
                "chroot",
                str(root),
                *env,
                "dracut",
                "--force",
                "--kver",
                kernel.version,
                f"/boot/initrd.img-{kernel.version}",
            ]
        )
        for deb in (root / "var" / "cache" / "apt" / "archives").glob("*.deb"):
            deb.unlink()
        stamp.write_text(key + "\n")
    return root


def dracut_initrd(work: Path, kernel: Kernel) -> Path:
    return dracut_root(work, kernel) / "boot" / f"initrd.img-{kernel.version}"


def password_hash(password: str, salt: str = "bookwormlab") -> str:
    """A SHA-512 crypt hash (fixed salt: the images stay reproducible)."""
    return _run(["openssl", "passwd", "-6", "-salt", salt, password]).strip()


# --------------------------------------------------------------------------- image edits


@dataclass
class ImageEdit:
    """Batch of debugfs changes to an ext4 image file, verified after they are applied.

    debugfs reports most errors on stderr but still exits 0, so every written file is read
    back and compared.
    """

    image: Path

    def __post_init__(self) -> None:
        self._cmds: list[str] = []
        self._files: dict[str, bytes] = {}
        self._tmp = Path(tempfile.mkdtemp(prefix="lab-debugfs."))

    def write(self, path: str, data: bytes | str, mode: int = 0o644, gid: int = 0) -> ImageEdit:
        raw = data.encode() if isinstance(data, str) else data
        local = self._tmp / f"f{len(self._files)}"
        local.write_bytes(raw)
        self._cmds += [
            f"rm {path}",
            f"write {local} {path}",
            f"sif {path} mode 0{0o100000 | mode:o}",
            f"sif {path} uid 0",
            f"sif {path} gid {gid}",
        ]
        self._files[path] = raw
        return self

    def read(self, path: str) -> bytes:
        proc = subprocess.run(
            ["debugfs", "-R", f"cat {path}", str(self.image)], capture_output=True, check=False
        )
        if proc.returncode != 0:
            raise RuntimeError(f"debugfs cat {path}: {proc.stderr.decode(errors='replace')}")
        return proc.stdout

    def apply(self) -> Path:
        try:
            script = self._tmp / "cmds"
            script.write_text("\n".join(self._cmds) + "\n")
            _run(["debugfs", "-w", "-f", str(script), str(self.image)])
            for path, want in self._files.items():
                if self.read(path) != want:
                    raise RuntimeError(f"debugfs did not write {path} into {self.image}")
        finally:
            shutil.rmtree(self._tmp, ignore_errors=True)
        return self.image


def copy_image(src: Path, dst: Path) -> Path:
    _run(["cp", "--sparse=always", str(src), str(dst)])
    return dst


def root_password_shadow(image: Path, password: str) -> str:
    """/etc/shadow of ``image`` with root's locked entry replaced by ``password``'s hash."""
    shadow = ImageEdit(image).read("/etc/shadow").decode()
    lines = []
    for line in shadow.splitlines():
        if line.startswith("root:"):
            fields = line.split(":")
            fields[1] = password_hash(password)
            line = ":".join(fields)
        lines.append(line)
    return "\n".join(lines) + "\n"


SHADOW_GID = 42  # Debian's fixed gid of group "shadow"


# --------------------------------------------------------------------------- GRUB disks

GRUB_DIR = Path("/usr/lib/grub/i386-pc")
SECTOR = 512
BOOT_IMG_CODE = 440  # boot.img bytes that go into the MBR (disk signature/partitions follow)
KERNEL_SECTOR_OFFSET = 0x5C  # boot.img: 64-bit LBA of core.img's first sector
DISKBOOT_LIST = SECTOR - 12  # diskboot.img: last blocklist entry (start u64, len u16, seg u16)


def grub_core(path: Path, prefix: str, modules: tuple[str, ...]) -> Path:
    """grub-mkimage an i386-pc core.img (diskboot.img + compressed kernel and modules)."""
    _run(
        [
            "grub-mkimage",
            "-O",
            "i386-pc",
            "-d",
            str(GRUB_DIR),
            "-o",
            str(path),
            "-p",
            prefix,
            *modules,
        ]
    )
    return path


def grub_disk(
    path: Path,
    prefix: str,
    filesystem: Path | None,
    size_mib: int = 64,
    part_start: int = 2048,
    modules: tuple[str, ...] = ("biosdisk", "part_msdos", "ext2"),
) -> Path:
    """An msdos-partitioned BIOS disk with GRUB's boot.img in the MBR and core.img at sector 1.

    ``filesystem`` (an image file) is copied into partition 1 at ``part_start``; None leaves
    the partition empty. Built without loop devices: sfdisk on the file, dd at offsets.
    """
    with open(path, "wb") as fh:
        fh.truncate(size_mib * 1024 * 1024)
    _run(
        ["sfdisk", "--no-reread", "--no-tell-kernel", "-q", str(path)],
        input_text=f"label: dos\nlabel-id: 0x1ab0b007\nstart={part_start}, type=83, bootable\n",
    )
    core = grub_core(path.with_suffix(".core.img"), prefix, modules)
    core_data = core.read_bytes()
    core.unlink()
    sectors = (len(core_data) + SECTOR - 1) // SECTOR
    if 1 + sectors > part_start:
        raise RuntimeError(f"core.img ({sectors} sectors) does not fit before the partition")
    start, length = _diskboot_blocklist(core_data)
    if start != 2 or length != sectors - 1:
        # grub-mkimage is expected to point diskboot at the sectors right after itself
        raise RuntimeError(f"unexpected diskboot blocklist start={start} len={length}")
    boot = (GRUB_DIR / "boot.img").read_bytes()
    if len(boot) != SECTOR or boot[510:512] != b"\x55\xaa":
        raise RuntimeError("boot.img is not a 512-byte boot sector")
    kernel_sector = int.from_bytes(boot[KERNEL_SECTOR_OFFSET : KERNEL_SECTOR_OFFSET + 8], "little")
    if kernel_sector != 1:
        raise RuntimeError(f"boot.img expects core.img at sector {kernel_sector}, not 1")
    with open(path, "r+b") as fh:
        mbr = bytearray(fh.read(SECTOR))
        mbr[:BOOT_IMG_CODE] = boot[:BOOT_IMG_CODE]
        mbr[510:512] = b"\x55\xaa"
        fh.seek(0)
        fh.write(mbr)
        fh.seek(SECTOR)
        fh.write(core_data)
        if filesystem is not None:
            part_bytes = size_mib * 1024 * 1024 - part_start * SECTOR
            data = filesystem.read_bytes()
            if len(data) > part_bytes:
                raise RuntimeError("filesystem image is larger than the partition")
            fh.seek(part_start * SECTOR)
            fh.write(data)
    return path


def grub_directory(target: Path, grub_cfg: str) -> Path:
    """A /boot/grub directory as grub-install leaves it: i386-pc modules and lists, grub.cfg."""
    mods = target / "i386-pc"
    mods.mkdir(parents=True)
    for f in sorted(GRUB_DIR.iterdir()):
        if f.suffix in (".mod", ".lst"):
            shutil.copyfile(f, mods / f.name)
    (target / "grub.cfg").write_text(grub_cfg)
    return target


def _diskboot_blocklist(core: bytes) -> tuple[int, int]:
    entry = core[DISKBOOT_LIST : DISKBOOT_LIST + 10]
    return int.from_bytes(entry[:8], "little"), int.from_bytes(entry[8:10], "little")


def partition_size_mib(size_mib: int, part_start: int = 2048) -> int:
    return size_mib - part_start * SECTOR // (1024 * 1024)
