"""`diagnose rules test`: run every rule's examples through the real engine.

For each rule:
- every `examples.match` line must produce a finding of that rule, with the expected fields;
- no `examples.no_match` line may produce a finding of that rule;
- every `examples.match` line of a deciding rule (`match = "any"`), judged alone with the whole
  pack, must end in that rule's category: a generic rule must not steal a specific rule's lines.
"""

from __future__ import annotations

import re

from .decide import decide
from .engine import CompiledPack
from .match import collect
from .model import Line
from .rules import RulePack


def _findings(cpack: CompiledPack, text: str, source: str):
    lines = [Line(1, text)]
    hits = cpack.scan([text])
    return collect(cpack, lines, range(0, 1), hits, boot=0, source=source)


def run_examples(pack: RulePack, engine: str | None = None) -> tuple[list[str], int]:
    compiled = {src: CompiledPack(pack, engine, source=src) for src in ("console", "screen")}
    failures: list[str] = []
    checked = 0
    for rule in pack.rules:
        where = f"{rule.file}:{rule.line}: {rule.id}"
        sources = ["console", "screen"] if rule.source == "both" else [rule.source]
        for i, ex in enumerate(rule.examples_match):
            checked += 1
            want = dict(rule.examples_fields[i]) if i < len(rule.examples_fields) else None
            for src in sources:
                found = _findings(compiled[src], ex, src)
                mine = [f for f in found if f.rule_id == rule.id]
                if not mine:
                    failures.append(f"{where}: [{src}] example does not match: {ex!r}")
                    continue
                if want is not None:
                    got = mine[0].field_dict
                    for k, v in want.items():
                        if got.get(k) != v:
                            failures.append(f"{where}: [{src}] field {k}: expected {v!r}, got "
                                            f"{got.get(k)!r} in {ex!r}")
                if rule.match == "any" and rule.severity != "info":
                    verdict = decide(found, pack) if src == "console" else decide(
                        [], pack, screen_findings=found)
                    want_cat = "healthy" if rule.severity == "positive" else rule.category
                    if verdict.category != want_cat:
                        failures.append(
                            f"{where}: [{src}] judged alone, example ends in "
                            f"{verdict.category} (rule {verdict.rule_id}), not {want_cat}: "
                            f"{ex!r}")
        for ex in rule.examples_no_match:
            checked += 1
            for src in sources:
                found = _findings(compiled[src], ex, src)
                if any(f.rule_id == rule.id for f in found):
                    failures.append(f"{where}: [{src}] near-miss matches but must not: {ex!r}")
    for b in pack.boundaries:
        rxs = [re.compile(p) for p in b.patterns]
        for ex in b.examples:
            checked += 1
            if not any(rx.search(ex) for rx in rxs):
                failures.append(f"boundary {b.name!r}: example does not match: {ex!r}")
    return failures, checked
