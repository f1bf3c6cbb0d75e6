# ruff: noqa: E501 - log lines are quoted at their real length
"""False alarms: healthy boots full of harmless scary lines stay healthy, and failures that
follow a login prompt are not hidden by it.

Every log here is written for this test, line by line in the format the kernel, systemd, the
init scripts or the agents print (values are ours). Each holds noise that real healthy boots
print all the time: firmware and ACPI complaints, module probing, retried network requests,
unrelated units that fail, kernel WARNINGs, journal recovery.
"""

from __future__ import annotations

import pytest

from diagnose.pipeline import Analyzer, evidence_from_bytes

HEALTHY = {
    "systemd-acpi-modprobe-noise": """\
[    0.000000] Linux version 6.1.0-28-amd64 (debian-kernel@lists.debian.org) (gcc-12 (Debian 12.2.0-14) 12.2.0) #1 SMP PREEMPT_DYNAMIC Debian 6.1.119-1 (2024-11-22)
[    0.000000] Command line: BOOT_IMAGE=/boot/vmlinuz-6.1.0-28-amd64 root=UUID=5d2a1c3e ro console=ttyS0,115200
[    0.012345] ACPI BIOS Error (bug): Could not resolve symbol [\\_SB.PCI0.LPCB.HEC.CHRG], AE_NOT_FOUND (20220331/psargs-330)
[    0.012400] ACPI Error: Aborting method \\_SB.PCI0.LPCB.EC0._Q66 due to previous error (AE_NOT_FOUND) (20220331/psparse-529)
[    0.456789] [Firmware Bug]: TSC doesn't count with P0 frequency!
[    1.234567] i8042: No controller found
[    1.345678] floppy0: no floppy controllers found
[    1.456789] piix4_smbus 0000:00:01.3: SMBus Host Controller not enabled!
[    2.100000] EXT4-fs (vda1): recovery complete
[    2.100100] EXT4-fs (vda1): mounted filesystem 5d2a1c3e with ordered data mode. Quota mode: none.
[    2.500000] systemd[1]: systemd 252.31-1~deb12u1 running in system mode (+PAM +AUDIT +SELINUX)
[    2.600000] systemd[1]: Failed to find module 'autofs4'
[    3.000000] modprobe[201]: modprobe: FATAL: Module msr not found in directory /lib/modules/6.1.0-28-amd64
[  OK  ] Reached target local-fs.target - Local File Systems.
         Starting systemd-timesyncd.service - Network Time Synchronization...
[FAILED] Failed to start bluetooth.service - Bluetooth service.
See 'systemctl status bluetooth.service' for details.
[FAILED] Failed to start systemd-modules-load.service - Load Kernel Modules.
See 'systemctl status systemd-modules-load.service' for details.
[  OK  ] Started ssh.service - OpenBSD Secure Shell server.
[  OK  ] Reached target multi-user.target - Multi-User System.

Debian GNU/Linux 12 web01 ttyS0

web01 login:
""",
    "kernel-warning-then-login": """\
[    3.210000] ------------[ cut here ]------------
[    3.210010] WARNING: CPU: 0 PID: 1 at drivers/gpu/drm/drm_mode_config.c:123 drm_mode_config_cleanup+0x2a/0x200 [drm]
[    3.210020] Modules linked in: drm_kms_helper drm virtio_net
[    3.210030] CPU: 0 PID: 1 Comm: systemd Not tainted 6.1.0-28-amd64 #1 Debian 6.1.119-1
[    3.210040] Call Trace:
[    3.210050]  <TASK>
[    3.210060]  dump_stack_lvl+0x44/0x5c
[    3.210070]  </TASK>
[    3.210080] ---[ end trace 0000000000000000 ]---
[    9.000000] cloud-init[512]: Cloud-init v. 22.4.2 running 'init' at Mon, 25 Nov 2024 10:00:09 +0000. Up 9.00 seconds.
[   10.000000] cloud-init[512]: 2024-11-25 10:00:10,100 - url_helper.py[WARNING]: Calling 'http://169.254.169.254/2009-04-04/meta-data/instance-id' failed [0/120s]: request error [HTTPConnectionPool(host='169.254.169.254', port=80): Read timed out.]
[   12.000000] cloud-init[640]: Cloud-init v. 22.4.2 running 'modules:final' at Mon, 25 Nov 2024 10:00:12 +0000. Up 12.00 seconds.
[   12.300000] cloud-init[640]: Cloud-init v. 22.4.2 finished at Mon, 25 Nov 2024 10:00:12 +0000. Datasource DataSourceEc2Local.  Up 12.30 seconds

Ubuntu 22.04.5 LTS ip-172-31-5-9 ttyS0

ip-172-31-5-9 login:
""",
    "sysv-dhcp-retries-then-lease": """\
INIT: version 2.88 booting
Checking root file system...fsck from util-linux 2.20.1
/dev/sda1: clean, 112903/1310720 files, 841202/5242624 blocks
Listening on LPF/eth0/52:54:00:12:34:56
DHCPDISCOVER on eth0 to 255.255.255.255 port 67 interval 3
DHCPDISCOVER on eth0 to 255.255.255.255 port 67 interval 7
DHCPREQUEST on eth0 to 255.255.255.255 port 67
DHCPOFFER from 10.0.2.2
DHCPACK from 10.0.2.2
bound to 10.0.2.15 -- renewal in 41872 seconds.
INIT: Entering runlevel: 2
Starting OpenBSD Secure Shell server: sshd.

Debian GNU/Linux 7 wheezy ttyS0

wheezy login:
""",
    "journal-format-healthy": """\
Nov 25 10:00:01 db01 kernel: Linux version 5.14.0-427.13.1.el9_4.x86_64 (mockbuild@x86-64-02.build.eng.rdu2.redhat.com) #1 SMP PREEMPT_DYNAMIC
Nov 25 10:00:01 db01 kernel: Command line: BOOT_IMAGE=(hd0,gpt2)/vmlinuz root=/dev/mapper/rhel-root ro console=ttyS0
Nov 25 10:00:02 db01 kernel: ERST: Error Record Serialization Table (ERST) support is initialized.
Nov 25 10:00:04 db01 systemd[1]: Starting NetworkManager-wait-online.service - Network Manager Wait Online...
Nov 25 10:00:06 db01 NetworkManager[811]: <info>  [1732528806.1234] dhcp4 (eth0): state changed new lease, address=10.0.0.12
Nov 25 10:00:07 db01 systemd[1]: Finished NetworkManager-wait-online.service - Network Manager Wait Online.
Nov 25 10:00:08 db01 sshd[902]: Server listening on 0.0.0.0 port 22.
Nov 25 10:00:08 db01 systemd[1]: Started sshd.service - OpenSSH server daemon.
Nov 25 10:00:09 db01 systemd[1]: Reached target multi-user.target - Multi-User System.
Nov 25 10:00:09 db01 systemd[1]: Startup finished in 1.234s (kernel) + 2.345s (initrd) + 5.678s (userspace) = 9.257s.
""",
    "openrc-alpine": """\
   OpenRC 0.52.1 is starting up Linux 6.6.32-0-virt (x86_64)
 * Mounting /proc ... [ ok ]
 * Checking local filesystems  ... [ ok ]
 * Loading modules ...
modprobe: can't change directory to '/lib/modules': No such file or directory
 [ ok ]
 * Starting networking ... *   eth0 ...udhcpc: started, v1.36.1
udhcpc: broadcasting discover
udhcpc: lease of 10.0.2.15 obtained from 10.0.2.2, lease time 86400
 [ ok ]
 * Starting sshd ... [ ok ]

Welcome to Alpine Linux 3.20
Kernel 6.6.32-0-virt on an x86_64 (/dev/ttyS0)

alpine login:
""",
}

