"""The matching engine: every pattern of a rule pack over every line, in one pass.

Two implementations of one interface, `PatternSet.scan(lines) -> [(line_index, pattern_index)]`:

- Hyperscan (when the `hyperscan` wheel loads): all patterns in one database, the whole text scanned
  once; each reported end offset is mapped to its line, then Python `re` confirms the hit on that
  single line (and later extracts named groups). Measured ~100x the pure engine.
- Pure Python: each pattern's required literal (see rules.required_literals) is searched with
  `str.find`; only lines containing it are tried with `re`.

Both give the same hits; tests check that.
"""

from __future__ import annotations

import bisect
import hashlib
import os
import re
from dataclasses import dataclass

from .resources import cache_root
from .rules import RulePack, required_literals

_NAMED_GROUP = re.compile(r"\(\?P<[A-Za-z_][A-Za-z0-9_]*>")
_BIG_BOUND = re.compile(r"(?<!\\)\{(\d+),(\d+)\}")


@dataclass(frozen=True)
class Pattern:
    regex: str
    flags: int = 0  # re.IGNORECASE or 0


class PatternSet:
    engine = "abstract"

    def __init__(self, patterns: list[Pattern]):
        self.patterns = patterns
        self.compiled = [re.compile(p.regex, p.flags) for p in patterns]

    def scan(self, lines: list[str]) -> list[tuple[int, int]]:
        raise NotImplementedError


class PurePatternSet(PatternSet):
    engine = "python-re"

    def __init__(self, patterns: list[Pattern]):
        super().__init__(patterns)
        self.literals: list[tuple[tuple[str, ...] | None, bool]] = []
        for p in patterns:
            lits = required_literals(p.regex, p.flags)
            nocase = bool(p.flags & re.IGNORECASE)
            if lits and nocase:
                lits = tuple(x.lower() for x in lits)
            self.literals.append((lits, nocase))

    def scan(self, lines: list[str]) -> list[tuple[int, int]]:
        text = "\n".join(lines)
        lower: str | None = None
        starts = _line_starts_str(lines)
        hits: set[tuple[int, int]] = set()
        for pi, (lits, nocase) in enumerate(self.literals):
            rx = self.compiled[pi]
            if lits is None:
                cand = range(len(lines))
            else:
                hay = text
                if nocase:
                    if lower is None:
                        lower = text.lower()
                    hay = lower
                cset: set[int] = set()
                for lit in lits:
                    pos = hay.find(lit)
                    while pos != -1:
                        li = bisect.bisect_right(starts, pos) - 1
                        cset.add(li)
                        # continue after this line: one candidate per line is enough
                        nxt = starts[li + 1] if li + 1 < len(starts) else len(hay)
                        pos = hay.find(lit, max(nxt, pos + 1))
                cand = sorted(cset)
            for li in cand:
                if rx.search(lines[li]):
                    hits.add((li, pi))
        return sorted(hits)


def _line_starts_str(lines: list[str]) -> list[int]:
    starts, pos = [], 0
    for ln in lines:
        starts.append(pos)
        pos += len(ln) + 1
    return starts


class HyperscanPatternSet(PatternSet):
    engine = "hyperscan"

    def __init__(self, patterns: list[Pattern]):
        super().__init__(patterns)
        import hyperscan  # lazy: only when a pack is compiled

        exprs, flags = [], []
        for p in patterns:
            exprs.append(_hs_expression(p.regex).encode("utf-8"))
            f = hyperscan.HS_FLAG_UTF8 | hyperscan.HS_FLAG_ALLOWEMPTY | hyperscan.HS_FLAG_MULTILINE
            if p.flags & re.IGNORECASE:
                f |= hyperscan.HS_FLAG_CASELESS
            flags.append(f)
        self.db = _load_or_compile(hyperscan, exprs, flags)
        self.scratch = hyperscan.Scratch(self.db)

    def scan(self, lines: list[str]) -> list[tuple[int, int]]:
        if not lines:
            return []
        data = "\n".join(lines).encode("utf-8", "surrogatepass")
        ends: list[tuple[int, int]] = []
        add = ends.append

        def on_match(pid, _start, end, _flags, _ctx):
            add((end, pid))
            return None

        self.db.scan(data, match_event_handler=on_match, scratch=self.scratch)
        # Map end offsets to lines by counting newlines between consecutive reports (memchr
        # speed), instead of indexing every line start of a possibly huge log.
        ends.sort()
        seen: set[tuple[int, int]] = set()
        line, pos = 0, 0
        count = data.count
        for end, pid in ends:
            last = max(end - 1, 0)  # `end` is exclusive: the last matched byte is end - 1
            if last > pos:
                line += count(b"\n", pos, last)
                pos = last
            seen.add((line, pid))
        # Confirm each (line, pattern) with `re` on the line alone; this also drops ghosts of
        # a class such as \s that Hyperscan let run across a newline.
        hits = [(li, pi) for li, pi in seen if self.compiled[pi].search(lines[li])]
        hits.sort()
        return hits


def _hs_expression(regex: str) -> str:
    """The Hyperscan form of a pattern: no group names, and large bounded repeats opened up
    (`.{1,200}` -> `.{1,}`: they are slow to compile). Both only widen what Hyperscan reports,
    and every report is confirmed with `re` on its line, so results stay exact."""
    regex = _NAMED_GROUP.sub("(", regex)
    return _BIG_BOUND.sub(lambda m: m.group(0) if int(m.group(2)) <= 16
                          else "{" + m.group(1) + ",}", regex)


