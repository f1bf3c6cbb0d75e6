"""Loading and validating rule packs (TOML data under rules/).

The loader never stops at the first problem: it collects every one, each with file and line, and
raises one RuleError listing them all. A rule pack is data only: nothing in it is executed.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from re import _constants as sre_c  # type: ignore[attr-defined]
from re import _parser as sre_parse  # type: ignore[attr-defined]

from .errors import RuleError
from .model import SEVERITIES, STAGES, STATUSES
from .resources import data_dir

CATEGORIES = (
    "kernel-panic-vfs", "kernel-panic-init", "kernel-panic-other", "kernel-oops-bug",
    "soft-lockup-rcu-stall", "oom-killer", "fsck-required", "fsck-in-progress-hang",
    "emergency-mode", "dracut-initramfs-timeout", "grub-failure", "firmware-no-bootable-device",
    "filesystem-error", "disk-full", "io-error-disk", "network-failure", "cloud-init-failure",
    "sshd-failure", "selinux-relabel", "windows-bsod", "windows-boot-error", "windows-recovery",
    "windows-update-in-progress", "healthy", "unknown",
)
# Where an evaluation knows only the coarser name.
CATEGORY_PARENT = {"windows-recovery": "windows-boot-error",
                   "windows-update-in-progress": "windows-boot-error"}
# Categories a running system can carry (taxonomy: "degraded or failed", "failed or degraded",
# "degraded"): a finding of one of them still decides, as `degraded`, when the boot went on to a
# login prompt after it. The others (panics, emergency shells, boot loader and firmware
# failures) mean the machine is down only while nothing comes after them.
DEGRADABLE = frozenset({
    "kernel-oops-bug", "soft-lockup-rcu-stall", "oom-killer", "filesystem-error", "disk-full",
    "io-error-disk", "network-failure", "cloud-init-failure", "sshd-failure",
})
OSES = ("linux", "windows", "any")
RULE_SOURCES = ("console", "screen", "both")
ID_RE = re.compile(r"^[a-z0-9]+(\.[a-z0-9][a-z0-9_-]*){1,5}$")
REQUIRED = ("id", "title", "category", "status", "severity", "os", "source", "stage", "patterns",
            "remediation")
KNOWN_KEYS = set(REQUIRED) | {"priority", "match", "ignore", "flags", "at_end", "screen_fuzzy",
                              "fields", "summary", "references", "examples", "description",
                              "supersedes", "resolves"}
MAX_PATTERN_LEN = 2000


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    category: str
    status: str
    severity: str
    os: str
    source: str
    stage: str
    patterns: tuple[str, ...]
    remediation: tuple[str, ...]
    priority: int = 50
    match: str = "any"
    ignore: tuple[str, ...] = ()
    flags: str = ""
    at_end: bool = False
    screen_fuzzy: bool = False
    fields: tuple[tuple[str, str], ...] = ()
    summary: str = ""
    references: tuple[str, ...] = ()
    description: str = ""
    # ids of more generic rules that this one explains: their findings on a line this rule
    # matched are not reported (a VFS panic line is not also a "generic panic")
    supersedes: tuple[str, ...] = ()
    # categories whose earlier findings this rule's finding shows to be over (an address leased
    # after a failed DHCP attempt): they stay in the report but no longer decide
    resolves: tuple[str, ...] = ()
    examples_match: tuple[str, ...] = ()
    examples_no_match: tuple[str, ...] = ()
    examples_fields: tuple[tuple[tuple[str, str], ...], ...] = ()
    file: str = ""
    line: int = 0

    @property
    def re_flags(self) -> int:
        return re.IGNORECASE if "i" in self.flags else 0

    def applies_to(self, source: str, os_name: str | None) -> bool:
        if self.source not in ("both", source):
            return False
        return os_name is None or self.os in ("any", os_name)


@dataclass(frozen=True)
class Boundary:
    """A line that starts a boot (firmware banner, kernel banner, ...) or ends one (`ends`:
    "reboot: Restarting system"; the next start marker of any rank then opens a new boot)."""

    name: str
    rank: int
    always: bool
    patterns: tuple[str, ...]
    ends: bool = False
    repeats: bool = False  # may be printed again within one boot (a GRUB menu redrawn)
    examples: tuple[str, ...] = ()  # lines as printed, each must match one of the patterns


@dataclass(frozen=True)
class StageDef:
    name: str
    patterns: tuple[str, ...]


@dataclass(frozen=True)
class BugCheck:
    code: str  # 0x0000007B
    name: str
    cause: str = ""
    remediation: tuple[str, ...] = ()


@dataclass(frozen=True)
class RulePack:
    rules: tuple[Rule, ...]
    boundaries: tuple[Boundary, ...]
    stages: tuple[StageDef, ...]
    bugchecks: tuple[BugCheck, ...]
    version: str
    sources: tuple[str, ...] = ()
    _by_id: dict[str, Rule] = field(default_factory=dict, compare=False, repr=False)

    def get(self, rule_id: str) -> Rule | None:
        if not self._by_id:
            self._by_id.update({r.id: r for r in self.rules})
        return self._by_id.get(rule_id)

    def bugcheck(self, code: str | None = None, name: str | None = None) -> BugCheck | None:
        for b in self.bugchecks:
            if (code and b.code == code) or (name and b.name == name):
                return b
        return None


# --------------------------------------------------------------------------------------------
# Pattern checks


def _walk(parsed):
    for op, av in parsed:
        yield op, av
        if op in (sre_c.MAX_REPEAT, sre_c.MIN_REPEAT, getattr(sre_c, "POSSESSIVE_REPEAT", None)):
            yield from _walk(av[2])
        elif op is sre_c.SUBPATTERN:
            yield from _walk(av[3])
        elif op is sre_c.BRANCH:
            for alt in av[1]:
                yield from _walk(alt)
        elif op in (sre_c.ASSERT, sre_c.ASSERT_NOT):
            yield from _walk(av[1])


def _unbounded(op, av) -> bool:
    return op in (sre_c.MAX_REPEAT, sre_c.MIN_REPEAT) and av[1] == sre_c.MAXREPEAT


def _literal_runs(seq) -> list[str]:
    """Literal strings that every match of this sequence must contain."""
    runs: list[str] = []
    cur: list[str] = []
    for op, av in seq:
        if op is sre_c.LITERAL:
            cur.append(chr(av))
            continue
        if cur:
            runs.append("".join(cur))
            cur = []
        if op is sre_c.SUBPATTERN:
            runs.extend(_literal_runs(av[3]))
        elif op in (sre_c.MAX_REPEAT, sre_c.MIN_REPEAT) and av[0] >= 1:
            runs.extend(_literal_runs(av[2]))
    if cur:
        runs.append("".join(cur))
    return runs


def required_literals(pattern: str, flags: int = 0) -> tuple[str, ...] | None:
    """A set of literals one of which every match contains (None if there is no such set).

    Used as the pure-Python engine's prefilter and by the validator.
    """
    parsed = sre_parse.parse(pattern, flags)
    items = list(parsed)
    # strip leading/trailing anchors and groups that wrap the whole pattern
    while len(items) == 1 and items[0][0] is sre_c.SUBPATTERN:
        items = list(items[0][1][3])
    if len(items) == 1 and items[0][0] is sre_c.BRANCH:
        out = []
        for alt in items[0][1][1]:
            runs = [r for r in _literal_runs(alt) if len(r) >= 3]
            if not runs:
                return None
            out.append(max(runs, key=len))
        return tuple(out)
    runs = [r for r in _literal_runs(items) if len(r) >= 3]
    if runs:
        return (max(runs, key=len),)
    # a top-level branch inside a group: (a|b) something
    for op, av in items:
        if op is sre_c.SUBPATTERN and len(av[3]) == 1 and av[3][0][0] is sre_c.BRANCH:
            out = []
            for alt in av[3][0][1][1]:
                r = [x for x in _literal_runs(alt) if len(x) >= 3]
                if not r:
                    out = []
                    break
                out.append(max(r, key=len))
            if out:
                return tuple(out)
    return None


_REPEATS = (sre_c.MAX_REPEAT, sre_c.MIN_REPEAT, getattr(sre_c, "POSSESSIVE_REPEAT", None))
_ANY = None  # a first-character set that may hold any character
_HUGE = 10**9
_DIGITS = frozenset("0123456789")
_SPACES = frozenset(" \t\n\r\f\v")


def _first(seq, fold: bool) -> tuple[frozenset[str] | None, bool]:
    """The characters a match of `seq` can start with (_ANY if unknown), and whether it can be
    empty. Conservative: whatever is not worked out counts as any character."""
    out: frozenset[str] | None = frozenset()
    for op, av in seq:
        chars, nullable = _first_item(op, av, fold)
        out = _ANY if out is _ANY or chars is _ANY else out | chars
        if not nullable:
            return out, False
    return out, True


def _first_item(op, av, fold: bool) -> tuple[frozenset[str] | None, bool]:
    if op is sre_c.LITERAL:
        ch = chr(av)
        return frozenset({ch.lower(), ch.upper()} if fold else {ch}), False
    if op is sre_c.IN:
        chars: set[str] = set()
        for iop, iav in av:
            if iop is sre_c.LITERAL:
                chars.add(chr(iav))
            elif iop is sre_c.RANGE and iav[1] - iav[0] <= 256:
                chars.update(map(chr, range(iav[0], iav[1] + 1)))
            elif iop is sre_c.CATEGORY and iav is sre_c.CATEGORY_DIGIT:
                chars |= _DIGITS
            elif iop is sre_c.CATEGORY and iav is sre_c.CATEGORY_SPACE:
                chars |= _SPACES
            else:  # negated sets, \w, \s, \S, big ranges
                return _ANY, False
        if fold:
            chars = {c.lower() for c in chars} | {c.upper() for c in chars}
        return frozenset(chars), False
    if op is sre_c.SUBPATTERN:
        return _first(av[3], fold)
    if op is sre_c.BRANCH:
        out: frozenset[str] | None = frozenset()
        nullable = False
        for alt in av[1]:
            chars, n = _first(alt, fold)
            out = _ANY if out is _ANY or chars is _ANY else out | chars
            nullable = nullable or n
        return out, nullable
    if op in _REPEATS:
        chars, n = _first(av[2], fold)
        return chars, n or av[0] == 0
    if op in (sre_c.AT, sre_c.ASSERT, sre_c.ASSERT_NOT):
        return frozenset(), True
    return _ANY, False


def _overlap(a: frozenset[str] | None, b: frozenset[str] | None) -> bool:
    return a is _ANY or b is _ANY or bool(a & b)


def _variable(seq) -> bool:
    """Whether the length of a match of `seq` can vary (a repeat or uneven alternatives)."""
    for op, av in seq:
        if op in _REPEATS and (av[0] != av[1] or _variable(av[2])):
            return True
        if op is sre_c.SUBPATTERN and _variable(av[3]):
            return True
        if op is sre_c.BRANCH and (len({_max_len(a) for a in av[1]}) > 1
                                   or any(_variable(a) for a in av[1])):
            return True
    return False


def _max_len(seq) -> int:
    total = 0
    for op, av in seq:
        if op in _REPEATS:
            total += _HUGE if av[1] == sre_c.MAXREPEAT else av[1] * _max_len(av[2])
        elif op is sre_c.SUBPATTERN:
            total += _max_len(av[3])
        elif op is sre_c.BRANCH:
            total += max(_max_len(a) for a in av[1])
        elif op not in (sre_c.AT, sre_c.ASSERT, sre_c.ASSERT_NOT):
            total += 1
        total = min(total, _HUGE)
    return total


def _branches(seq):
    for op, av in seq:
        if op is sre_c.BRANCH:
            yield av[1]
            for alt in av[1]:
                yield from _branches(alt)
        elif op is sre_c.SUBPATTERN:
            yield from _branches(av[3])
        elif op in _REPEATS:
            yield from _branches(av[2])


def backtracking_problems(items, flags: int = 0) -> list[str]:
    """Shapes that make a backtracking engine (Python's `re`) take exponential or high
    polynomial time on a hostile line:

    - a variable-length repeat or alternation inside a repeat that may run more than a few times,
      bounded or not: `(a+)+`, `(\\w+\\s?)+`, `(.*a){20}`, `(a|aa)+`, `(?:a{1,1000}){1,1000}`;
    - alternatives that can start with the same character (or be empty) inside a repeat:
      `(a|a)*`, `(?:a|b|ab)*`;
    - two unbounded repeats next to each other that can eat the same characters: `.*.*`.
    """
    fold = bool(flags & re.IGNORECASE)
    problems: list[str] = []

    def add(msg: str) -> None:
        if msg not in problems:
            problems.append(msg)

    def seq_check(seq) -> None:
        prev: frozenset[str] | None | bool = False  # chars of the previous unbounded repeat
        run = 0  # unbounded repeats in a row, each able to eat what the one before eats
        for op, av in seq:
            while op is sre_c.SUBPATTERN and len(av[3]) == 1:  # (?P<x>.*) counts as .*
                op, av = av[3][0]
            if op in _REPEATS and av[1] == sre_c.MAXREPEAT:
                chars = _first(av[2], fold)[0]
                run = run + 1 if prev is not False and _overlap(prev, chars) else 1
                if run >= 2:
                    add("two unbounded repeats in a row over the same characters (like .*.* or "
                        "\\s*:?\\s*) backtrack polynomially: join them (\\s*(?::\\s*)?)")
                prev = chars
            elif op is sre_c.AT or (op in _REPEATS and av[0] == 0 and av[1] <= 1):
                continue  # nullable: the repeats around it still touch
            else:
                prev, run = False, 0

    def walk(seq) -> None:
        seq_check(seq)
        for op, av in seq:
            if op in _REPEATS:
                body = av[2]
                if av[1] > 1:
                    count = _HUGE if av[1] == sre_c.MAXREPEAT else av[1]
                    if count * _max_len(body) > 1000 and _variable(body):
                        add("nested unbounded quantifiers (or any variable-length repeat or "
                            "alternation inside a repeat) can backtrack catastrophically")
                    for alts in _branches(body):
                        firsts = [_first(a, fold) for a in alts]
                        if any(_overlap(firsts[i][0], firsts[j][0])
                               or (firsts[i][1] and firsts[j][1])
                               for i in range(len(firsts)) for j in range(i)):
                            add("alternatives inside a repeat that can match the same text "
                                "backtrack catastrophically")
                walk(body)
            elif op is sre_c.SUBPATTERN:
                walk(av[3])
            elif op is sre_c.BRANCH:
                for alt in av[1]:
                    walk(alt)
            elif op in (sre_c.ASSERT, sre_c.ASSERT_NOT):
                walk(av[1])

    walk(list(items))
    return problems


def check_pattern(pattern: str, flags: int = 0) -> list[str]:
    """Problems with one pattern (empty list if fine)."""
    if not isinstance(pattern, str) or not pattern:
        return ["pattern must be a non-empty string"]
    if len(pattern) > MAX_PATTERN_LEN:
        return [f"pattern longer than {MAX_PATTERN_LEN} characters"]
    try:
        re.compile(pattern, flags)
        parsed = sre_parse.parse(pattern, flags)
    except re.error as exc:
        return [f"bad regular expression: {exc}"]
    problems = []
    if "\n" in pattern or "\\n" in pattern:
        problems.append("patterns run on one line: no \\n")
    if "(?s" in pattern:
        problems.append("no (?s): patterns run on one line")
    items = list(parsed)
    for op, _av in _walk(items):
        if op in (sre_c.ASSERT, sre_c.ASSERT_NOT):
            problems.append("look-around is not allowed (not portable to the fast engine)")
            break
        if op in (sre_c.GROUPREF, getattr(sre_c, "GROUPREF_EXISTS", None)):
            problems.append("back-references are not allowed")
            break
    problems.extend(backtracking_problems(items, flags))
    first = items[0] if items else None
    while first is not None and first[0] is sre_c.AT:
        items = items[1:]
        first = items[0] if items else None
    if first is not None and _unbounded(*first):
        problems.append("starts with an unbounded greedy class: anchor it on a literal first")
    if required_literals(pattern, flags) is None:
        problems.append("needs a literal of at least 3 characters (in every alternative)")
    return problems


def group_names(pattern: str) -> tuple[str, ...]:
    try:
        return tuple(re.compile(pattern).groupindex)
    except re.error:
        return ()


# --------------------------------------------------------------------------------------------
# Loading


class _Locator:
    """Finds the line of a key or a value inside one [[table]] of a TOML file."""

    def __init__(self, text: str, header: str):
        self.lines = text.splitlines()
        self.starts = [i + 1 for i, ln in enumerate(self.lines) if ln.strip() == header]

    def block(self, index: int) -> tuple[int, int]:
        if index >= len(self.starts):
            return (1, len(self.lines))
        start = self.starts[index]
        end = self.starts[index + 1] - 1 if index + 1 < len(self.starts) else len(self.lines)
        return (start, end)

    def find(self, index: int, needle: str) -> int:
        start, end = self.block(index)
        for n in range(start, end + 1):
            if needle in self.lines[n - 1]:
                return n
        return start


def _toml_error_line(exc: tomllib.TOMLDecodeError) -> int:
    m = re.search(r"line (\d+)", str(exc))
    return int(m.group(1)) if m else 1


def _str_list(value, what: str, problems: list[str], where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        problems.append(f"{where}: {what} must be a list of strings")
        return ()
    return tuple(value)


def _load_rule(raw: dict, path: Path, loc: _Locator, idx: int, problems: list[str]) -> Rule | None:
    where0 = f"{path}:{loc.block(idx)[0]}"
    if not isinstance(raw, dict):
        problems.append(f"{where0}: [[rule]] must be a table")
        return None
    rid = raw.get("id", "?")

    def where(key: str | None = None, needle: str | None = None) -> str:
        if needle:
            return f"{path}:{loc.find(idx, needle)}: rule {rid}"
        if key:
            return f"{path}:{loc.find(idx, key + ' ')}: rule {rid}"
        return f"{where0}: rule {rid}"

    before = len(problems)
    for key in REQUIRED:
        if key not in raw:
            problems.append(f"{where()}: missing required key '{key}'")
    for key in raw:
        if key not in KNOWN_KEYS:
            problems.append(f"{where(key)}: unknown key '{key}'")
    if len(problems) > before:
        return None
    if not isinstance(rid, str) or not ID_RE.match(rid):
        problems.append(f"{where('id')}: id must be dotted lower-case, e.g. linux.panic.vfs")
    for key, allowed in (("category", CATEGORIES), ("status", STATUSES[:5]),
                         ("severity", SEVERITIES), ("os", OSES), ("source", RULE_SOURCES),
                         ("stage", STAGES), ("match", ("any", "all"))):
        val = raw.get(key, "any" if key == "match" else None)
        if val not in allowed:
            problems.append(f"{where(key)}: {key} {val!r} is not one of: {', '.join(allowed)}")
    for key in ("title", "summary", "description"):
        if key in raw and (not isinstance(raw[key], str) or (key == "title" and not raw[key])):
            problems.append(f"{where(key)}: {key} must be a non-empty string")
    prio = raw.get("priority", 50)
    if not isinstance(prio, int) or not 0 <= prio <= 100:
        problems.append(f"{where('priority')}: priority must be an integer 0-100")
        prio = 50
    flags = raw.get("flags", "")
    if not isinstance(flags, str) or set(flags) - {"i"}:
        problems.append(f"{where('flags')}: flags may only contain 'i'")
        flags = ""
    re_flags = re.IGNORECASE if "i" in flags else 0
    for key in ("at_end", "screen_fuzzy"):
        if key in raw and not isinstance(raw[key], bool):
            problems.append(f"{where(key)}: {key} must be true or false")
    patterns = _str_list(raw.get("patterns"), "patterns", problems, where("patterns"))
    if not patterns:
        problems.append(f"{where('patterns')}: at least one pattern is required")
    ignore = _str_list(raw.get("ignore"), "ignore", problems, where("ignore"))
    fields_raw = raw.get("fields", {})
    if not isinstance(fields_raw, dict) or not all(isinstance(v, str)
                                                   for v in fields_raw.values()):
        problems.append(f"{where('fields')}: fields must be a table of name = description")
        fields_raw = {}
    declared = set(fields_raw)
    used: set[str] = set()
    for pat in patterns:
        for msg in check_pattern(pat, re_flags):
            problems.append(f"{where(needle=pat[:40])}: pattern {pat[:60]!r}: {msg}")
        names = group_names(pat)
        used.update(names)
        for name in names:
            if name not in declared:
                problems.append(f"{where(needle=pat[:40])}: group '{name}' is not declared in "
                                "fields")
    for pat in ignore:
        try:
            re.compile(pat, re_flags)
        except re.error as exc:
            problems.append(f"{where(needle=pat[:40])}: ignore pattern {pat[:60]!r}: {exc}")
            continue
        for msg in backtracking_problems(sre_parse.parse(pat, re_flags), re_flags):
            problems.append(f"{where(needle=pat[:40])}: ignore pattern {pat[:60]!r}: {msg}")
    for name in declared - used:
        problems.append(f"{where('fields')}: field '{name}' is captured by no pattern")
    supersedes = _str_list(raw.get("supersedes"), "supersedes", problems, where("supersedes"))
    for other in supersedes:
        if other == rid:
            problems.append(f"{where('supersedes')}: a rule cannot supersede itself")
    resolves = _str_list(raw.get("resolves"), "resolves", problems, where("resolves"))
    for cat in resolves:
        if cat not in CATEGORIES or cat in ("healthy", "unknown"):
            problems.append(f"{where('resolves')}: resolves {cat!r} is not a failure category")
    if resolves and raw.get("severity") not in ("positive", "info"):
        problems.append(f"{where('resolves')}: only positive or info rules can resolve a "
                        "failure")
    remediation = _str_list(raw.get("remediation"), "remediation", problems, where("remediation"))
    if not remediation:
        problems.append(f"{where('remediation')}: at least one remediation step is required")
    refs = _str_list(raw.get("references"), "references", problems, where("references"))
    for ref in refs:
        if not re.match(r"^https?://[^\s<>\"']+$", ref):
            problems.append(f"{where(needle=ref[:40])}: reference {ref[:60]!r} is not an "
                            "http(s) URL")
    examples = raw.get("examples", {})
    if not isinstance(examples, dict):
        problems.append(f"{where('examples')}: examples must be a table")
        examples = {}
    for key in examples:
        if key not in ("match", "no_match", "fields"):
            problems.append(f"{where(needle='examples')}: unknown examples key '{key}'")
    ex_match = _str_list(examples.get("match"), "examples.match", problems, where("match"))
    ex_no = _str_list(examples.get("no_match"), "examples.no_match", problems,
                      where("no_match"))
    if not ex_match:
        problems.append(f"{where(needle='examples')}: at least one examples.match line is "
                        "required")
    ex_fields_raw = examples.get("fields", [])
    ex_fields: list[tuple[tuple[str, str], ...]] = []
    if not isinstance(ex_fields_raw, list) or not all(isinstance(e, dict) for e in ex_fields_raw):
        problems.append(f"{where(needle='fields')}: examples.fields must be a list of tables")
    else:
        for e in ex_fields_raw:
            ex_fields.append(tuple((str(k), str(v)) for k, v in e.items()))
        if len(ex_fields) > len(ex_match):
            problems.append(f"{where(needle='fields')}: more examples.fields than examples.match")
    if len(problems) > before:
        return None
    return Rule(
        id=rid, title=raw["title"], category=raw["category"], status=raw["status"],
        severity=raw["severity"], os=raw["os"], source=raw["source"], stage=raw["stage"],
        patterns=patterns, remediation=remediation, priority=prio,
        match=raw.get("match", "any"), ignore=ignore, flags=flags,
        at_end=bool(raw.get("at_end", False)), screen_fuzzy=bool(raw.get("screen_fuzzy", False)),
        fields=tuple(fields_raw.items()), summary=raw.get("summary", ""), references=refs,
        description=raw.get("description", ""), supersedes=supersedes, resolves=resolves,
        examples_match=ex_match,
        examples_no_match=ex_no, examples_fields=tuple(ex_fields),
        file=str(path), line=loc.block(idx)[0],
    )


def _load_boot(data: dict, path: Path, text: str, problems: list[str]):
    boundaries, stages = [], []
    bl = _Locator(text, "[[boundary]]")
    for i, raw in enumerate(data.get("boundary", [])):
        line = bl.block(i)[0]
        pats = _str_list(raw.get("patterns"), "patterns", problems, f"{path}:{line}")
        for p in pats:
            for msg in check_pattern(p):
                problems.append(f"{path}:{bl.find(i, p[:40])}: boundary pattern {p!r}: {msg}")
        rank = raw.get("rank", 0)
        if not isinstance(rank, int):
            problems.append(f"{path}:{line}: rank must be an integer")
            rank = 0
        for key in raw:
            if key not in ("name", "rank", "always", "ends", "repeats", "patterns", "examples"):
                problems.append(f"{path}:{line}: unknown boundary key '{key}'")
        examples = _str_list(raw.get("examples"), "examples", problems, f"{path}:{line}")
        boundaries.append(Boundary(str(raw.get("name", "?")), rank, bool(raw.get("always")),
                                   pats, bool(raw.get("ends")), bool(raw.get("repeats")),
                                   examples))
    sl = _Locator(text, "[[stage]]")
    for i, raw in enumerate(data.get("stage", [])):
        line = sl.block(i)[0]
        name = raw.get("name")
        if name not in STAGES:
            problems.append(f"{path}:{line}: stage name {name!r} is not one of {STAGES}")
            continue
        pats = _str_list(raw.get("patterns"), "patterns", problems, f"{path}:{line}")
        for p in pats:
            for msg in check_pattern(p):
                problems.append(f"{path}:{sl.find(i, p[:40])}: stage pattern {p!r}: {msg}")
        stages.append(StageDef(name, pats))
    return boundaries, stages


def _load_bugchecks(data: dict, path: Path, text: str, problems: list[str]) -> list[BugCheck]:
    out = []
    loc = _Locator(text, "[[bugcheck]]")
    for i, raw in enumerate(data.get("bugcheck", [])):
        line = loc.block(i)[0]
        code, name = raw.get("code"), raw.get("name")
        if not isinstance(code, str) or not re.fullmatch(r"0x[0-9A-F]{8}", code):
            problems.append(f"{path}:{line}: bugcheck code {code!r} must look like 0x0000007B")
            continue
        if not isinstance(name, str) or not re.fullmatch(r"[A-Z][A-Z0-9_]+", name):
            problems.append(f"{path}:{line}: bugcheck name {name!r} must be UPPER_CASE")
            continue
        out.append(BugCheck(code, name, str(raw.get("cause", "")),
                            _str_list(raw.get("remediation"), "remediation", problems,
                                      f"{path}:{line}")))
    return out


def default_rules_dir() -> Path:
    return data_dir("rules")


def load_pack(dirs: list[Path] | None = None, *, include_default: bool = True) -> RulePack:
    """Load every *.toml under the default rules folder and the given folders."""
    roots: list[Path] = []
    if include_default:
        roots.append(default_rules_dir())
    roots.extend(Path(d) for d in (dirs or []))
    problems: list[str] = []
    rules: list[Rule] = []
    boundaries: list[Boundary] = []
    stages: list[StageDef] = []
    bugchecks: list[BugCheck] = []
    digest = hashlib.sha256()
    seen: dict[str, str] = {}
    files: list[Path] = []
    for root in roots:
        if not root.is_dir():
            problems.append(f"{root}: not a directory of rules")
            continue
        files.extend(sorted(root.rglob("*.toml")))
    for path in files:
        try:
            raw_bytes = path.read_bytes()
            text = raw_bytes.decode("utf-8")
            data = tomllib.loads(text)
        except UnicodeDecodeError:
            problems.append(f"{path}:1: not UTF-8")
            continue
        except tomllib.TOMLDecodeError as exc:
            problems.append(f"{path}:{_toml_error_line(exc)}: TOML syntax error: {exc}")
            continue
        except OSError as exc:
            problems.append(f"{path}:1: cannot read: {exc.strerror}")
            continue
        digest.update(path.name.encode() + b"\0" + raw_bytes)
        unknown = set(data) - {"rule", "boundary", "stage", "bugcheck"}
        for key in sorted(unknown):
            problems.append(f"{path}:1: unknown top-level key '{key}'")
        if "boundary" in data or "stage" in data:
            b, s = _load_boot(data, path, text, problems)
            boundaries.extend(b)
            stages.extend(s)
        if "bugcheck" in data:
            bugchecks.extend(_load_bugchecks(data, path, text, problems))
        loc = _Locator(text, "[[rule]]")
        raw_rules = data.get("rule", [])
        if not isinstance(raw_rules, list):
            problems.append(f"{path}:1: 'rule' must be an array of tables ([[rule]])")
            continue
        for idx, raw in enumerate(raw_rules):
            rule = _load_rule(raw, path, loc, idx, problems)
            if rule is None:
                continue
            if rule.id in seen:
                problems.append(f"{rule.file}:{rule.line}: rule {rule.id}: duplicate id "
                                f"(first in {seen[rule.id]})")
                continue
            seen[rule.id] = f"{rule.file}:{rule.line}"
            rules.append(rule)
    for rule in rules:
        for other in rule.supersedes:
            if other not in seen:
                problems.append(f"{rule.file}:{rule.line}: rule {rule.id}: supersedes unknown "
                                f"rule {other!r}")
    if problems:
        raise RuleError(problems)
    version = f"{len(rules)} rules, {digest.hexdigest()[:12]}"
    return RulePack(tuple(rules), tuple(boundaries), tuple(stages), tuple(bugchecks), version,
                    tuple(str(r) for r in roots))
