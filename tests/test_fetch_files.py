"""Saved case directories: round trip, permissions, sniffing, hostile input."""

from __future__ import annotations

import json
import os
import stat

import pytest

from diagnose.errors import UsageError
from diagnose.fetchers import files as files_mod
from diagnose.fetchers import get_fetcher
from diagnose.fetchers.files import case_dir, case_dir_for, load_case, save_case
from diagnose.model import Artifact, Event, Evidence, Subject
from diagnose.testing.samples import tiny_png

CONSOLE = b"[    1.234] Kernel panic - not syncing: VFS: Unable to mount root fs\r\n\x1b[0m\xff"
IID = "i-bp1test000000000001"


def evidence(**over) -> Evidence:
    base = dict(
        subject=Subject("ecs", IID, (("region", "cn-hangzhou"), ("os_type", "linux"))),
        console=CONSOLE, screenshot=tiny_png(),
        artifacts=(Artifact("console", True, len(CONSOLE), None, "ecs:GetInstanceConsoleOutput",
                            {"last_update_time": "2026-01-02T03:04:05Z"}),
                   Artifact("screenshot", True, 70, None, "ecs:GetInstanceScreenshot",
                            {"format": "png"}),
                   Artifact("events", True, 0, None, "ecs:events", {"history": 1})),
        events=(Event("2026-01-02T01:00:00Z", "InstanceFailure.Reboot", "Executed", "panic"),
                Event("2026-01-05T00:00:00Z", "SystemMaintenance.Reboot", "Scheduled", "",
                      scheduled=True)),
        os_hint="linux")
    base.update(over)
    return Evidence(**base)


def art(ev, name):
    return next(a for a in ev.artifacts if a.name == name)


def test_round_trip(tmp_path):
    case = tmp_path / "case"
    save_case(evidence(), case)
    back = load_case(case)
    assert back.console == CONSOLE and back.screenshot == tiny_png()
    assert back.subject == evidence().subject
    assert back.events == evidence().events
    assert back.os_hint == "linux" and back.skip_reason is None
    assert art(back, "console").detail["last_update_time"] == "2026-01-02T03:04:05Z"
    assert art(back, "console").origin == str(case / "console.log")
    assert art(back, "screenshot").detail["format"] == "png"
    assert sorted(p.name for p in case.iterdir()) == ["console.log", "events.json",
                                                      "instance.json", "screenshot.png"]


def test_permissions(tmp_path):
    case = tmp_path / "deep" / "case"
    save_case(evidence(), case)
    assert stat.S_IMODE(case.stat().st_mode) == 0o700
    for path in case.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name
    # An existing, too-open directory is tightened.
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o777)
    os.chmod(loose, 0o777)
    save_case(evidence(), loose)
    assert stat.S_IMODE(loose.stat().st_mode) == 0o700


def test_screenshot_name_follows_the_bytes(tmp_path):
    jpeg = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00rest"
    save_case(evidence(screenshot=jpeg), tmp_path / "c")
    assert (tmp_path / "c" / "screenshot.jpg").exists()
    assert not (tmp_path / "c" / "screenshot.png").exists()  # the old name is not left over
    # A PNG saved by someone else under a .jpg name is still read as PNG.
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "screenshot.jpg").write_bytes(tiny_png())
    assert art(load_case(tmp_path / "d"), "screenshot").detail["format"] == "png"


def test_not_an_image(tmp_path):
    (tmp_path / "screenshot.png").write_bytes(b"GIF89a not really")
    ev = load_case(tmp_path)
    assert ev.screenshot is None
    assert "neither PNG nor JPEG" in art(ev, "screenshot").reason


def test_reasons_survive_a_round_trip(tmp_path):
    partial = evidence(screenshot=None, events=(), artifacts=(
        Artifact("console", True, len(CONSOLE), None, "ecs:GetInstanceConsoleOutput"),
        Artifact("screenshot", False, 0, "ECS throttled the request to take a screenshot",
                 "ecs:GetInstanceScreenshot", {"attempts": 3}),
        Artifact("events", False, 0, "RAM user lacks ecs:DescribeInstanceHistoryEvents",
                 "ecs:events")))
    save_case(partial, tmp_path / "c")
    back = load_case(tmp_path / "c")
    assert art(back, "screenshot").reason == "ECS throttled the request to take a screenshot"
    assert art(back, "screenshot").detail["attempts"] == 3
    assert not art(back, "events").available
    assert "DescribeInstanceHistoryEvents" in art(back, "events").reason


