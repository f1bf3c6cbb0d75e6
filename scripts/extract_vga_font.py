#!/usr/bin/env python3
"""Write the console fonts the screenshot reader uses into diagnose/screen/fonts/.

    python3 scripts/extract_vga_font.py [--rom ROM] [--kernel VMLINUZ] [--check]

- vga8x16.bin from the SeaBIOS VGA option ROM (Debian package `seabios`);
- linux8x16.bin from a Linux kernel image (e.g. /boot/vmlinuz-*, or the one the lab unpacks under
  lab/work/kernels/), the font the framebuffer console draws.

Tables are located by their structure (see diagnose/screen/font.py), not by known glyph bytes.
--check compares what the sources hold with the committed files and exits 1 on a difference.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from diagnose.screen.font import (  # noqa: E402
    BUNDLED,
    BUNDLED_LINUX,
    ROM_PATHS,
    load_kernel_font,
    load_rom_font,
)

LAB_KERNELS = sorted((ROOT / "lab" / "work" / "kernels").glob("*/root/boot/vmlinuz-*"))


def _one(label: str, found, target: Path, check: bool) -> int:
    if found is None:
        print(f"{label}: no 8x16 font table found", file=sys.stderr)
        return 2
    table, src = found
    print(f"{label}: {src}: {len(table)} bytes, sha256 {hashlib.sha256(table).hexdigest()}")
    if check:
        same = target.is_file() and target.read_bytes() == table
        print(f"  {target.relative_to(ROOT)}: {'identical' if same else 'DIFFERENT'}")
        return 0 if same else 1
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(table)
    print(f"  wrote {target.relative_to(ROOT)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rom", type=Path, help="a VGA BIOS image (default: SeaBIOS's)")
    ap.add_argument("--kernel", type=Path, help="a kernel image (default: /boot, then the lab's)")
    ap.add_argument("--check", action="store_true", help="compare with the committed files only")
    args = ap.parse_args(argv)
    rc = _one("vga8x16", load_rom_font((args.rom,) if args.rom else ROM_PATHS), BUNDLED,
              args.check)
    found = load_kernel_font([args.kernel]) if args.kernel else (
        load_kernel_font() or load_kernel_font(LAB_KERNELS))
    rc = max(rc, _one("linux8x16", found, BUNDLED_LINUX, args.check))
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
