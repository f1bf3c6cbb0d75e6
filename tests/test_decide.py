"""The decision model on a small rule pack of its own (independent of the shipped rules):
order of severities, what a later login prompt means, `supersedes`, `resolves`, `at_end`."""

from __future__ import annotations

import textwrap

import pytest

from diagnose.errors import RuleError
from diagnose.pipeline import Analyzer, evidence_from_bytes
from diagnose.rules import load_pack

PACK = '''
[[rule]]
id = "t.panic.generic"
title = "panic"
category = "kernel-panic-other"
status = "failed"
severity = "critical"
priority = 40
os = "linux"
source = "console"
stage = "kernel"
patterns = ['Kernel panic - not syncing: ']
remediation = ["r"]
[rule.examples]
match = ["Kernel panic - not syncing: Fatal exception"]

[[rule]]
id = "t.panic.vfs"
title = "vfs panic"
category = "kernel-panic-vfs"
status = "failed"
severity = "critical"
priority = 80
os = "linux"
source = "console"
stage = "kernel"
supersedes = ["t.panic.generic"]
patterns = ['Kernel panic - not syncing: VFS: Unable to mount root fs']
remediation = ["r"]
[rule.examples]
match = ["Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)"]

[[rule]]
id = "t.oops.null"
title = "oops"
category = "kernel-oops-bug"
status = "failed"
severity = "error"
os = "linux"
source = "console"
stage = "kernel"
patterns = ['BUG: kernel NULL pointer dereference']
remediation = ["r"]
[rule.examples]
match = ["BUG: kernel NULL pointer dereference, address: 0000000000000008"]

[[rule]]
id = "t.emergency"
title = "emergency"
category = "emergency-mode"
status = "failed"
severity = "critical"
os = "linux"
source = "console"
stage = "init"
patterns = ['You are in emergency mode']
remediation = ["r"]
[rule.examples]
match = ["You are in emergency mode. After logging in, type journalctl -xb"]

[[rule]]
id = "t.net.dhcp"
title = "no lease"
category = "network-failure"
status = "degraded"
severity = "warning"
os = "linux"
source = "console"
stage = "services"
patterns = ['No DHCPOFFERS received']
remediation = ["r"]
[rule.examples]
match = ["No DHCPOFFERS received."]

[[rule]]
id = "t.net.bound"
title = "lease"
category = "network-failure"
status = "degraded"
severity = "info"
os = "linux"
source = "console"
stage = "services"
resolves = ["network-failure"]
patterns = ['bound to [0-9.]+ -- renewal in']
remediation = ["r"]
[rule.examples]
match = ["bound to 10.0.0.5 -- renewal in 1800 seconds."]

[[rule]]
id = "t.fsck.progress"
title = "fsck running"
category = "fsck-in-progress-hang"
status = "in-progress"
severity = "error"
os = "linux"
source = "console"
stage = "init"
at_end = true
patterns = ['check forced\\.']
remediation = ["r"]
[rule.examples]
match = ["/dev/vda1 has been mounted 35 times without being checked, check forced."]

[[rule]]
id = "t.login"
title = "login"
category = "healthy"
status = "healthy"
severity = "positive"
os = "linux"
source = "console"
stage = "login"
patterns = ['^[a-z0-9-]{1,30} login: ?']
remediation = ["r"]
[rule.examples]
match = ["web01 login: "]
'''

PANIC_VFS = ("[    2.1] Kernel panic - not syncing: VFS: Unable to mount root fs on "
             "unknown-block(0,0)")
OOPS = "[   50.0] BUG: kernel NULL pointer dereference, address: 0000000000000008"
LOGIN = "web01 login: "


@pytest.fixture(scope="module")
def analyzer(tmp_path_factory):
    d = tmp_path_factory.mktemp("pack")
    (d / "t.toml").write_text(PACK)
    return Analyzer(load_pack([d], include_default=False))


def verdict(analyzer, *lines: str):
    data = ("\n".join(lines) + "\n").encode()
    return analyzer.analyse(evidence_from_bytes(data, name="t", origin="t")).verdict


def test_nothing_recognised_is_uncertain(analyzer):
    v = verdict(analyzer, "hello", "world")
    assert (v.status, v.category) == ("uncertain", "unknown")


