"""Small builders for ECS tests: a real minimal PNG, and region.json instance entries."""

from __future__ import annotations

import struct
import zlib
from typing import Any


def tiny_png(width: int = 4, height: int = 3, grey: int = 0x80) -> bytes:
    """A valid greyscale PNG, built with zlib (no imaging library needed)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + bytes([grey]) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))


def instance_entry(n: int, **override: Any) -> dict[str, Any]:
    """A Running Linux g7 instance ``i-bp1test<n, 12 digits>`` for ``write_region``."""
    entry: dict[str, Any] = {
        "id": f"i-bp1test{n:012d}", "name": f"node-{n}", "OSType": "linux",
        "OSName": "Debian 12 64-bit", "InstanceType": "ecs.g7.large",
        "InstanceTypeFamily": "ecs.g7", "Status": "Running",
        "CreationTime": "2024-03-02T08:15Z", "ZoneId": "cn-hangzhou-h",
        "tags": {"env": "prod" if n % 2 else "dev"},
    }
    entry.update(override)
    return entry
