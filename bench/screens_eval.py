"""Verdict category accuracy on the real public screenshots in ../shared/screens/real/.

    python bench/screens_eval.py [--dir PATH] [--json OUT] [--show-text]

Each screenshot is diagnosed alone (no console log, no OS hint) by the whole pipeline
(`Analyzer.analyse`), and the verdict's category is compared with the category its file name
gives, mapped as ../shared/screens/README.md says. Files of the `other` group carry no category
in their name; their expected verdict is set below from the notes in SOURCES.json, one reason
each. The images are read in place: they are never copied into the project (their licences
belong to their sources).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from diagnose.pipeline import Analyzer, evidence_from_bytes  # noqa: E402
from diagnose.rules import CATEGORY_PARENT  # noqa: E402

DEFAULT_DIR = ROOT.parent / "shared" / "screens" / "real"

# file-name category -> accepted verdict categories (shared/screens/README.md)
MAPPING = {
    "windows-bsod": {"windows-bsod"},
    "windows-boot-error": {"windows-boot-error", "windows-recovery"},
    "emergency-mode": {"emergency-mode"},
    "initramfs-shell": {"dracut-initramfs-timeout"},
    "bios-no-boot": {"firmware-no-bootable-device"},
    "login-prompt": {"healthy"},
}

# `other`: expected verdict per file, from its notes in SOURCES.json
OTHER = {
    "other__alma-anaconda-rescue-shell.png":
        ("unknown", "installer rescue shell chosen on purpose: no boot failure of an installed OS"),
    "other__azure-serial-console-blank.jpg":
        ("unknown", "blank serial console pane: nothing to judge (README: uncertain)"),
    "other__fedora-anaconda-traceback.png":
        ("unknown", "installer crash: no category of the taxonomy applies"),
    "other__fedora-dnf-upgrade-fail.png":
        ("healthy", "logged-in shell of a running OS; only a dnf command failed"),
    "other__firewheel-ubuntu-shell.png": ("healthy", "logged-in shell of a running OS"),
    "other__forensicvm-grub-menu-healthy.jpg": ("healthy", "GRUB menu (README: menus are healthy)"),
    "other__forensicvm-ovmf-boot-manager.jpg":
        ("healthy", "UEFI boot manager menu (README: menus are healthy)"),
    "other__forensicvm-seabios-boot-menu.jpg":
        ("healthy", "SeaBIOS boot menu (README: menus are healthy)"),
    "other__forensicvm-win10-desktop.jpg": ("healthy", "Windows desktop"),
    "other__forensicvm-win7-black-desktop.jpg": ("healthy", "Windows desktop, black wallpaper"),
    "other__intel-detect-plain-blue.png":
        ("unknown", "uniform blue image, no text: not a blue screen, nothing to judge"),
    "other__xenrt-win2003-desktop.jpg": ("healthy", "Windows desktop"),
    "other__xenrt-win8-desktop.jpg": ("healthy", "Windows desktop, light-blue wallpaper"),
}

# Left out of the score, each with its reason (photos of monitors, deliberately altered images).
EXCLUDED: dict[str, str] = {}


def expected_for(name: str) -> set[str] | None:
    group = name.split("__", 1)[0]
    if group == "other":
        exp = OTHER.get(name)
        return {exp[0]} if exp else None
    return MAPPING.get(group)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    ap.add_argument("--json", type=Path, help="write the rows as JSON here")
    ap.add_argument("--show-text", action="store_true", help="print what was read")
    args = ap.parse_args(argv)
    if not args.dir.is_dir():
        print(f"{args.dir}: not found", file=sys.stderr)
        return 2
    analyzer = Analyzer.load()
    rows = []
    files = sorted(p for p in args.dir.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    for path in files:
        if path.name in EXCLUDED:
            continue
        want = expected_for(path.name)
        if want is None:
            print(f"{path.name}: no expected category known; skipped", file=sys.stderr)
            continue
        data = path.read_bytes()
        ev = evidence_from_bytes(None, name=path.name, origin="-", screenshot=data,
                                 screenshot_origin=str(path))
        t0 = time.perf_counter()
        diag = analyzer.analyse(ev)
        secs = time.perf_counter() - t0
        got = diag.verdict.category
        ok = got in want or CATEGORY_PARENT.get(got) in want
        screen = diag.screen
        rows.append({"file": path.name, "expected": "|".join(sorted(want)), "got": got,
                     "ok": ok, "rule": diag.verdict.rule_id or "-",
                     "reader": screen.reader if screen else "unreadable",
                     "seconds": round(secs, 2)})
        if args.show_text and screen is not None:
            print(f"--- {path.name}")
            for line in screen.rule_lines():
                print(f"    {line}")
    w = max(len(r["file"]) for r in rows)
    print(f"{'file':{w}}  {'expected':28} {'got':28} ok   {'reader':12} {'s':>5}  rule")
    for r in rows:
        print(f"{r['file']:{w}}  {r['expected']:28} {r['got']:28} {'yes' if r['ok'] else 'NO ':3}  "
              f"{r['reader']:12} {r['seconds']:5.2f}  {r['rule']}")
    right = sum(r["ok"] for r in rows)
    print(f"\n{right}/{len(rows)} right ({right / len(rows):.1%}); "
          f"total {sum(r['seconds'] for r in rows):.1f} s")
    if EXCLUDED:
        print("excluded:")
        for name, why in EXCLUDED.items():
            print(f"  {name}: {why}")
    else:
        print("excluded: none")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
