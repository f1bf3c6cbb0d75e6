"""Build ``diagnose/demo_region/`` from the real QEMU lab fixtures.

    python -m diagnose.testing.build_demo_region [--fixtures tests/fixtures/lab]

Console logs and screenshots are copied byte for byte from ``tests/fixtures/lab/<run>/``
(``serial.log`` -> ``console.log``, ``screen.png`` -> ``screenshot.png``). The instance facts,
tags and platform events are written here: they describe a made-up demo fleet. A fixture that
does not exist yet is left out (and listed as missing in SOURCES.md), so the script can be run
again as the lab produces more.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..fetchers.base import INSTANCE_ID_RE

PACKAGE_DIR = Path(__file__).resolve().parent.parent
DEMO_DIR = PACKAGE_DIR / "demo_region"
DEFAULT_FIXTURES = PACKAGE_DIR.parent / "tests" / "fixtures" / "lab"
REGION_ID = "cn-hangzhou"


@dataclass(frozen=True)
class Spec:
    tag: str  # becomes part of the instance id
    name: str
    fixture: str | None  # lab run directory, or None for instances without console/screen
    os_type: str = "linux"
    os_name: str = "Debian 12.8 64 bit"
    instance_type: str = "ecs.g7.large"
    status: str = "Running"
    created: str = "2025-03-18T02:41Z"
    zone: str = "cn-hangzhou-h"
    tags: dict[str, str] = field(default_factory=dict)
    health: str = "Ok"
    events: tuple[dict[str, Any], ...] = ()
    scheduled: tuple[dict[str, Any], ...] = ()
    expect: dict[str, str] | None = None  # for instances without a fixture
    note: str = ""


SPECS = (
    Spec("vfspanic", "web-01", "vfs-panic-cloud__text", tags={"env": "prod", "app": "web"},
         note="kernel without its initramfs: VFS cannot mount root"),
    Spec("initpanic", "api-02", "init-exits__text", instance_type="ecs.c7.large",
         zone="cn-hangzhou-i", tags={"env": "prod", "app": "api"},
         note="init exits at boot: Attempted to kill init"),
    Spec("oomkill", "worker-03", "oom-kill__text", instance_type="ecs.r7.large",
         tags={"env": "prod", "app": "worker"}, note="OOM killer at work, system stays up"),
    Spec("oompanic", "batch-04", "oom-panic__text", instance_type="ecs.g7.xlarge",
         zone="cn-hangzhou-j", tags={"env": "staging", "app": "batch"},
         note="panic_on_oom: kernel panic on out of memory"),
    Spec("fsck", "db-05", "fsck-required__text", instance_type="ecs.r7.xlarge",
         tags={"env": "prod", "app": "db"}, note="fsck found errors: run fsck manually"),
    Spec("emergency", "files-06", "systemd-emergency-fstab__text",
         tags={"env": "prod", "app": "files"}, note="bad fstab entry: emergency mode"),
    Spec("healthy", "bastion-07", "healthy-login-cloud__text",
         instance_type="ecs.u1-c1m2.large", tags={"env": "prod", "app": "bastion"},
         health="Warning", scheduled=({"type": "SystemMaintenance.Reboot", "in_hours": 72,
                                       "reason": "host maintenance"},),
         note="reached the login prompt; a maintenance reboot is scheduled"),
    Spec("ext4panic", "log-08", "ext4-errors-panic__text", tags={"env": "prod", "app": "logs"},
         note="ext4 errors with errors=panic"),
    Spec("windows", "win-09", None, os_type="windows",
         os_name="Windows Server 2022 Datacenter 64-bit", instance_type="ecs.g7.xlarge",
         tags={"env": "prod", "app": "ad"}, expect={"status": "skipped"},
         note="Windows: no console output; no real Windows screenshot exists, so the "
              "screenshot call returns an empty image"),
    Spec("retired", "legacy-10", None, instance_type="ecs.s2.large", created="2017-06-14T03:12Z",
         os_name="CentOS 6.9 64 bit", tags={"env": "legacy"}, expect={"status": "skipped"},
         note="retired type family s2, created 2017: ECS serves neither artifact"),
    Spec("stopped", "dev-11", None, status="Stopped", tags={"env": "dev"},
         events=({"type": "InstanceExpiration.Stop", "status": "Executed", "age_hours": 30,
                  "reason": "subscription expired"},),
         expect={"status": "skipped"}, note="stopped after its subscription expired"),
    Spec("noinit", "ci-12", "no-working-init__text", instance_type="ecs.c7.large",
         tags={"env": "ci"}, note="no working init found"),
)


def instance_id(n: int, tag: str) -> str:
    value = "i-" + f"bp1demo{tag}".ljust(17, "0")[:17] + f"{n:03d}"
    assert INSTANCE_ID_RE.fullmatch(value), value
    return value


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build(fixtures: Path = DEFAULT_FIXTURES, out: Path = DEMO_DIR) -> list[str]:
    """(Re)write the demo region; returns the fixtures that were missing."""
    for child in out.iterdir() if out.exists() else ():
        if child.is_dir() and INSTANCE_ID_RE.fullmatch(child.name):
            shutil.rmtree(child)
    out.mkdir(parents=True, exist_ok=True)
    entries: list[dict[str, Any]] = []
    rows: list[str] = []
    missing: list[str] = []
    for n, spec in enumerate(SPECS, start=1):
        iid = instance_id(n, spec.tag)
        expect = spec.expect
        files: list[str] = []
        source = "-"
        if spec.fixture is not None:
            run = fixtures / spec.fixture
            if not (run / "serial.log").is_file():
                missing.append(spec.fixture)
                continue
            meta = json.loads((run / "meta.json").read_text())
            expect = {k: meta["expect"][k] for k in ("status", "category")}
            folder = out / iid
            folder.mkdir()
            shutil.copyfile(run / "serial.log", folder / "console.log")
            files.append(f"`console.log` = `serial.log` sha256 {_sha(folder / 'console.log')[:16]}")
            if (run / "screen.png").is_file():
                shutil.copyfile(run / "screen.png", folder / "screenshot.png")
                files.append(f"`screenshot.png` = `screen.png` sha256 "
                             f"{_sha(folder / 'screenshot.png')[:16]}")
            source = (f"`tests/fixtures/lab/{spec.fixture}` ({meta['kernel']['version']}, "
                      f"QEMU {meta.get('qemu_version', '?')}, {meta.get('created', '?')[:10]})")
        entry: dict[str, Any] = {
            "id": iid, "name": spec.name, "OSType": spec.os_type, "OSName": spec.os_name,
            "InstanceType": spec.instance_type,
            "InstanceTypeFamily": ".".join(spec.instance_type.split(".")[:2]),
            "Status": spec.status, "CreationTime": spec.created, "ZoneId": spec.zone,
            "tags": spec.tags, "HealthStatus": spec.health, "console_age_minutes": 4,
            "events": list(spec.events), "scheduled": list(spec.scheduled),
            "fixture": spec.fixture, "expect": expect, "note": spec.note,
        }
        entries.append(entry)
        rows.append(f"| `{iid}` | {spec.name} | {spec.note} | {source} | "
                    f"{'<br>'.join(files) or 'none'} | {json.dumps(expect)} |")
    (out / "region.json").write_text(json.dumps({"region_id": REGION_ID, "instances": entries},
                                                indent=1) + "\n")
    (out / "SOURCES.md").write_text(_sources(rows, missing))
    return missing


def _sources(rows: list[str], missing: list[str]) -> str:
    lines = [
        "# Demo region: where every file comes from",
        "",
        "Written by `python -m diagnose.testing.build_demo_region`; do not edit by hand.",
        "",
        "Every `console.log` and `screenshot.png` below is a byte-for-byte copy of a file the",
        "lab recorded from a real Debian kernel booting in QEMU (see `tests/fixtures/README.md`",
        "for how those runs were made). The instance facts (names, types, zones, creation",
        "times), tags, health statuses and platform events in `region.json` are made up for",
        "the demo fleet; `expect` is copied from the fixture's `meta.json`.",
        "",
        "| instance | name | what it shows | source run | files | expect |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        "Notes:",
        "",
        "- Windows: there is no real Windows VM in the lab, so no Windows screenshot (BSOD,",
        "  update screens) is included. The Windows instance has no `screenshot.png`; the local",
        "  endpoint answers GetInstanceScreenshot with an empty image, which the fetcher",
        "  records as a reason. Add real Windows screens here when they exist; do not draw them.",
        "- ECS documents the screenshot as JPEG; these are the PNGs QEMU wrote. The fetcher",
        "  sniffs the format, so both work.",
        "- The retired-type (s2, created 2017) and stopped instances have no files: ECS would",
        "  not serve console output or a screenshot for them.",
    ]
    if missing:
        lines += ["", "Fixtures not recorded yet (their instances are left out): "
                  + ", ".join(f"`{m}`" for m in missing) + "."]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fixtures", type=Path, default=DEFAULT_FIXTURES)
    parser.add_argument("--out", type=Path, default=DEMO_DIR)
    args = parser.parse_args()
    missing = build(args.fixtures, args.out)
    print(f"wrote {args.out}" + (f"; missing fixtures: {', '.join(missing)}" if missing else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
