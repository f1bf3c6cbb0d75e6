"""Command line of the lab: ``python -m lab setup|list|run|fixtures``."""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
import traceback
from concurrent.futures import ThreadPoolExecutor

from lab import core

APT_PACKAGES = [
    "qemu-system-x86",  # qemu-system-x86_64
    "qemu-utils",  # qemu-img
    "busybox-static",  # the initramfs userland
    "e2fsprogs",  # mke2fs, debugfs, e2fsck (also copied into the initramfs)
    "cpio",
    "debootstrap",
    "fdisk",  # sfdisk, for the GRUB disk images
    "openssl",  # a root password hash for one emergency-mode scenario
    "grub-pc-bin",
    "dpkg",
]


def load_scenarios() -> dict[str, core.Scenario]:
    importlib.import_module("lab.scenarios")
    try:
        importlib.import_module("lab.scenarios_debian")
    except ModuleNotFoundError as exc:
        if exc.name != "lab.scenarios_debian":
            raise
    return core.REGISTRY


def apt_packages() -> list[str]:
    """The lab's host packages, plus ``HOST_APT_PACKAGES`` of lab.debian if it declares any."""
    packages = list(APT_PACKAGES)
    try:
        debian = importlib.import_module("lab.debian")
    except ModuleNotFoundError as exc:
        if exc.name != "lab.debian":
            raise
    else:
        packages += [p for p in getattr(debian, "HOST_APT_PACKAGES", ()) if p not in packages]
    return packages


def cmd_setup(_: argparse.Namespace) -> int:
    subprocess.run(["apt-get", "update"], check=True)
    subprocess.run(
        ["apt-get", "install", "-y", "--no-install-recommends", *apt_packages()], check=True
    )
    for flavour in core.KERNEL_META:
        kernel = core.get_kernel(flavour, core.WORK_DIR)
        print(f"kernel {flavour}: {kernel.package}")
    return 0


def cmd_list(_: argparse.Namespace) -> int:
    for s in load_scenarios().values():
        modes = ",".join(s.modes)
        print(f"{s.name:24} {s.kernel:8} {modes:8} {s.expect_status}/{s.expect_category}")
    return 0


def _modes(scenario: core.Scenario, wanted: str) -> list[str]:
    if wanted == "both":
        return list(scenario.modes)
    return [wanted] if wanted in scenario.modes else []


def cmd_run(args: argparse.Namespace) -> int:
    registry = load_scenarios()
    if args.all:
        names = list(registry)
    else:
        unknown = [n for n in args.names if n not in registry]
        if unknown or not args.names:
            print(f"unknown scenario(s): {' '.join(unknown) or '(none given)'}", file=sys.stderr)
            return 2
        names = args.names
    jobs = [(registry[n], m) for n in names for m in _modes(registry[n], args.mode)]
    # fetch kernels first, sequentially: parallel runs share them
    for flavour in sorted({s.kernel for s, _ in jobs}):
        core.get_kernel(flavour, core.WORK_DIR)

    def one(job: tuple[core.Scenario, str]) -> tuple[str, core.RunResult | None, str]:
        scenario, mode = job
        label = f"{scenario.name}__{mode}"
        try:
            result = core.run_scenario(scenario, mode, log=lambda m: print(m, flush=True))
        except Exception:  # noqa: BLE001 - report every failed run, keep the others going
            return label, None, traceback.format_exc()
        if result.timed_out or result.aborted_on:
            why = "timed out" if result.timed_out else f"aborted on {result.aborted_on!r}"
            return label, None, f"{why}; see {result.out}/serial.log (no fixture written)"
        if not args.no_fixtures:
            core.write_fixture(result.out)
        return label, result, ""

    failures = 0
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for label, result, error in pool.map(one, jobs):
            if result is None:
                failures += 1
                print(f"FAILED {label}\n{error}", file=sys.stderr, flush=True)
                continue
            secs = result.seconds_to_failure
            state = "TIMED OUT" if result.timed_out else f"{secs}s"
            print(f"done {label}: {state} -> {result.out}", flush=True)
    return 1 if failures else 0


def cmd_fixtures(args: argparse.Namespace) -> int:
    runs = sorted(p for p in core.OUT_DIR.glob("*__*") if (p / "meta.json").exists())
    if args.names:
        runs = [p for p in runs if p.name.split("__")[0] in args.names]
    for run in runs:
        meta = json.loads((run / "meta.json").read_text())
        if meta["timed_out"] or meta.get("aborted_on"):
            print(f"skip {run.name}: the run timed out or aborted", file=sys.stderr)
            continue
        print(f"fixture {core.write_fixture(run)}")
    return 0


def cmd_table(_: argparse.Namespace) -> int:
    """Markdown rows describing tests/fixtures/lab/ (for tests/fixtures/README.md)."""
    print("| fixture | what happened | kernel | mode | s to failure (wall / guest) |")
    print("|---|---|---|---|---|")
    for d in sorted(core.FIXTURES_DIR.glob("*__*")):
        meta = json.loads((d / "meta.json").read_text())
        display = meta["display"]
        mode = f"{meta['mode']} {display['width']}x{display['height']}"
        expect = f"{meta['expect']['status']}/{meta['expect']['category']}"
        wall = meta["seconds_to_failure"]
        guest = meta.get("guest_seconds_at_failure")
        secs = f"{wall if wall is not None else '-'} / {round(guest, 1) if guest else '-'}"
        print(
            f"| `{d.name}` | {meta['description']} (expect `{expect}`) "
            f"| {meta['kernel']['version']} | {mode} | {secs} |"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("setup", help="apt-get install the lab's tools and fetch the kernels")
    sub.add_parser("list", help="list scenarios")
    run = sub.add_parser("run", help="boot scenarios and write lab/out + tests/fixtures/lab")
    run.add_argument("names", nargs="*", help="scenario names")
    run.add_argument("--all", action="store_true", help="every registered scenario")
    run.add_argument("--mode", choices=["text", "fb", "both"], default="both")
    run.add_argument("--jobs", type=int, default=1, help="parallel QEMU runs (2 cores: 2)")
    run.add_argument("--no-fixtures", action="store_true", help="only write lab/out")
    fix = sub.add_parser("fixtures", help="copy lab/out runs into tests/fixtures/lab")
    fix.add_argument("names", nargs="*")
    sub.add_parser("table", help="print the fixture table for tests/fixtures/README.md")
    args = parser.parse_args(argv)
    handler = {
        "setup": cmd_setup,
        "list": cmd_list,
        "run": cmd_run,
        "fixtures": cmd_fixtures,
        "table": cmd_table,
    }[args.command]
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
