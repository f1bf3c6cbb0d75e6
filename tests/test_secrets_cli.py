"""Every CLI command, as a subprocess, with known fake AccessKey secrets where real ones live
(the environment, and the aliyun CLI's ~/.aliyun/config.json under a temporary HOME), and the
SDK's request-header dump switched on (DEBUG=sdk). Then every stdout, stderr, written report,
saved case file and any other file the commands left behind is searched for the secrets.

Also: instance ids and case names that would become paths ('../', absolute) exit 2.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest

pytest.importorskip("alibabacloud_ecs20140526")

from diagnose.testing.ecs_server import DEMO_REGION_DIR, EcsServer, load_region  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
LAB = ROOT / "tests" / "fixtures" / "lab"
KEY = "LTAIfakeSecretsCliKey"
ENV_SECRET = "EnvSecretCli-5d1c9e7a3f2b4860"
PROFILE_SECRET = "ProfileSecretCli-a7e3c1d9b5f20468"
SECRETS = (ENV_SECRET, PROFILE_SECRET)
FORMS = tuple({s, urllib.parse.quote(s), s.encode().hex()} for s in SECRETS)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    (home / ".aliyun").mkdir()
    (home / ".aliyun" / "config.json").write_text(json.dumps({
        "current": "default", "profiles": [
            {"name": "default", "mode": "AK", "access_key_id": KEY,
             "access_key_secret": PROFILE_SECRET, "region_id": "cn-hangzhou"}]}))
    work = tmp_path_factory.mktemp("work")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALIBABA", "ALICLOUD"))}
    env.update(HOME=str(home), PYTHONPATH=str(ROOT), DEBUG="sdk", DIAGNOSE_DEBUG="1",
               XDG_CACHE_HOME=str(home / ".cache"),
               ALIBABA_CLOUD_ECS_METADATA_DISABLED="true",
               ALIBABA_CLOUD_ACCESS_KEY_ID=KEY, ALIBABA_CLOUD_ACCESS_KEY_SECRET=ENV_SECRET)
    return {"home": home, "work": work, "env": env, "outputs": []}


def cli(world, *args: str, env: dict | None = None) -> tuple[int, str, str]:
    p = subprocess.run([sys.executable, "-m", "diagnose", *args], capture_output=True,
                       timeout=300, cwd=world["work"], env={**world["env"], **(env or {})})
    out, err = p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")
    world["outputs"].append((" ".join(args), out + "\n" + err))
    return p.returncode, out, err


def leaks(text: str) -> list[str]:
    return [f for forms in FORMS for f in forms if f in text]


def assert_clean(world, label: str, out: str, err: str) -> None:
    assert leaks(out) == [], (label, "stdout")
    assert leaks(err) == [], (label, "stderr")


def files_left(world) -> list[Path]:
    skip = world["home"] / ".aliyun" / "config.json"  # where the test itself put a secret
    found = []
    for base in (world["home"], world["work"]):
        for p in base.rglob("*"):
            if p.is_file() and p != skip:
                found.append(p)
    return found


def test_every_command_keeps_secrets_out(world):
    work = world["work"]
    panic = LAB / "vfs-panic__text" / "serial.log"
    healthy = LAB / "healthy-login__text" / "serial.log"
    if not panic.is_file() or not healthy.is_file():
        pytest.skip("lab fixtures missing")
    region = load_region(DEMO_REGION_DIR)
    iid = next(i.id for i in region.instances if "vfspanic" in i.id)
    runs = [
        ("--console", str(panic)),
        ("--console", str(panic), "--format", "json"),
        ("--console", str(healthy), "--format", "html", "--out", "report.html"),
        ("--console", str(panic), "--out", "report.json"),
        ("rules", "list"),
        ("rules", "test"),
        ("rules", "show", "linux.panic.vfs-no-initramfs"),
        ("demo", "--out", "demo-out"),
    ]
    for args in runs:
        code, out, err = cli(world, *args)
        assert code in (0, 1, 2), (args, code, err[-2000:])
        assert_clean(world, " ".join(args), out, err)

    with EcsServer(DEMO_REGION_DIR, access_key_id=KEY, access_key_secret=ENV_SECRET) as srv:
        ep = srv.endpoint
        code, out, err = cli(world, iid, "--region", region.region_id, "--endpoint", ep,
                             "--save-artifacts", "case", "--out", "ecs.html")
        assert code == 1, err[-2000:]
        assert (work / "case").is_dir() and any((work / "case").rglob("*"))
        assert "x-acs-" in err.lower()  # the SDK's request dump ran: there was a chance to leak
        assert_clean(world, "ecs fetch", out, err)
        code, out, err = cli(world, iid, "--region", region.region_id, "--endpoint", ep,
                             "--format", "json")
        assert code == 1 and json.loads(out)["verdict"]["status"] == "failed"
        assert_clean(world, "ecs json", out, err)
    with EcsServer(DEMO_REGION_DIR, access_key_id=KEY, access_key_secret=PROFILE_SECRET) as srv:
        # the profile's secret, read from ~/.aliyun/config.json
        code, out, err = cli(world, iid, "--profile", "default", "--endpoint", srv.endpoint,
                             "--format", "json",
                             env={"ALIBABA_CLOUD_ACCESS_KEY_ID": "",
                                  "ALIBABA_CLOUD_ACCESS_KEY_SECRET": ""})
        assert code == 1, err[-2000:]
        assert_clean(world, "ecs profile", out, err)
        # the endpoint refuses the environment's secret: the error must not echo either one
        code, out, err = cli(world, iid, "--region", region.region_id, "--endpoint",
                             srv.endpoint)
        assert code == 3, err[-2000:]
        assert_clean(world, "ecs refused", out, err)
    code, out, err = cli(world, iid, "--region", region.region_id, "--endpoint",
                         "http://127.0.0.1:1", "--timeout", "2")
    assert code == 3
    assert_clean(world, "ecs unreachable", out, err)

    code, out, err = cli(world, "--from", "case", "--format", "json")
    assert code == 1, err[-2000:]
    assert_clean(world, "--from", out, err)

    written = files_left(world)
    names = {p.name for p in written}
    assert {"report.html", "report.json", "ecs.html", "index.html"} <= names, names
    assert any(p.name == "console.log" for p in (work / "case").rglob("*"))
    for p in written:
        text = p.read_bytes().decode("utf-8", "replace")
        assert leaks(text) == [], p


@pytest.mark.parametrize("args", [
    ("i-../../etc/passwd",),
    ("i-bp1abc/../../x",),
    ("/etc/passwd",),
    ("i-bp1demovfspanic00001/..",),
])
def test_path_like_instance_ids_are_refused(world, args):
    code, out, err = cli(world, *args, "--region", "cn-hangzhou", "--endpoint",
                         "http://127.0.0.1:1")
    assert code == 2, err
    assert out == "" and "Traceback" not in err


def test_case_names_are_validated():
    from diagnose.errors import UsageError
    from diagnose.fetchers.files import case_dir

    for bad in ("..", ".", "../x", "/abs", "a/b", "a\\b", "", "a\x00b"):
        with pytest.raises(UsageError):
            case_dir("/tmp/root", bad)
    assert case_dir("/tmp/root", "i-bp1abc0000000001") == Path("/tmp/root/i-bp1abc0000000001")
