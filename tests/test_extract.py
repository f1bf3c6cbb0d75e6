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
