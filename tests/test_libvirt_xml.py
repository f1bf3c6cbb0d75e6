"""serial_log_paths() on real `virsh dumpxml` output (tests/fixtures/libvirt/README.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from diagnose.fetchers.libvirt import serial_log_paths

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "libvirt"


@pytest.mark.parametrize("name, expected", [
    ("serial-file.xml", ["/var/log/libvirt/qemu/serial-file.log"]),
    ("pty-log.xml", ["/var/log/libvirt/qemu/pty-log-serial0.log"]),
    ("multi-port.xml", ["/srv/vm/multi-port-ttyS0.log", "/srv/vm/multi-port-ttyS1.log",
                        "/srv/vm/multi-port-ttyS2.log", "/srv/vm/multi-port-hvc0.log"]),
    ("no-log.xml", []),
    ("running-file-and-pty-log.xml", ["/tmp/vmx/lv/serial0.log", "/tmp/vmx/lv/serial1.log"]),
])
def test_serial_log_paths_from_virsh_dumpxml(name, expected):
    assert serial_log_paths((FIXTURES / name).read_text()) == expected


def test_console_only_and_log_on_unix_socket():
    xml = """<domain type='kvm'><name>c</name><devices>
      <console type='pty'><log file='/l/hvc0.log'/><target type='virtio' port='0'/></console>
      <serial type='tcp'><source mode='bind' host='127.0.0.1' service='4555'/>
        <log file='/l/tcp.log' append='on'/><target port='0'/></serial>
    </devices></domain>"""
    assert serial_log_paths(xml) == ["/l/tcp.log", "/l/hvc0.log"]


@pytest.mark.parametrize("xml, message", [
    ("<domain><devices>", "does not parse"),
    ("<network><name>default</name></network>", "<domain>"),
    ('<!DOCTYPE d [<!ENTITY x "y">]><domain/>', "DTD"),
])
def test_bad_xml_is_refused(xml, message):
    with pytest.raises(ValueError, match=message):
        serial_log_paths(xml)


def test_domain_without_devices():
    assert serial_log_paths("<domain type='kvm'><name>x</name></domain>") == []