def test_skipped_evidence(tmp_path):
    skipped = evidence(console=None, screenshot=None, skip_reason="instance is Stopped",
                       artifacts=(Artifact("console", False, 0, "instance is Stopped"),
                                  Artifact("screenshot", False, 0, "instance is Stopped")))
    save_case(skipped, tmp_path / "c")
    back = load_case(tmp_path / "c")
    assert back.console is None and back.skip_reason == "instance is Stopped"


def test_bare_directory(tmp_path):
    (tmp_path / "console.log").write_bytes(CONSOLE)
    ev = load_case(tmp_path)
    assert (ev.subject.kind, ev.subject.name) == ("case", tmp_path.name)
    assert ev.console == CONSOLE and ev.screenshot is None and ev.os_hint is None
    assert "no screenshot" in art(ev, "screenshot").reason
    assert [a.name for a in ev.artifacts] == ["console", "screenshot"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no console.log" in load_case(empty).skip_reason


def test_hostile_instance_json_is_tamed(tmp_path):
    (tmp_path / "instance.json").write_text(json.dumps({
        "subject": {"kind": "rootkit", "name": "x" * 5000, "facts": [["a", 1], "junk",
                                                                    ["os_type", "windows"]]},
        "os_hint": "beos", "artifacts": [{"name": "console", "available": False,
                                          "reason": {"nested": 1}}, 7]}))
    (tmp_path / "events.json").write_text(json.dumps([{"kind": "X", "time": 5}, "junk",
                                                      {"no": "kind"}]))
    ev = load_case(tmp_path)
    assert ev.subject.kind == "case" and len(ev.subject.name) == 200
    assert ev.subject.facts == (("os_type", "windows"),)
    assert ev.os_hint == "windows"  # from the facts, not the bogus hint
    assert art(ev, "console").reason == "no console.log in the case"
    assert ev.events == (Event("", "X", "", ""),)


def test_bad_json_and_wrong_types(tmp_path):
    (tmp_path / "instance.json").write_text("{not json")
    with pytest.raises(UsageError, match="not valid JSON"):
        load_case(tmp_path)
    (tmp_path / "instance.json").write_text("[1, 2]")
    with pytest.raises(UsageError, match="JSON object"):
        load_case(tmp_path)
    (tmp_path / "instance.json").write_text("{}")
    (tmp_path / "events.json").write_text('{"a": 1}')
    with pytest.raises(UsageError, match="list of events"):
        load_case(tmp_path)


def test_symlinks_are_refused(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0")
    case = tmp_path / "case"
    case.mkdir()
    (case / "console.log").symlink_to(secret)
    with pytest.raises(UsageError, match="symbolic link"):
        load_case(case)
    link = tmp_path / "link"
    link.symlink_to(case)
    with pytest.raises(UsageError, match="symbolic link"):
        save_case(evidence(), link)


def test_oversized_files_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(files_mod, "MAX_CONSOLE", 10)
    (tmp_path / "console.log").write_bytes(b"x" * 11)
    with pytest.raises(UsageError, match="more than the 10"):
        load_case(tmp_path)


def test_not_a_directory(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError):
        load_case(tmp_path / "file")
    with pytest.raises(UsageError):
        load_case(tmp_path / "missing")
    with pytest.raises(UsageError):
        save_case(evidence(), tmp_path / "file")


@pytest.mark.parametrize("name", ["..", "../x", "/etc", "a/b", "", ".", "x\x00y", "~root"])
def test_case_names_cannot_escape(tmp_path, name):
    with pytest.raises(UsageError):
        case_dir(tmp_path, name)


def test_case_dir_for_validates_instance_ids(tmp_path):
    assert case_dir_for(tmp_path, evidence()) == tmp_path / IID
    bad = evidence(subject=Subject("ecs", "../../etc"))
    with pytest.raises(UsageError):
        case_dir_for(tmp_path, bad)
    with pytest.raises(UsageError):
        save_case(bad, tmp_path / "c")
    assert case_dir_for(tmp_path, evidence(subject=Subject("file", "boot.log"))) == \
        tmp_path / "boot.log"


def test_files_fetcher_from_registry(tmp_path):
    save_case(evidence(), tmp_path / "c")
    ev = get_fetcher("files").fetch(str(tmp_path / "c"))
    assert ev.console == CONSOLE
