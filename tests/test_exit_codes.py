"""Every exit code of the README's table, through the real command line in a subprocess.

| 0 ok | 1 failed | 2 usage | 3 could not fetch | 4 internal | 5 bad rule pack | 6 empty console |
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAB = ROOT / "tests" / "fixtures" / "lab"
HEALTHY = LAB / "healthy-login__text" / "serial.log"
PANIC = LAB / "vfs-panic__text" / "serial.log"

RULE = """\
[[rule]]
id = "local.test.zorglub"
title = "Zorglub exploded"
category = "kernel-panic-other"
status = "failed"
severity = "critical"
os = "linux"
source = "console"
stage = "kernel"
patterns = ['zorglub exploded at (?P<where>\\w+)']
fields = {{ where = "where it exploded" }}
remediation = ["Put the zorglub back together."]

[rule.examples]
match = ["{example}"]
"""


def run(*args: str, stdin: bytes | None = None, env: dict | None = None, cwd: Path = ROOT,
        python: list[str] | None = None):
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    cmd = [sys.executable, *(python or ["-m", "diagnose"]), *args]
    p = subprocess.run(cmd, input=stdin, capture_output=True, timeout=120, env=full_env, cwd=cwd)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def one_line(err: str) -> str:
    assert err.startswith("diagnose: "), err
    assert "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1, err
    return err.strip()


def need(path: Path) -> Path:
    if not path.is_file():
        pytest.skip(f"fixture {path.relative_to(ROOT)} is missing")
    return path


# 0 ---------------------------------------------------------------------------------------------

def test_0_healthy_verdict():
    code, out, err = run("--console", str(need(HEALTHY)), "--format", "json")
    assert code == 0, err
    assert json.loads(out)["verdict"]["status"] == "healthy"


def test_0_uncertain_is_not_a_failure(tmp_path):
    log = tmp_path / "plain.log"
    log.write_text("hello\nnothing to see here\n")
    code, out, err = run("--console", str(log), "--format", "json")
    assert code == 0, err
    assert json.loads(out)["verdict"]["status"] == "uncertain"


def test_0_rules_commands():
    assert run("rules", "list")[0] == 0
    code, out, _ = run("rules", "test")
    assert code == 0 and " 0 failed" in out


# 1 ---------------------------------------------------------------------------------------------

def test_1_failed_verdict():
    code, out, err = run("--console", str(need(PANIC)), "--format", "json")
    assert code == 1, err
    assert json.loads(out)["verdict"]["status"] == "failed"


def test_1_failed_verdict_from_stdin():
    code, _, _ = run("--console", "-", stdin=need(PANIC).read_bytes())
    assert code == 1


def test_1_rules_test_with_a_failing_example(tmp_path):
    (tmp_path / "ok.toml").write_text(RULE.format(example="zorglub exploded at home"))
    code, out, err = run("rules", "--rules", str(tmp_path), "test")
    assert code == 0, out[-2000:] + err
    (tmp_path / "ok.toml").write_text(RULE.format(example="zorglub imploded at home"))
    code, out, err = run("rules", "--rules", str(tmp_path), "test")
    assert code == 1, err
    assert "local.test.zorglub" in out and " 1 failed" in out


def test_1_extra_rule_decides(tmp_path):
    (tmp_path / "ok.toml").write_text(RULE.format(example="zorglub exploded at home"))
    log = tmp_path / "z.log"
    log.write_text("booting\nzorglub exploded at dawn\n")
    code, out, _ = run("--console", str(log), "--rules", str(tmp_path), "--format", "json")
    assert code == 1
    assert json.loads(out)["verdict"]["rule_id"] == "local.test.zorglub"


# 2 ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("args", [
    ("--console", "/nonexistent/boot.log"),
    ("--console", "."),
    (),
    ("--format", "xml", "--console", "x.log"),
    ("not-a-target",),
    ("../../etc/passwd",),
    ("i-../../etc",),
    ("--from", "/nonexistent/case"),
    ("rules", "show", "no.such.rule"),
    ("rules",),
])
def test_2_usage(args):
    code, out, err = run(*args)
    assert code == 2, (code, err)
    assert "Traceback" not in err
    assert err.strip(), "a usage error says what is wrong"


def test_2_binary_input(tmp_path):
    p = tmp_path / "core"
    p.write_bytes(b"\x7fELF" + bytes(range(256)) * 8)
    code, _, err = run("--console", str(p))
    assert code == 2
    assert "executable" in one_line(err)


def test_2_unwritable_out(tmp_path):
    code, _, err = run("--console", str(need(HEALTHY)), "--out",
                       str(tmp_path / "missing-dir" / "r.html"))
    assert code == 2
    assert "cannot write" in one_line(err)


# 3 ---------------------------------------------------------------------------------------------

def test_3_nothing_could_be_fetched(tmp_path):
    pytest.importorskip("alibabacloud_ecs20140526")
    env = {"HOME": str(tmp_path), "ALIBABA_CLOUD_ACCESS_KEY_ID": "LTAIfakeExitCodes",
           "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "fake-secret-exit-codes",
           "ALIBABA_CLOUD_ECS_METADATA_DISABLED": "true"}
    # port 1 on loopback: nothing listens there, the connection is refused at once
    code, out, err = run("i-bp1exitcodes0000001", "--region", "cn-hangzhou",
                         "--endpoint", "http://127.0.0.1:1", "--timeout", "2", env=env)
    assert code == 3, err
    assert out == ""
    assert "refused" in one_line(err)
    assert "fake-secret-exit-codes" not in err


# 4 ---------------------------------------------------------------------------------------------

BOOM = """\
import sys
from diagnose import pipeline
from diagnose.cli import main

