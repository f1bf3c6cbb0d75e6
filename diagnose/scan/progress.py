"""Progress on stderr: one live line on a terminal, a plain line every few seconds otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from ..model import STATUSES
from .runner import Tally

_SHORT = {"failed": "F", "degraded": "D", "in-progress": "P", "healthy": "H",
          "uncertain": "U", "skipped": "S"}


def line(t: Tally, now: float | None = None, width: int = 24) -> str:
    now = time.monotonic() if now is None else now
    todo = max(0, t.total - t.resumed)
    elapsed = max(1e-9, now - t.started)
    rate = t.done / elapsed
    left = todo - t.done
    eta = f"{left / rate:,.0f}s" if rate > 0 and left > 0 else ("0s" if left <= 0 else "?")
    frac = t.done / todo if todo else 1.0
    filled = int(frac * width)
    bar = "#" * filled + "-" * (width - filled)
    counts = " ".join(f"{_SHORT[s]}:{t.by_status[s]}" for s in STATUSES if t.by_status.get(s))
    resumed = f" (+{t.resumed} resumed)" if t.resumed else ""
    return (f"[{bar}] {t.done}/{todo}{resumed} {counts} {rate:.1f}/s ETA {eta}").rstrip()


class Progress:
    def __init__(self, stream: TextIO | None = None, *, interval: float = 5.0,
                 tty: bool | None = None):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.interval = interval
        self._last = 0.0
        self._shown = False

    def __call__(self, t: Tally) -> None:
        now = time.monotonic()
        finished = t.done >= t.total - t.resumed
        if self.tty:
            self.stream.write("\r\x1b[K" + line(t, now))
            self._shown = True
        elif finished or now - self._last >= self.interval:
            self._last = now
            self.stream.write("scan: " + line(t, now) + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self._shown:
            self.stream.write("\n")
            self.stream.flush()