# The failure comes after the system was up: the later failure decides.
FAILED_AFTER_LOGIN = {
    "oops-after-login": ("""\
[  OK  ] Reached target multi-user.target - Multi-User System.

web01 login: root
Password:
root@web01:~# insmod ./broken.ko
[   88.123456] BUG: kernel NULL pointer dereference, address: 0000000000000010
[   88.123460] #PF: supervisor read access in kernel mode
[   88.123470] Oops: 0000 [#1] PREEMPT SMP NOPTI
[   88.123480] CPU: 0 PID: 733 Comm: insmod Tainted: G           OE      6.1.0-28-amd64 #1
""", "kernel-oops-bug"),
    "panic-after-login": ("""\
web01 login: root
Password:
root@web01:~# echo c > /proc/sysrq-trigger
[  120.000000] sysrq: Trigger a crash
[  120.000100] Kernel panic - not syncing: sysrq triggered crash
[  120.000200] CPU: 0 PID: 801 Comm: bash Not tainted 6.1.0-28-amd64 #1
""", "kernel-panic-other"),
    "oom-after-login": ("""\
web01 login:
[  300.100000] java invoked oom-killer: gfp_mask=0x140cca(GFP_HIGHUSER_MOVABLE|__GFP_COMP), order=0, oom_score_adj=0
[  300.200000] Out of memory: Killed process 1234 (java) total-vm:4194304kB, anon-rss:3145728kB, file-rss:0kB, shmem-rss:0kB, UID:1000 pgtables:6400kB oom_score_adj:0
""", "oom-killer"),
}


@pytest.fixture(scope="module")
def analyzer():
    return Analyzer.load()


def _verdict(analyzer, text: str):
    d = analyzer.analyse(evidence_from_bytes(text.encode(), name="t", origin="t"))
    return d.verdict


@pytest.mark.parametrize("name", sorted(HEALTHY))
def test_healthy_with_harmless_noise_stays_healthy(analyzer, name):
    v = _verdict(analyzer, HEALTHY[name])
    assert (v.status, v.category) == ("healthy", "healthy"), (v.rule_id, v.summary)


@pytest.mark.parametrize("name", sorted(FAILED_AFTER_LOGIN))
def test_failure_after_login_decides(analyzer, name):
    text, category = FAILED_AFTER_LOGIN[name]
    v = _verdict(analyzer, text)
    assert v.category == category, (v.rule_id, v.summary)
    assert v.status != "healthy"
