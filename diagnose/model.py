"""The small frozen values that pass between the pipeline's stages.

fetch -> extract -> match -> decide -> render: each stage takes and returns only these.
"Could not get X" is a value too (`Artifact.available = False` with a reason), never an exception.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

STATUSES = ("failed", "in-progress", "degraded", "healthy", "uncertain", "skipped")
SEVERITIES = ("critical", "error", "warning", "info", "positive")
STAGES = ("firmware", "bootloader", "kernel", "initramfs", "init", "services", "login")
SOURCES = ("console", "screen")


@dataclass(frozen=True)
class Artifact:
    """One thing we tried to get: the console log or the screenshot."""

    name: str  # "console" | "screenshot"
    available: bool
    bytes: int = 0
    reason: str | None = None  # why it is missing or unusable
    origin: str | None = None  # where it came from: a path, "stdin", "ecs:GetInstanceConsoleOutput"
    detail: dict[str, Any] = field(default_factory=dict)  # e.g. last_update_time, format

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"available": self.available, "bytes": self.bytes,
                               "reason": self.reason}
        if self.origin is not None:
            out["origin"] = self.origin
        out.update(self.detail)
        return out


@dataclass(frozen=True)
class Line:
    """A cleaned console line and where it stood in the original input (1-based)."""

    number: int
    text: str


@dataclass(frozen=True)
class StageMark:
    name: str  # one of STAGES
    line: int  # original line number where the stage was first seen
    time: float | None  # kernel timestamp (seconds since boot) at or before that line


@dataclass(frozen=True)
class Boot:
    index: int  # 0-based, in log order; the last one is judged
    lines: tuple[Line, ...]
    stages: tuple[StageMark, ...] = ()

    @property
    def first_line(self) -> int:
        return self.lines[0].number if self.lines else 0

    @property
    def last_line(self) -> int:
        return self.lines[-1].number if self.lines else 0


@dataclass(frozen=True)
class ConsoleLog:
    """The console log after extraction: decoded, cleaned, split into boots."""

    boots: tuple[Boot, ...]
    total_lines: int
    raw_bytes: int
    notes: tuple[str, ...] = ()  # e.g. "invalid UTF-8 replaced", "NUL padding removed"

    @property
    def last_boot(self) -> Boot | None:
        return self.boots[-1] if self.boots else None


@dataclass(frozen=True)
class Box:
    """A rectangle on the screenshot, in image pixels."""

    x: int
    y: int
    w: int
    h: int


@dataclass(frozen=True)
class Finding:
    rule_id: str
    category: str
    status: str
    severity: str
    priority: int
    title: str
    source: str  # "console" | "screen"
    boot: int  # boot index (screen findings: -1)
    line: int  # original line number (screen: text line number)
    text: str  # the evidence line
    fields: tuple[tuple[str, str], ...] = ()  # named evidence, in pattern order
    boxes: tuple[Box, ...] = ()  # where on the screenshot (screen findings)

    @property
    def field_dict(self) -> dict[str, str]:
        return dict(self.fields)

    def to_json(self) -> dict[str, Any]:
        return {"rule_id": self.rule_id, "category": self.category, "severity": self.severity,
                "source": self.source, "boot": self.boot, "line": self.line, "text": self.text,
                "fields": self.field_dict}


@dataclass(frozen=True)
class Verdict:
    status: str
    category: str
    rule_id: str | None
    title: str
    summary: str
    confidence: float
    decided_by: Finding | None = None
    remediation: tuple[str, ...] = ()
    references: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "category": self.category, "rule_id": self.rule_id,
                "title": self.title, "summary": self.summary,
                "confidence": round(self.confidence, 2)}


@dataclass(frozen=True)
class Subject:
    """What was diagnosed: a file, an instance, a VM. All strings are untrusted."""

    kind: str  # "file" | "ecs" | "qemu" | "case"
    name: str
    facts: tuple[tuple[str, str], ...] = ()  # e.g. ("region", "cn-hangzhou"), ("os", "linux")


@dataclass(frozen=True)
class Event:
    """A platform event about the instance (e.g. ECS SystemFailure.Reboot), untrusted text."""

    time: str  # ISO-8601 UTC
    kind: str  # e.g. "SystemFailure.Reboot", "SystemMaintenance.Reboot"
    status: str  # e.g. "Executed", "Scheduled", "Inquiring"
    description: str = ""
    scheduled: bool = False  # True: upcoming (not yet happened)


@dataclass(frozen=True)
class Evidence:
    """What a fetcher hands to the analysis: raw bytes plus what could not be had."""

    subject: Subject
    console: bytes | None
    screenshot: bytes | None
    artifacts: tuple[Artifact, ...]  # one per thing tried ("console", "screenshot", "events")
    events: tuple[Event, ...] = ()
    os_hint: str | None = None  # "linux" | "windows" when known
    skip_reason: str | None = None  # set when nothing at all could be fetched


@dataclass(frozen=True)
class Diagnosis:
    """Everything the renderers need."""

    subject: Subject
    verdict: Verdict
    findings: tuple[Finding, ...]
    console: ConsoleLog | None
    artifacts: tuple[Artifact, ...]
    tool_version: str
    rules_version: str
    created: str  # ISO-8601 UTC
    events: tuple[Event, ...] = ()
    screen: Any = None  # a diagnose.screen result when a screenshot was read (issue: screenshots)