def boom(self, evidence, **kw):
    raise RuntimeError("the decider lost its keys\\nsecond line")

pipeline.Analyzer.analyse = boom
sys.exit(main(sys.argv[1:]))
"""


def test_4_internal_error_is_one_line(tmp_path):
    """An unexpected exception anywhere below main() becomes one line and exit code 4."""
    code, out, err = run("--console", str(need(PANIC)), python=["-c", BOOM],
                         env={"DIAGNOSE_DEBUG": ""})
    assert code == 4
    assert out == ""
    line = one_line(err)
    assert line.startswith("diagnose: internal error: RuntimeError: ")
    assert "the decider lost its keys" in line and "second line" not in line
    assert "DIAGNOSE_DEBUG=1" in line


def test_4_traceback_with_debug(tmp_path):
    code, _, err = run("--console", str(need(PANIC)), python=["-c", BOOM],
                       env={"DIAGNOSE_DEBUG": "1"})
    assert code == 4
    assert "Traceback (most recent call last)" in err
    assert "in boom" in err
    assert err.strip().splitlines()[-1].startswith("diagnose: internal error: RuntimeError")


# 5 ---------------------------------------------------------------------------------------------

def test_5_bad_rule_pack_for_every_command(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(RULE.format(example="x").replace(
        "'zorglub exploded at (?P<where>\\w+)'", "'zorglub (\\w+\\s?)+ at (?P<where>\\w+)'"))
    log = tmp_path / "z.log"
    log.write_text("zorglub\n")
    for args in (("rules", "--rules", str(tmp_path), "list"),
                 ("rules", "--rules", str(tmp_path), "test"),
                 ("--console", str(log), "--rules", str(tmp_path))):
        code, out, err = run(*args)
        assert code == 5, (args, err)
        assert f"{bad}:10: rule local.test.zorglub" in err, err
        assert "backtrack" in err
        assert "Traceback" not in err


def test_5_toml_syntax_error(tmp_path):
    (tmp_path / "broken.toml").write_text("[[rule]]\nid = \"a.b\"\ntitle = \n")
    code, _, err = run("rules", "--rules", str(tmp_path), "list")
    assert code == 5
    assert "broken.toml:3" in err


# 6 ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("content", [b"", b"\x00" * 4096, b"\r\n \n\t\n"])
def test_6_empty_console(tmp_path, content):
    log = tmp_path / "empty.log"
    log.write_bytes(content)
    code, out, err = run("--console", str(log), "--format", "json")
    assert code == 6, err
    assert "empty" in one_line(err)
    assert json.loads(out)["verdict"]["status"] == "uncertain"


def test_6_empty_stdin():
    code, out, err = run("--console", "-", stdin=b"")
    assert code == 6
    assert "UNCERTAIN" in out.upper()
