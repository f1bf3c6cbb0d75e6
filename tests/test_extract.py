"""Console extraction: tolerant decoding, cleaning, boot splitting, stages.

Byte strings are built in code around real kernel/systemd lines (as printed by the lab's VMs).
"""

from diagnose.extract import console as cx
from diagnose.pipeline import Analyzer

PANIC = (b"[    2.178372] Kernel panic - not syncing: VFS: Unable to mount root fs on "
         b"unknown-block(0,0)")


def test_decode_nul_and_invalid_utf8():
    text, notes = cx.decode(b"\x00\x00abc\xff\xfe def\x00")
    assert text == "abc\ufffd\ufffd def"
    assert any("NUL" in n for n in notes)
    assert any("UTF-8" in n for n in notes)


def test_decode_bom():
    assert cx.decode(b"\xef\xbb\xbfLinux")[0] == "Linux"


def test_clean_ansi_and_lost_escape_debris():
    raw = "\x1b[0;32m  OK  \x1b[0m] Reached target \x1b[0;1;39mBasic System\x1b[0m."
    assert cx.clean_line("[" + raw) == "[  OK  ] Reached target Basic System."
    # the ESC bytes were lost on the way: the rest of the sequence is still there
    assert cx.clean_line("[[0;32m  OK  [0m] Started Journal Service.") == \
        "[  OK  ] Started Journal Service."
    assert cx.clean_line("[K[[0;1;31mFAILED[0m] Failed to start ssh.service.") == \
        "[FAILED] Failed to start ssh.service."
    # OSC title sequences and charset switches vanish
    assert cx.clean_line("\x1b]0;title\x07\x1b(Bdebian login: ") == "debian login:"


def test_colour_code_cut_by_systemd_ellipsis():
    # systemd shortens long unit names with "…", sometimes in the middle of a colour code
    assert cx.clean_line("[ TIME ] Timed out waiting for device [0;1;\u20265e3b0-41d1.device.") \
        == "[ TIME ] Timed out waiting for device \u20265e3b0-41d1.device."


def test_clean_keeps_kernel_timestamps_and_brackets():
    line = "[    0.000000] Linux version 6.1.0-28-amd64 [x86_64] (gcc-12)"
    assert cx.clean_line(line) == line


def test_carriage_return_overprint_and_backspace():
    # e2fsck -C 0 progress: each update rewrites the line
    assert cx.clean_line("/dev/vda: |====    | 40%\r/dev/vda: |======  | 60%") == \
        "/dev/vda: |======  | 60%"
    assert cx.clean_line("logn\bin: ") == "login:"
    assert cx.clean_line("abcdef\rXY") == "XYcdef"


def test_clean_maps_original_line_numbers():
    lines = cx.clean("first\r\n\r\n\x00\nsecond\n\n" + PANIC.decode() + "\n")
    assert [(ln.number, ln.text[:6]) for ln in lines] == [(1, "first"), (4, "second"),
                                                          (6, "[    2")]


def test_controls_removed_and_long_lines_cut():
    assert cx.clean_line("a\x07b\x7fc\x85d") == "abcd"
    assert len(cx.clean_line("x" * 100000)) == cx.MAX_LINE


def _boots(data: bytes):
    analyzer = Analyzer.load()
    log, _ = analyzer.console(data)
    return log


def test_split_boots_bios_then_kernel_stays_one_boot():
    data = (b"SeaBIOS (version 1.16.2-debian-1.16.2-1)\n"
            b"Booting from ROM...\n"
            b"[    0.000000] Linux version 6.1.0-28-amd64 (debian-kernel@lists.debian.org)\n"
            b"[    0.000000] Command line: console=ttyS0 panic=1\n" + PANIC + b"\n")
    log = _boots(data)
    assert len(log.boots) == 1
    assert [s.name for s in log.boots[0].stages] == ["firmware", "kernel"]


def test_split_boots_second_bios_banner_starts_new_boot():
    one = (b"SeaBIOS (version 1.16.2-debian-1.16.2-1)\n"
           b"[    0.000000] Linux version 6.1.0-28-amd64 (debian-kernel@lists.debian.org)\n"
           b"[    0.000000] Command line: console=ttyS0\n")
    log = _boots(one + PANIC + b"\n" + one + b"debian login: \n")
    assert len(log.boots) == 2
    assert log.boots[1].first_line == 5
    assert log.boots[0].last_line == 4


def test_split_boots_kernel_banner_without_firmware():
    k = b"[    0.000000] Linux version 6.1.0-28-cloud-amd64 (debian-kernel@lists.debian.org)\n"
    log = _boots(k + PANIC + b"\n" + k + b"[    1.000000] Run /init as init process\n")
    assert len(log.boots) == 2


def test_journal_reboot_marker_splits():
    log = _boots(b"Nov 25 10:00:00 host kernel: Linux version 6.1.0 (x@y) #1\n"
                 b"-- Reboot --\n"
                 b"Nov 25 10:05:00 host kernel: Linux version 6.1.0 (x@y) #1\n")
    assert len(log.boots) == 2


def test_stage_times_from_kernel_timestamps():
    log = _boots(b"[    0.000000] Linux version 6.1.0-28-amd64 (debian-kernel@lists.debian.org)\n"
                 b"[    0.654321] Trying to unpack rootfs image as initramfs...\n"
                 b"[    3.100000] Run /init as init process\n")
    stages = {s.name: s for s in log.boots[0].stages}
    assert stages["kernel"].time == 0.0
    assert stages["initramfs"].time == 0.654321
    assert stages["initramfs"].line == 2


