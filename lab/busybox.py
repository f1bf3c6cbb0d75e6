"""Busybox initramfs and disk-image builders for the lab's kernel-level scenarios.

The initramfs is written directly as a gzip-compressed ``newc`` cpio archive (so device nodes
need no privileges and the output is reproducible). It holds the host's static busybox, an
``/init`` shell script supplied by the scenario, real kernel modules taken from the extracted
Debian kernel package (with their dependencies read from each module's ``.modinfo`` section),
and optionally host binaries with their shared libraries (e.g. ``e2fsck``).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import lzma
import re
import shutil
import stat
import struct
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from lab.core import Kernel

BUSYBOX = Path("/bin/busybox")

# --------------------------------------------------------------------------- kernel modules


def _elf_section(data: bytes, wanted: str) -> bytes | None:
    """Contents of the named section of a 64-bit little-endian ELF file."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ValueError("not a 64-bit little-endian ELF file")
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)

    def header(i: int) -> tuple[int, int, int]:
        base = shoff + i * shentsize
        name = struct.unpack_from("<I", data, base)[0]
        offset, size = struct.unpack_from("<QQ", data, base + 0x18)
        return name, offset, size

    _, str_off, str_size = header(shstrndx)
    names = data[str_off : str_off + str_size]
    for i in range(shnum):
        name_off, offset, size = header(i)
        end = names.index(b"\0", name_off)
        if names[name_off:end].decode() == wanted:
            return data[offset : offset + size]
    return None


def _read_module(path: Path) -> bytes:
    """Module bytes, decompressing .ko.xz / .ko.zst / .ko.gz if the package ships them so."""
    raw = path.read_bytes()
    if path.name.endswith(".xz"):
        return lzma.decompress(raw)
    if path.name.endswith(".gz"):
        return gzip.decompress(raw)
    if path.name.endswith(".zst"):
        proc = subprocess.run(["zstd", "-dc", str(path)], capture_output=True, check=True)
        return proc.stdout
    return raw


def _modinfo(data: bytes) -> dict[str, list[str]]:
    section = _elf_section(data, ".modinfo") or b""
    info: dict[str, list[str]] = {}
    for item in section.split(b"\0"):
        if b"=" in item:
            key, _, value = item.decode(errors="replace").partition("=")
            info.setdefault(key, []).append(value)
    return info


def _mod_name(path: Path) -> str:
    name = path.name
    name = name[: name.index(".ko")]
    return name.replace("-", "_")


@dataclass
class ModuleIndex:
    """Map of module name -> .ko file of one extracted kernel, with dependency resolution."""

    root: Path
    paths: dict[str, Path] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for path in sorted(self.root.rglob("*.ko*")):
            self.paths.setdefault(_mod_name(path), path)

    def builtin(self, name: str) -> bool:
        builtin = self.root / "modules.builtin"
        if not builtin.exists():
            return False
        names = {_mod_name(Path(line.strip())) for line in builtin.read_text().splitlines()}
        return name in names

    def load_order(self, wanted: list[str]) -> list[tuple[str, Path]]:
        """The wanted modules plus their hard dependencies, dependencies first.

        Modules that are built into the kernel are skipped silently; unknown ones raise.
        """
        order: list[tuple[str, Path]] = []
        seen: set[str] = set()

        def visit(name: str, stack: tuple[str, ...]) -> None:
            name = name.replace("-", "_")
            if name in seen:
                return
            if name in stack:
                raise ValueError(f"module dependency cycle: {' -> '.join((*stack, name))}")
            path = self.paths.get(name)
            if path is None:
                if self.builtin(name):
                    seen.add(name)
                    return
                raise FileNotFoundError(f"module {name} not found under {self.root}")
            info = _modinfo(_read_module(path))
            for deps in info.get("depends", []):
                for dep in filter(None, deps.split(",")):
                    visit(dep, (*stack, name))
            seen.add(name)
            order.append((name, path))

        for name in wanted:
            visit(name, ())
        return order


# modules the disk scenarios need (virtio-pci disk + ext4 with metadata checksums)
DISK_MODULES = ["virtio_pci", "virtio_blk", "crc32c_generic", "ext4"]

