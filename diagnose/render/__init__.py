"""Renderers: a Diagnosis as HTML (html.py), a JSON-able dict (json.py), terminal text (text.py).

Nothing heavy is imported here, so `diagnose --help` stays fast. The one helper below is shared
by the renderers: console and OCR text is hostile, and characters that reorder or hide text
(bidi overrides, C0/C1 controls, zero-width marks) must be shown, never obeyed.
"""

from __future__ import annotations

import re

# C0 controls except TAB, DEL, C1 controls, Arabic letter mark, zero-width and directional marks
# (U+200B-200F), line/paragraph separators and the embeddings/overrides (U+2028-202E), invisible
# operators and isolates (U+2060-2069), and the byte-order mark.
CONTROL_RE = re.compile(
    "[\x00-\x08\x0a-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]"
)


def control_label(char: str) -> str:
    """The visible stand-in for one control character, e.g. "U+202E"."""
    return f"U+{ord(char):04X}"


def split_controls(text: str) -> tuple[tuple[str, bool], ...]:
    """Cut text into (piece, is_control) runs; each control character becomes its own label."""
    if not CONTROL_RE.search(text):
        return ((text, False),) if text else ()
    parts: list[tuple[str, bool]] = []
    pos = 0
    for m in CONTROL_RE.finditer(text):
        if m.start() > pos:
            parts.append((text[pos:m.start()], False))
        parts.append((control_label(m.group()), True))
        pos = m.end()
    if pos < len(text):
        parts.append((text[pos:], False))
    return tuple(parts)


def visible_controls(text: str) -> str:
    """Plain-text form: each control character replaced by <U+XXXX>."""
    return CONTROL_RE.sub(lambda m: f"<{control_label(m.group())}>", text)
