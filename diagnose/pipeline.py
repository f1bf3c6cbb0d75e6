"""The pipeline, top to bottom: evidence -> extract -> match -> decide -> Diagnosis.

Rendering (terminal, JSON, HTML) takes the Diagnosis from here.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field, replace

from . import __version__
from .decide import decide
from .engine import CompiledPack
from .extract import console as cx
from .match import collect
from .model import Artifact, ConsoleLog, Diagnosis, Evidence, Finding, Subject
from .rules import RulePack, load_pack


@dataclass
class Analyzer:
    """A loaded and compiled rule pack, reusable across many diagnoses (fleet scans)."""

    pack: RulePack
    engine: str | None = None
    _compiled: dict[tuple[str, str | None], CompiledPack] = field(default_factory=dict)

    @classmethod
    def load(cls, extra_rule_dirs=None, engine: str | None = None) -> Analyzer:
        return cls(load_pack(extra_rule_dirs), engine)

    def compiled(self, source: str = "console", os_name: str | None = None) -> CompiledPack:
        key = (source, os_name)
        if key not in self._compiled:
            self._compiled[key] = CompiledPack(self.pack, self.engine, source=source,
                                               os_name=os_name)
        return self._compiled[key]

    # -- console ---------------------------------------------------------------------------
    def console(self, data: bytes, os_name: str | None = None
                ) -> tuple[ConsoleLog, list[Finding]]:
        lines, notes, total = cx.prepare(data)
        cpack = self.compiled("console", os_name)
        hits = cpack.scan([ln.text for ln in lines])
        boundaries, stage_hits = {}, {}
        for li, key, _rx in hits:
            if key.kind == "boundary":
                boundaries.setdefault(li, key.ref)
            elif key.kind == "stage":
                stage_hits.setdefault(li, key.ref)
        log, spans = cx.build_log(lines, boundaries, stage_hits, len(data), notes, total)
        last = log.boots[-1]
        findings = collect(cpack, lines, spans[-1], hits, boot=last.index, stages=last.stages)
        return log, findings

    # -- whole diagnosis --------------------------------------------------------------------
    def analyse(self, evidence: Evidence, *, now: str | None = None) -> Diagnosis:
        os_name = evidence.os_hint
        log: ConsoleLog | None = None
        findings: list[Finding] = []
        artifacts = list(evidence.artifacts)
        empty = False
        last_line = None
        if evidence.console is not None:
            log, findings = self.console(evidence.console, os_name)
            last = log.last_boot
            empty = not last or not last.lines
            last_line = last.lines[-1].text if last and last.lines else None
            artifacts = _note_console(artifacts, log)
        screen_findings: list[Finding] = []
        screen = None
        if evidence.screenshot is not None:
            screen, screen_findings, artifacts = self._screen(evidence.screenshot, os_name,
                                                              artifacts)
        stages = log.last_boot.stages if log and log.last_boot else ()
        verdict = decide(findings, self.pack, stages=stages,
                         boot_count=len(log.boots) if log else 0,
                         empty=empty and not screen_findings, last_line=last_line,
                         screen_findings=screen_findings,
                         skip_reason=evidence.skip_reason if evidence.console is None
                         and evidence.screenshot is None else None)
        if evidence.console is None and evidence.screenshot is None and not evidence.skip_reason:
            verdict = replace(verdict, summary="Neither console output nor a screenshot was "
                              "available: " + "; ".join(
                                  f"{a.name}: {a.reason}" for a in artifacts if a.reason) + ".")
        return Diagnosis(
            subject=evidence.subject, verdict=verdict,
            findings=tuple(findings) + tuple(screen_findings), console=log,
            artifacts=tuple(artifacts), tool_version=__version__,
            rules_version=self.pack.version,
            created=now or _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            events=evidence.events, screen=screen,
        )

    def _screen(self, data: bytes, os_name: str | None, artifacts: list[Artifact]):
        """Read the screenshot when the screen reader is installed (diagnose.screen)."""
        try:
            from . import screen as screen_mod  # noqa: PLC0415 - heavy (OpenCV), optional
        except ImportError:
            return None, [], [replace(a, detail={**a.detail, "analysed": False,
                                                  "note": "screenshot reading is not built "
                                                          "into this version"})
                              if a.name == "screenshot" else a for a in artifacts]
        return screen_mod.analyse_screenshot(self, data, os_name, artifacts)


def _note_console(artifacts: list[Artifact], log: ConsoleLog) -> list[Artifact]:
    out = []
    for a in artifacts:
        if a.name == "console":
            detail = dict(a.detail)
            detail.update({"lines": log.total_lines, "boots": len(log.boots)})
            if log.notes:
                detail["repairs"] = list(log.notes)
            a = replace(a, detail=detail)
        out.append(a)
    return out


def evidence_from_bytes(console: bytes | None, *, name: str, origin: str,
                        screenshot: bytes | None = None, screenshot_origin: str | None = None,
                        os_hint: str | None = None) -> Evidence:
    """Evidence for local files (a ticket's attachments)."""
    arts = []
    if console is not None:
        arts.append(Artifact("console", True, len(console), None, origin))
    else:
        arts.append(Artifact("console", False, 0, "no console log given", None))
    if screenshot is not None:
        arts.append(Artifact("screenshot", True, len(screenshot), None, screenshot_origin))
    else:
        arts.append(Artifact("screenshot", False, 0, "no screenshot given", None))
    return Evidence(Subject("file", name), console, screenshot, tuple(arts), os_hint=os_hint)