# --------------------------------------------------------------------------- cpio writer


class CpioWriter:
    """Writes a ``newc`` (SVR4, no CRC) cpio archive."""

    def __init__(self) -> None:
        self._out = io.BytesIO()
        self._ino = 1
        self._names: set[str] = set()

    def _entry(
        self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)
    ) -> None:
        name = name.strip("/") or "."
        if name in self._names:
            raise ValueError(f"duplicate cpio entry {name}")
        self._names.add(name)
        encoded = name.encode() + b"\0"
        fields = (
            self._ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0
        )  # fmt: skip
        self._ino += 1
        header = b"070701" + b"".join(b"%08X" % f for f in fields)
        self._write_padded(header + encoded)
        self._write_padded(data)

    def _write_padded(self, blob: bytes) -> None:
        self._out.write(blob)
        self._out.write(b"\0" * (-self._out.tell() % 4))

    def has(self, name: str) -> bool:
        return name.strip("/") in self._names

    def directory(self, name: str, perm: int = 0o755) -> None:
        parts = name.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            sub = "/".join(parts[:i])
            if sub and not self.has(sub):
                self._entry(sub, stat.S_IFDIR | perm)

    def _parent(self, name: str) -> None:
        parent = name.strip("/").rpartition("/")[0]
        if parent:
            self.directory(parent)

    def file(self, name: str, data: bytes, perm: int = 0o644) -> None:
        self._parent(name)
        self._entry(name, stat.S_IFREG | perm, data)

    def symlink(self, name: str, target: str) -> None:
        self._parent(name)
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def chardev(self, name: str, major: int, minor: int, perm: int = 0o600) -> None:
        self._parent(name)
        self._entry(name, stat.S_IFCHR | perm, rdev=(major, minor))

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        return self._out.getvalue()


# --------------------------------------------------------------------------- initramfs

COMMON_ETC = {
    "etc/passwd": "root::0:0:root:/root:/bin/sh\n",
    "etc/group": "root:x:0:\n",
    "etc/shadow": "root::19000:0:99999:7:::\n",
    "etc/hostname": "lab\n",
    "etc/issue": "Debian GNU/Linux lab busybox initramfs \\l\n\n",
    "etc/inittab": (
        "::sysinit:/etc/rc.local\n"
        "ttyS0::respawn:/sbin/getty -L 115200 ttyS0 vt100\n"
        "tty1::respawn:/sbin/getty 38400 tty1\n"
        "::ctrlaltdel:/sbin/reboot\n"
    ),
    "etc/rc.local": "#!/bin/sh\nhostname -F /etc/hostname\n",
}

# Shell helpers every scenario's /init can use. The kernel gives userspace only the last
# console= (ttyS0), so messages are duplicated to tty1 to appear on the screen as well.
INIT_PRELUDE = r"""#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /tmp /mnt /run /root /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
hostname -F /etc/hostname
say() { echo "$*"; echo "$*" > /dev/tty1; }
# run a command, its output to both the serial console and the screen
both() { "$@" 2>&1 | tee /dev/tty1; }
load_modules() {
    for m in $(cat /etc/lab-modules 2>/dev/null); do
        insmod "/lib/modules/$m" || say "lab: insmod $m failed"
    done
}
boot_to_login() {
    say "lab: starting getty on ttyS0 and tty1"
    exec /sbin/init
}
"""


def _host_binary_with_libs(cpio: CpioWriter, binary: Path) -> None:
    """Copy a dynamically linked host binary and every library ``ldd`` lists."""
    cpio.file(str(binary), binary.read_bytes(), 0o755)
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        m = re.search(r"(/\S+)\s+\(0x", line)
        if not m:
            continue
        lib = Path(m.group(1))
        real = lib.resolve()
        for name in (str(lib), str(real)):
            if not cpio.has(name):
                if name == str(real):
                    cpio.file(name, real.read_bytes(), 0o755)
                else:
                    cpio.symlink(name, str(real))


