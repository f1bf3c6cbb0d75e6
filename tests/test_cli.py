"""The command line: one-line errors and exit codes, never a traceback."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from diagnose.cli import main

FIXTURES = Path(__file__).parent / "fixtures" / "lab"


def run(*args, stdin: bytes | None = None):
    p = subprocess.run([sys.executable, "-m", "diagnose", *args], input=stdin,
                       capture_output=True, timeout=120)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def _one_line_error(err: str):
    assert err.startswith("diagnose: "), err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err


def test_missing_file(tmp_path):
    code, out, err = run("--console", str(tmp_path / "nope.log"))
    assert code == 2
    _one_line_error(err)
    assert "no such file" in err


def test_directory(tmp_path):
    code, _, err = run("--console", str(tmp_path))
    assert code == 2
    _one_line_error(err)
    assert "directory" in err


def test_binary_garbage(tmp_path):
    p = tmp_path / "x.log"
    p.write_bytes(bytes(range(256)) * 64)
    code, _, err = run("--console", str(p))
    assert code == 2
    _one_line_error(err)
    assert "binary" in err


def test_image_given_as_console(tmp_path):
    png = next(FIXTURES.rglob("screen.png"), None)
    if png is None:
        pytest.skip("no lab screenshots")
    code, _, err = run("--console", str(png))
    assert code == 2 and "--screenshot" in err
    _one_line_error(err)


def test_empty_file_is_uncertain(tmp_path):
    p = tmp_path / "empty.log"
    p.write_bytes(b"")
    code, out, err = run("--console", str(p), "--format", "json")
    assert code == 6
    _one_line_error(err)
    doc = json.loads(out)
    assert doc["verdict"]["status"] == "uncertain"
    assert "empty" in doc["verdict"]["summary"]


def test_nothing_to_do():
    code, _, err = run()
    assert code == 2
    assert "Traceback" not in err


def test_stdin_json_contract():
    log = next(FIXTURES.glob("vfs-panic__text/serial.log"), None)
    if log is None:
        pytest.skip("no lab fixture")
    code, out, err = run("--console", "-", "--format", "json", stdin=log.read_bytes())
    assert code == 1, err
    doc = json.loads(out)
    assert set(doc) >= {"verdict", "findings", "boots", "artifacts", "tool"}
    assert set(doc["verdict"]) >= {"status", "category", "rule_id", "title", "summary",
                                   "confidence"}
    assert doc["verdict"]["category"] == "kernel-panic-vfs"
    f = doc["findings"][0]
    assert set(f) >= {"rule_id", "category", "severity", "source", "boot", "line", "text",
                      "fields"}
    assert doc["boots"][-1]["stages"][0]["name"] in ("firmware", "bootloader", "kernel")
    assert doc["artifacts"]["console"]["available"] is True
    assert doc["artifacts"]["screenshot"]["available"] is False


def test_html_out_file(tmp_path):
    log = next(FIXTURES.glob("*/serial.log"), None)
    if log is None:
        pytest.skip("no lab fixture")
    out = tmp_path / "r.html"
    code, stdout, err = run("--console", str(log), "--out", str(out))
    assert code in (0, 1), err
    html = out.read_text()
    assert "Content-Security-Policy" in html
    assert str(out) in stdout


def test_rules_commands():
    code, out, _ = run("rules", "list")
    assert code == 0
    lines = out.strip().splitlines()
    assert len(lines) >= 80
    first = lines[0].split()[0]
    code, out, _ = run("rules", "show", first)
    assert code == 0 and first in out
    code, _, err = run("rules", "show", "no.such.rule")
    assert code == 2
    _one_line_error(err)


def test_rules_test_passes():
    code, out, _ = run("rules", "test")
    assert code == 0, out[-3000:]
    assert " 0 failed" in out


def test_bad_extra_rule_pack_lists_problems(tmp_path):
    (tmp_path / "x.toml").write_text("[[rule]]\nid = \"linux.x.y\"\ntitle = \"t\"\n")
    code, _, err = run("rules", "--rules", str(tmp_path), "list")
    assert code == 5
    assert "x.toml:1: rule linux.x.y: missing required key 'category'" in err
    assert "Traceback" not in err


def test_help_is_fast_and_light():
    code = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "diagnose", "--help"],
        capture_output=True, timeout=60)
    assert code.returncode == 0
    imported = code.stderr.decode()
    for heavy in ("jinja2", "cv2", "alibabacloud", "dask", "hyperscan", "numpy"):
        assert f" {heavy}" not in imported, heavy


def test_main_returns_code_in_process(tmp_path, capsys):
    assert main(["--console", str(tmp_path / "missing")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_missing_optional_package_is_one_line_usage_error(monkeypatch, capsys):
    # the ECS SDK is an optional extra: without it, say which extra to install (exit 2)
    for mod in [m for m in sys.modules if m.startswith(("alibabacloud_", "darabonba"))]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "alibabacloud_credentials", None)
    monkeypatch.setitem(sys.modules, "alibabacloud_ecs20140526", None)
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", "id")
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "secret")
    code = main(["i-bp1demovfspanic00001", "--region", "cn-hangzhou",
                 "--endpoint", "http://127.0.0.1:9"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "pip install 'diagnose[ecs]'" in err
    _one_line_error(err)
