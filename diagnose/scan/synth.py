"""Synthetic regions for tests and benchmarks: the demo region's real instances, replicated
under new ids (console logs and screenshots are the demo's real captures, unchanged)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ..testing.ecs_server import DEMO_REGION_DIR


def synthetic_id(n: int) -> str:
    return "i-syn" + hashlib.sha256(str(n).encode()).hexdigest()[:12] + f"{n:07d}"


def write_synthetic_region(root: str | Path, count: int, *, region_id: str = "cn-hangzhou",
                           source: str | Path = DEMO_REGION_DIR) -> tuple[Path, list[str]]:
    """``count`` instances cycling through the source region's; files are hard links when the
    file system allows (10,000 instances cost little disk). Returns (dir, ids)."""
    root = Path(root)
    src = Path(source)
    spec = json.loads((src / "region.json").read_text(encoding="utf-8"))
    base = spec["instances"]
    root.mkdir(parents=True, exist_ok=True)
    entries, ids = [], []
    for n in range(count):
        proto = base[n % len(base)]
        iid = synthetic_id(n)
        entry = {k: v for k, v in proto.items() if k != "faults"}
        entry["id"] = iid
        entry["name"] = f"{proto['name']}-{n}"
        entries.append(entry)
        ids.append(iid)
        folder = root / iid
        folder.mkdir(exist_ok=True)
        for name in ("console.log", "screenshot.png", "screenshot.jpg"):
            f = src / proto["id"] / name
            if f.is_file() and not (folder / name).exists():
                try:
                    os.link(f, folder / name)
                except OSError:
                    (folder / name).write_bytes(f.read_bytes())
    (root / "region.json").write_text(json.dumps({"region_id": region_id,
                                                  "instances": entries}))
    return root, ids
