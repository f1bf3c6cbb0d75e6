"""Client-side rate limits: one token bucket per API action, slowing down when ECS throttles.

A bucket hands out reservations: a caller takes a token (possibly going into debt) under a lock
and sleeps outside it, so many worker threads share one bucket fairly and never busy-wait.
When ECS answers Throttling the bucket halves its rate; it then climbs back towards the nominal
rate by a small step per quiet second.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping

from ..errors import UsageError

# Defaults well under ECS's published per-API flow-control limits.
DEFAULT_RATES: dict[str, float] = {
    "DescribeInstances": 10.0,
    "GetInstanceConsoleOutput": 20.0,
    "GetInstanceScreenshot": 20.0,
    "DescribeInstanceHistoryEvents": 20.0,
    "DescribeInstancesFullStatus": 20.0,
}
FALLBACK_RATE = 10.0
RECOVERY_PER_SECOND = 0.05  # fraction of the nominal rate regained per quiet second
MIN_FRACTION = 1 / 64  # never slower than this share of the nominal rate

_RATE_RE = re.compile(r"^([A-Za-z][A-Za-z0-9]{0,63})=(\d+(?:\.\d+)?)(?:/s)?$")


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up."""

    def __init__(self, rate: float, burst: float | None = None, *,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.nominal = float(rate)
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else max(1.0, rate))
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.burst
        self._stamp = clock()
        self._calm_since = self._stamp
        self._lock = threading.Lock()
        self.throttled = 0  # how many times the server said Throttling
        self.waited = 0.0  # total seconds callers slept here

    def _refill(self, now: float) -> None:
        if now > self._stamp:
            if self.rate < self.nominal:
                calm = now - max(self._calm_since, self._stamp)
                if calm > 0:
                    self.rate = min(self.nominal,
                                    self.rate + self.nominal * RECOVERY_PER_SECOND * calm)
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now

    def reserve(self) -> float:
        """Take one token; return the seconds the caller must wait before using it."""
        with self._lock:
            now = self._clock()
            self._refill(now)
            self._tokens -= 1.0
            wait = 0.0 if self._tokens >= 0 else -self._tokens / self.rate
            self.waited += wait
            return wait

    def acquire(self) -> float:
        wait = self.reserve()
        if wait > 0:
            self._sleep(wait)
        return wait

    def on_throttled(self) -> None:
        """The server throttled a call: halve the rate and drop any saved-up burst."""
        with self._lock:
            now = self._clock()
            self._refill(now)
            self.throttled += 1
            self.rate = max(self.nominal * MIN_FRACTION, self.rate / 2)
            self._tokens = min(self._tokens, 0.0)
            self._calm_since = now


class RateLimits:
    """The buckets of one scan, keyed by API action name."""

    def __init__(self, rates: Mapping[str, float] | None = None, *,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.rates = {**DEFAULT_RATES, **dict(rates or {})}
        self._clock, self._sleep = clock, sleep
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()

    def bucket(self, action: str) -> TokenBucket:
        with self._lock:
            b = self._buckets.get(action)
            if b is None:
                b = TokenBucket(self.rates.get(action, FALLBACK_RATE), clock=self._clock,
                                sleep=self._sleep)
                self._buckets[action] = b
            return b

    def acquire(self, action: str) -> float:
        return self.bucket(action).acquire()

    def throttled(self, action: str) -> None:
        self.bucket(action).on_throttled()

    def snapshot(self) -> dict[str, dict[str, float]]:
        with self._lock:
            return {a: {"rate": round(b.rate, 2), "nominal": b.nominal,
                        "throttled": b.throttled, "waited": round(b.waited, 2)}
                    for a, b in sorted(self._buckets.items())}


def parse_rate(text: str) -> tuple[str, float]:
    """``GetInstanceScreenshot=5/s`` -> ("GetInstanceScreenshot", 5.0)."""
    m = _RATE_RE.fullmatch(text.strip())
    if not m or float(m.group(2)) <= 0:
        raise UsageError(f"--rate {text!r}: expected API=N/s with N > 0, "
                         "e.g. GetInstanceScreenshot=10/s")
    return m.group(1), float(m.group(2))