def build_initramfs(
    work: Path,
    kernel: Kernel,
    init: str | None,
    *,
    modules: list[str] | tuple[str, ...] = (),
    host_binaries: tuple[str, ...] = (),
    busybox: bool = True,
    extra_files: dict[str, str] | None = None,
) -> Path:
    """Build (or reuse from cache) a gzip cpio initramfs; returns its path under ``work``.

    ``init`` is the body of /init (the shell prelude is prepended); ``None`` leaves /init out.
    ``busybox=False`` leaves busybox out entirely (to build an initramfs with no usable init).
    """
    cpio = CpioWriter()
    for d in ("dev", "proc", "sys", "tmp", "mnt", "root", "run", "etc", "bin", "sbin"):
        cpio.directory(d)
    cpio.chardev("dev/console", 5, 1)
    cpio.chardev("dev/null", 1, 3, 0o666)
    if busybox:
        cpio.file("bin/busybox", BUSYBOX.read_bytes(), 0o755)
        cpio.symlink("bin/sh", "busybox")
        cpio.symlink("sbin/init", "../bin/busybox")
        cpio.symlink("sbin/getty", "../bin/busybox")
    files = dict(COMMON_ETC)
    files.update(extra_files or {})
    for name, text in sorted(files.items()):
        executable = text.startswith("#!")
        cpio.file(name, text.encode(), 0o755 if executable else 0o644)
    if modules:
        index = ModuleIndex(kernel.modules)
        order = index.load_order(list(modules))
        lines = []
        for name, path in order:
            rel = f"{name}.ko"
            cpio.file(f"lib/modules/{rel}", _read_module(path))
            lines.append(rel)
        cpio.file("etc/lab-modules", ("\n".join(lines) + "\n").encode())
    for binary in host_binaries:
        _host_binary_with_libs(cpio, Path(binary))
    if init is not None:
        cpio.file("init", (INIT_PRELUDE + init).encode(), 0o755)
    blob = cpio.finish()
    digest = hashlib.sha256(blob).hexdigest()[:16]
    dest = work / "initramfs" / f"{kernel.version}-{digest}.cpio.gz"
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_suffix(f".tmp{id(blob)}")
        tmp.write_bytes(gzip.compress(blob, compresslevel=6, mtime=0))
        tmp.replace(dest)
    return dest


# --------------------------------------------------------------------------- disk images


def make_ext4(
    path: Path,
    size_mb: int,
    files: dict[str, bytes] | None = None,
    label: str | None = None,
    extra: tuple[str, ...] = (),
) -> Path:
    """A real ext4 image made by the host's mke2fs, populated from ``files``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    src = path.with_name(path.name + ".src")
    if src.exists():
        shutil.rmtree(src)
    src.mkdir()
    for name, data in (files or {}).items():
        target = src / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    if path.exists():
        path.unlink()
    argv = ["mke2fs", "-q", "-F", "-t", "ext4", "-d", str(src), *extra]
    if label:
        argv += ["-L", label]
    argv += [str(path), f"{size_mb}M"]
    subprocess.run(argv, check=True, capture_output=True)
    shutil.rmtree(src)
    return path


def debugfs(image: Path, *requests: str) -> str:
    """Run debugfs write requests against an image; returns its output."""
    out = []
    for request in requests:
        proc = subprocess.run(
            ["debugfs", "-w", "-R", request, str(image)],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"debugfs {request!r} failed: {proc.stderr}")
        out.append(proc.stdout)
    return "".join(out)


def block_of(image: Path, path: str) -> int:
    """First physical block of a file or directory in an ext2/3/4 image."""
    proc = subprocess.run(
        ["debugfs", "-R", f"bmap {path} 0", str(image)], capture_output=True, text=True, check=False
    )
    text = proc.stdout.strip()
    if proc.returncode != 0 or not text.isdigit():
        raise RuntimeError(f"cannot map {path} in {image}: {proc.stderr}")
    return int(text)


def block_size(image: Path) -> int:
    proc = subprocess.run(
        ["dumpe2fs", "-h", str(image)], capture_output=True, text=True, check=False
    )
    m = re.search(r"^Block size:\s+(\d+)", proc.stdout, re.MULTILINE)
    if not m:
        raise RuntimeError(f"cannot read block size of {image}")
    return int(m.group(1))
