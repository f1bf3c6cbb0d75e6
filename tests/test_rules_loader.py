"""The loader reports every problem of a bad rule pack, each with its file and line."""

import textwrap

import pytest

from diagnose.errors import RuleError
from diagnose.rules import check_pattern, load_pack, required_literals

GOOD = """
[[rule]]
id = "linux.t.good"
title = "good"
category = "kernel-panic-other"
status = "failed"
severity = "critical"
os = "linux"
source = "console"
stage = "kernel"
patterns = ['Kernel panic - not syncing: (?P<reason>.{1,80})']
fields = { reason = "why" }
remediation = ["look"]
[rule.examples]
match = ["[    1.000000] Kernel panic - not syncing: Fatal exception"]
"""


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def test_default_pack_loads():
    pack = load_pack()
    assert pack.rules
    assert pack.stages and pack.boundaries


def test_collects_every_error_with_file_and_line(tmp_path):
    bad = GOOD.replace('"linux.t.good"', '"linux.t.bad"').replace(
        '"kernel-panic-other"', '"no-such-category"').replace(
        "(?P<reason>.{1,80})'", "(?P<reason>.{1,80})', '(unclosed'")
    _write(tmp_path, "a.toml", GOOD + bad + """
[[rule]]
id = "linux.t.crawl"
title = "crawl"
category = "oom-killer"
status = "degraded"
severity = "warning"
os = "linux"
source = "console"
stage = "services"
patterns = ['.*killed process', '(a+)+ boom', 'x(?=y)yyy']
remediation = ["x"]
[rule.examples]
match = ["killed process"]
""")
    _write(tmp_path, "b.toml", "[[rule]]\nid = \n")
    with pytest.raises(RuleError) as ei:
        load_pack([tmp_path], include_default=False)
    problems = ei.value.problems
    text = "\n".join(problems)
    assert "a.toml:20: rule linux.t.bad: category" in text
    assert "no-such-category" in text
    assert "bad regular expression" in text
    assert "starts with an unbounded greedy class" in text
    assert "nested unbounded quantifiers" in text
    assert "look-around" in text
    assert "b.toml:2: TOML syntax error" in text
    assert len(problems) >= 6
    for p in problems:
        assert p.split(":")[1].isdigit(), p


def test_duplicate_ids_and_undeclared_fields(tmp_path):
    _write(tmp_path, "a.toml", GOOD)
    _write(tmp_path, "b.toml", GOOD.replace("fields = { reason = \"why\" }", ""))
    with pytest.raises(RuleError) as ei:
        load_pack([tmp_path], include_default=False)
    text = "\n".join(ei.value.problems)
    assert "group 'reason' is not declared" in text


def test_duplicate_id(tmp_path):
    _write(tmp_path, "a.toml", GOOD)
    _write(tmp_path, "b.toml", GOOD)
    with pytest.raises(RuleError, match="duplicate id"):
        load_pack([tmp_path], include_default=False)


def test_reference_must_be_http(tmp_path):
    _write(tmp_path, "a.toml", GOOD.replace('remediation = ["look"]',
                                             'remediation = ["look"]\n'
                                             'references = ["javascript:alert(1)"]'))
    with pytest.raises(RuleError, match="not an http"):
        load_pack([tmp_path], include_default=False)


def test_check_pattern_rules():
    assert check_pattern(r"Out of memory: Kill(ed)? process") == []
    assert check_pattern(r"\S+ login:")  # leading greedy class
    assert check_pattern(r"ab")  # no 3-char literal
    assert check_pattern(r"foo\nbar")
    assert required_literals(r"(?:BUG: soft lockup|rcu_sched self-detected)") == (
        "BUG: soft lockup", "rcu_sched self-detected")


def test_a_rule_pack_cannot_run_code(tmp_path):
    # TOML has no code; a pattern is compiled, never evaluated; a summary template is filled
    # without attribute access.
    from diagnose.decide import render_summary
    assert render_summary("{x.__class__} {x} {y}", {"x": "a"}) == "{x.__class__} a ?"