def _load_or_compile(hyperscan, exprs: list[bytes], flags: list[int]):
    """Compile the database, or load it from the cache when these exact patterns were compiled
    before by this Hyperscan version (compiling a full pack costs about a second)."""
    key = hashlib.sha256(repr((getattr(hyperscan, "__version__", "?"), exprs, flags)).encode())
    cache = cache_root()
    path = cache / f"hs-{key.hexdigest()[:24]}.db" if cache else None
    if path is not None and path.is_file():
        try:
            return hyperscan.loadb(path.read_bytes(), hyperscan.HS_MODE_BLOCK)
        except Exception:  # noqa: BLE001 - a stale or corrupt cache file: compile again
            pass
    db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    db.compile(expressions=exprs, ids=list(range(len(exprs))), elements=len(exprs), flags=flags)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_bytes(hyperscan.dumpb(db))
            os.replace(tmp, path)
        except OSError:
            pass
    return db


def make_pattern_set(patterns: list[Pattern], engine: str | None = None) -> PatternSet:
    """The fastest engine that loads; DIAGNOSE_ENGINE=python forces the fallback."""
    engine = engine or os.environ.get("DIAGNOSE_ENGINE", "auto")
    if engine in ("auto", "hyperscan"):
        try:
            return HyperscanPatternSet(patterns)
        except Exception:  # noqa: BLE001 - missing wheel, unsupported CPU or syntax: fall back
            if engine == "hyperscan":
                raise
    return PurePatternSet(patterns)


@dataclass(frozen=True)
class Key:
    """What a pattern index stands for."""

    kind: str  # "rule" | "boundary" | "stage"
    ref: object  # the Rule, Boundary, or stage name
    index: int  # pattern index within the rule


class CompiledPack:
    """A rule pack compiled once: one pattern set for rules, boundaries and stage markers."""

    def __init__(self, pack: RulePack, engine: str | None = None, *, source: str = "console",
                 os_name: str | None = None):
        self.pack = pack
        self.keys: list[Key] = []
        patterns: list[Pattern] = []
        if source == "console":
            for b in pack.boundaries:
                for p in b.patterns:
                    self.keys.append(Key("boundary", b, 0))
                    patterns.append(Pattern(p))
            for s in pack.stages:
                for p in s.patterns:
                    self.keys.append(Key("stage", s.name, 0))
                    patterns.append(Pattern(p))
        for rule in pack.rules:
            if not rule.applies_to(source, os_name):
                continue
            for i, p in enumerate(rule.patterns):
                self.keys.append(Key("rule", rule, i))
                patterns.append(Pattern(_fuzz(p) if source == "screen" and rule.screen_fuzzy
                                        else p, rule.re_flags))
        self.set = make_pattern_set(patterns, engine)
        self.ignores = {r.id: [re.compile(p, r.re_flags) for p in r.ignore] for r in pack.rules}

    @property
    def engine(self) -> str:
        return self.set.engine

    def scan(self, lines: list[str]) -> list[tuple[int, Key, re.Pattern]]:
        return [(li, self.keys[pi], self.set.compiled[pi]) for li, pi in self.set.scan(lines)]


# OCR confusions for screen text: a letter may come back as a look-alike.
_CONFUSABLE = {
    "O": "[O0]", "0": "[0O]", "o": "[o0]", "l": "[lI1|]", "I": "[Il1|]", "1": "[1lI]",
    "S": "[S5]", "5": "[5S]", "B": "[B8]", "8": "[8B]",
}


def _fuzz(pattern: str) -> str:
    """Make the plain letters of a pattern tolerant of OCR confusions and lost spaces.

    Only literal characters outside classes, groups syntax and escapes are changed; `rn` may be
    read as `m` and a space may vanish.
    """
    out: list[str] = []
    i, n = 0, len(pattern)
    depth_class = False
    while i < n:
        ch = pattern[i]
        if ch == "\\" and i + 1 < n:
            out.append(pattern[i:i + 2])
            i += 2
            continue
        if depth_class:
            out.append(ch)
            if ch == "]":
                depth_class = False
            i += 1
            continue
        if ch == "[":
            depth_class = True
            out.append(ch)
            i += 1
            continue
        if ch == "(" and pattern.startswith("(?P<", i):
            j = pattern.index(">", i)
            out.append(pattern[i:j + 1])
            i = j + 1
            continue
        if ch == "(" and pattern.startswith("(?", i):
            out.append(pattern[i:i + 3])
            i += 3
            continue
        if ch == "{":
            j = pattern.find("}", i)
            if j != -1:
                out.append(pattern[i:j + 1])
                i = j + 1
                continue
        nxt = pattern[i + 1] if i + 1 < n else ""
        quantified = nxt in "*+?{"
        if not quantified and ch == "r" and nxt == "n":
            out.append("(?:rn|m)")
            i += 2
            continue
        if not quantified and ch == " ":
            out.append(" ?")
            i += 1
            continue
        if not quantified and ch in _CONFUSABLE:
            out.append(_CONFUSABLE[ch])
            i += 1
            continue
        out.append(ch)
        i += 1
    return "".join(out)
