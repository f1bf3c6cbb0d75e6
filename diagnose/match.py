"""Match: the engine's raw hits in one boot -> findings (evidence lines with named fields)."""

from __future__ import annotations

import re
from collections import defaultdict

from .engine import CompiledPack, Key
from .model import STAGES, Box, Finding, Line, StageMark
from .rules import Rule, RulePack

PER_RULE_HEAD, PER_RULE_TAIL = 3, 17  # a rule that hits 10,000 lines keeps 20 of them
_RANK = {s: i for i, s in enumerate(STAGES)}
_HEX = re.compile(r"^(?:0x)?([0-9a-fA-F]{1,16})$")


def normalise_fields(fields: dict[str, str], pack: RulePack) -> dict[str, str]:
    """Canonical evidence: Windows stop codes as 0x%08X, and the bug-check name beside the code."""
    code, name = fields.get("stop_code"), fields.get("stop_name")
    if code:
        m = _HEX.match(code.strip().replace("O", "0").replace("o", "0"))
        if m:
            value = int(m.group(1), 16) & 0xFFFFFFFF
            fields["stop_code"] = f"0x{value:08X}"
    if name:
        fields["stop_name"] = re.sub(r"[\s_]+", "_", name.strip().upper()).strip("_")
    if code or name:
        bc = pack.bugcheck(code=fields.get("stop_code"), name=fields.get("stop_name"))
        if bc is None and name and not code:
            bc = _nearest_bugcheck(fields["stop_name"], pack)
        if bc is not None:
            fields.setdefault("stop_code", bc.code)
            fields["stop_name"] = bc.name
            if bc.cause:
                fields.setdefault("usual_cause", bc.cause)
    return fields


def _distance(a: str, b: str, limit: int) -> int:
    """Levenshtein distance, giving up (returning limit + 1) once it must exceed `limit`."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        if min(cur) > limit:
            return limit + 1
        prev = cur
    return prev[-1]


def _nearest_bugcheck(name: str, pack: RulePack):
    """A bug-check name misread by OCR ("INACCESSIBLE_BOOT_DEVILE"): the one table entry within
    two edits, if the name is long enough for that to be unambiguous."""
    if len(name) < 10:
        return None
    near = [b for b in pack.bugchecks if _distance(name, b.name, 2) <= 2]
    return near[0] if len(near) == 1 else None


def _cap(items: list[Finding]) -> list[Finding]:
    if len(items) <= PER_RULE_HEAD + PER_RULE_TAIL:
        return items
    return items[:PER_RULE_HEAD] + items[-PER_RULE_TAIL:]


def collect(cpack: CompiledPack, lines: list[Line], span: range,
            hits: list[tuple[int, Key, re.Pattern]], *, boot: int,
            stages: tuple[StageMark, ...] = (), source: str = "console",
            boxes: dict[int, tuple[Box, ...]] | None = None) -> list[Finding]:
    """Findings of one boot (or one screen), in line order."""
    pack = cpack.pack
    per_rule: dict[str, list[Finding]] = defaultdict(list)
    patterns_hit: dict[str, set[int]] = defaultdict(set)
    rules: dict[str, Rule] = {}
    seen: set[tuple[str, int]] = set()
    for li, key, rx in hits:
        if key.kind != "rule" or li not in span:
            continue
        rule: Rule = key.ref  # type: ignore[assignment]
        text = lines[li].text
        if any(ig.search(text) for ig in cpack.ignores.get(rule.id, ())):
            continue
        patterns_hit[rule.id].add(key.index)
        if (rule.id, li) in seen:
            continue
        seen.add((rule.id, li))
        m = rx.search(text)
        fields = {k: v for k, v in (m.groupdict() if m else {}).items() if v is not None}
        fields = normalise_fields(fields, pack)
        rules[rule.id] = rule
        per_rule[rule.id].append(Finding(
            rule_id=rule.id, category=rule.category, status=rule.status, severity=rule.severity,
            priority=rule.priority, title=rule.title, source=source, boot=boot,
            line=lines[li].number, text=text, fields=tuple(fields.items()),
            boxes=(boxes or {}).get(li, ()),
        ))
    out: list[Finding] = []
    live = {rid for rid, items in per_rule.items()
            if rules[rid].match != "all" or len(patterns_hit[rid]) >= len(rules[rid].patterns)}
    explained = _explained_lines(per_rule, rules, live)
    for rid in live:
        items = per_rule[rid]
        if rid in explained:
            items = [f for f in items if (f.line, f.text) not in explained[rid]]
        out.extend(_cap(sorted(items, key=lambda f: f.line)))
    out.sort(key=lambda f: (f.line, -f.priority))
    if source == "console":
        out = _drop_stale_at_end(out, stages, rules)
    return out


def _explained_lines(per_rule: dict[str, list[Finding]], rules: dict[str, Rule],
                     live: set[str]) -> dict[str, set[tuple[int, str]]]:
    """For each superseded rule, the lines that a rule superseding it also matched."""
    out: dict[str, set[tuple[int, str]]] = defaultdict(set)
    for rid in live:
        for other in rules[rid].supersedes:
            if other in live:
                out[other].update((f.line, f.text) for f in per_rule[rid])
    return out


def _drop_stale_at_end(findings: list[Finding], stages: tuple[StageMark, ...],
                       rules: dict[str, Rule]) -> list[Finding]:
    """An `at_end` finding (fsck running, a start job waiting) only counts if the boot got no
    further: no positive marker and no later stage after it."""
    positives = [f.line for f in findings if f.severity == "positive"]
    last_positive = max(positives, default=-1)
    kept = []
    for f in findings:
        rule = rules[f.rule_id]
        if rule.at_end:
            if last_positive > f.line:
                continue
            rank_here = max([_RANK[m.name] for m in stages if m.line <= f.line]
                            + [_RANK[rule.stage]])
            if any(_RANK[m.name] > rank_here and m.line > f.line for m in stages):
                continue
        kept.append(f)
    return kept