def test_empty_and_whitespace_only():
    log = _boots(b"")
    assert len(log.boots) == 1 and not log.boots[0].lines
    log = _boots(b"\x00\x00\n\r\n   \n")
    assert not log.boots[-1].lines


def test_kernel_clock_restart_splits_without_banner():
    # an excerpt whose second boot's banner was cut: the clock going back to zero is the boundary
    log = _boots(b"[   35.120000] EXT4-fs (vda1): mounted filesystem\n" + PANIC + b"\n"
                 b"[    0.412000] pci 0000:00:02.0: vgaarb: setting as boot VGA device\n"
                 b"[    2.000000] Run /init as init process\n"
                 b"web01 login: \n")
    assert len(log.boots) == 2
    assert log.boots[1].lines[0].text.startswith("[    0.412000]")


def test_clock_jitter_does_not_split():
    # interleaved writers print timestamps slightly out of order
    log = _boots(b"[    0.500000] a\n[    7.413409] b\n[    7.401967] c\n[    7.5] d\n")
    assert len(log.boots) == 1
    # under 5 s the clock has not run long enough for a drop to mean a new kernel
    log = _boots(b"[    0.500000] a\n[    3.000000] b\n[    0.900000] c\n")
    assert len(log.boots) == 1


def test_reboot_line_closes_the_boot_for_the_next_start_marker():
    # after "reboot: Restarting system" a GRUB line (rank 1, lower than the kernel banner seen
    # already) opens the next boot even though the firmware banner was cut
    log = _boots(b"[    0.000000] Linux version 6.1.0 (x@y) #1\n"
                 b"[   20.000000] reboot: Restarting system\n"
                 b"Booting `Debian GNU/Linux'\n"
                 b"Loading Linux 6.1.0-28-amd64 ...\n"
                 b"[    0.000000] Linux version 6.1.0 (x@y) #1\n")
    assert len(log.boots) == 2
    assert log.boots[1].lines[0].text.startswith("Booting `Debian")


def test_reboot_line_alone_keeps_one_boot():
    # a clean reboot at the very end: the trailing lines still belong to that boot
    log = _boots(b"web01 login: root\nroot@web01:~# reboot\n"
                 b"[  279.672713] reboot: Restarting system\n"
                 b"[  279.675205] reboot: machine restart\n")
    assert len(log.boots) == 1


def test_syslog_restart_is_a_boot_start():
    log = _boots(b"Mar  1 10:00:00 web01 kernel: Out of memory: Killed process 812 (java)\n"
                 b"Mar  1 10:05:00 web01 syslogd 1.5.1: restart.\n"
                 b"Mar  1 10:05:00 web01 kernel: klogd 1.5.1, log source = /proc/kmsg started.\n"
                 b"Mar  1 10:05:00 web01 kernel: Linux version 2.6.32-754.el6.x86_64 (x@y) #1\n")
    assert len(log.boots) == 2
    assert "syslogd" in log.boots[1].lines[0].text


def test_publisher_decorations_are_removed():
    lines = cx.clean("    > > [    2.1] Kernel panic - not syncing: x\n"
                     "[COLOR=#000000]Gave up waiting for root device.[/COLOR]\n"
                     "# 2024-01-01 10:00:00,123 - util.py[WARNING]: x\n"
                     "# ls /\n"
                     "localhost login: [   17.238624] cloud-init[787]: Cloud-init v. 0.7.5\n")
    texts = [ln.text for ln in lines]
    assert texts == ["[    2.1] Kernel panic - not syncing: x",
                     "Gave up waiting for root device.",
                     "2024-01-01 10:00:00,123 - util.py[WARNING]: x",
                     "# ls /",
                     "localhost login:",
                     "[   17.238624] cloud-init[787]: Cloud-init v. 0.7.5"]
    assert [ln.number for ln in lines] == [1, 2, 3, 4, 5, 5]


def test_grub_lines_of_one_boot_stay_together():
    log = _boots(b"GNU GRUB  version 2.06\n"
                 b"GNU GRUB  version 2.06\n"  # the menu redrawn on a serial terminal
                 b"Booting `Debian GNU/Linux'\n"
                 b"Loading Linux 6.1.0-28-amd64 ...\n"
                 b"Loading initial ramdisk ...\n"
                 b"[    0.000000] Linux version 6.1.0-28-amd64 (debian-kernel@lists.debian.org)\n"
                 b"[    0.000000] Command line: BOOT_IMAGE=/boot/vmlinuz root=/dev/vda1\n")
    assert len(log.boots) == 1


def test_firmware_banner_after_a_cut_boot_starts_a_new_one():
    # the excerpt starts inside a boot (no banner): its kernel lines still count as progress
    log = _boots(PANIC + b"\nSeaBIOS (version 1.16.2-debian-1.16.2-1)\nBooting from Hard Disk...\n")
    assert len(log.boots) == 2


def test_arm64_banner_order_is_one_boot():
    log = _boots(b"[    0.000000] Booting Linux on physical CPU 0x0000000000 [0x410fd083]\n"
                 b"[    0.000000] Linux version 6.6.0 (builder@host) (gcc 12.2.0) #1 SMP\n"
                 b"[    0.000000] Machine model: linux,dummy-virt\n")
    assert len(log.boots) == 1


def test_syslog_prefix_before_a_kernel_timestamp_is_not_split():
    line = "Aug 28 18:15:30 instance-1 kernel: [28599.037759] EXT4-fs (sdb): Remounting"
    assert [ln.text for ln in cx.clean(line)] == [line]