def test_specific_rule_supersedes_generic_on_its_line(analyzer):
    d = analyzer.analyse(evidence_from_bytes((PANIC_VFS + "\n").encode(), name="t", origin="t"))
    assert {f.rule_id for f in d.findings} == {"t.panic.vfs"}
    assert d.verdict.category == "kernel-panic-vfs"


def test_failure_after_login_beats_the_prompt(analyzer):
    v = verdict(analyzer, LOGIN, "root", "web01:~# echo 1 > /proc/x", OOPS)
    assert (v.status, v.category, v.rule_id) == ("failed", "kernel-oops-bug", "t.oops.null")


def test_oops_the_boot_got_past_still_decides_as_degraded(analyzer):
    v = verdict(analyzer, OOPS, LOGIN)
    assert (v.status, v.category) == ("degraded", "kernel-oops-bug")


def test_fatal_state_the_boot_got_past_is_history(analyzer):
    # an emergency shell that was left (the boot continued to a login prompt)
    v = verdict(analyzer, "You are in emergency mode. After logging in, type journalctl", LOGIN)
    assert (v.status, v.category) == ("healthy", "healthy")


def test_critical_beats_error_in_the_same_boot(analyzer):
    v = verdict(analyzer, OOPS, "[   50.1] Kernel panic - not syncing: Fatal exception")
    assert v.category == "kernel-panic-other"


def test_warning_after_login_is_degraded(analyzer):
    v = verdict(analyzer, LOGIN, "No DHCPOFFERS received.")
    assert (v.status, v.category) == ("degraded", "network-failure")


def test_later_lease_resolves_an_earlier_dhcp_failure(analyzer):
    v = verdict(analyzer, "No DHCPOFFERS received.", "bound to 10.0.0.5 -- renewal in 1800 "
                "seconds.", LOGIN)
    assert (v.status, v.category) == ("healthy", "healthy")
    # a failure after the lease is not resolved by it
    v = verdict(analyzer, "bound to 10.0.0.5 -- renewal in 1800 seconds.",
                "No DHCPOFFERS received.", LOGIN)
    assert v.category == "network-failure"


def test_in_progress_only_when_the_log_ends_there(analyzer):
    forced = "/dev/vda1 has been mounted 35 times without being checked, check forced."
    v = verdict(analyzer, "[    3.0] Linux version 6.1.0 (x@y) #1", forced)
    assert (v.status, v.category) == ("in-progress", "fsck-in-progress-hang")
    v = verdict(analyzer, forced, LOGIN)
    assert v.category == "healthy"


def test_only_the_last_boot_is_judged(analyzer):
    v = verdict(analyzer, "SeaBIOS (version 1.16.2)", PANIC_VFS, "SeaBIOS (version 1.16.2)",
                "[    0.000000] Linux version 6.1.0 (x@y) #1", LOGIN)
    assert v.category == "healthy"
    v = verdict(analyzer, "SeaBIOS (version 1.16.2)", "[    0.000000] Linux version 6.1.0 (x@y)",
                LOGIN, "[  300.0] reboot: Restarting system", "SeaBIOS (version 1.16.2)",
                PANIC_VFS)
    assert v.category == "kernel-panic-vfs"


@pytest.mark.parametrize("snippet, message", [
    ('supersedes = ["t.nope"]', "supersedes unknown rule"),
    ('resolves = ["no-such-category"]', "not a failure category"),
    ('resolves = ["healthy"]', "not a failure category"),
])
def test_bad_supersedes_and_resolves_are_load_errors(tmp_path, snippet, message):
    rule = textwrap.dedent(f'''
        [[rule]]
        id = "t.x.y"
        title = "x"
        category = "kernel-panic-other"
        status = "failed"
        severity = "info"
        os = "linux"
        source = "console"
        stage = "kernel"
        {snippet}
        patterns = ['Kernel panic - not syncing: ']
        remediation = ["r"]
        [rule.examples]
        match = ["Kernel panic - not syncing: x"]
        ''')
    (tmp_path / "x.toml").write_text(rule)
    with pytest.raises(RuleError) as exc:
        load_pack([tmp_path], include_default=False)
    assert message in str(exc.value)
    assert "x.toml:" in str(exc.value)
