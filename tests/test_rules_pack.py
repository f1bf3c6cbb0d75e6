"""The shipped rule pack: coverage of the taxonomy, examples on every rule, engine agreement."""

from collections import Counter

import pytest

from diagnose.rules import CATEGORIES, load_pack
from diagnose.ruletest import run_examples


@pytest.fixture(scope="module")
def pack():
    return load_pack()


def test_every_category_but_unknown_has_a_rule(pack):
    have = {r.category for r in pack.rules}
    missing = [c for c in CATEGORIES if c != "unknown" and c not in have]
    assert not missing


def test_rule_counts(pack):
    per_os = Counter(r.os for r in pack.rules)
    assert per_os["linux"] >= 50
    assert per_os["windows"] >= 30
    assert len(pack.rules) >= 80


def test_every_rule_has_matches_and_near_misses(pack):
    lacking = [r.id for r in pack.rules if not r.examples_match or not r.examples_no_match]
    assert not lacking


def test_every_rule_has_remediation_and_stage(pack):
    for r in pack.rules:
        assert r.remediation and all(step.strip() for step in r.remediation), r.id


@pytest.mark.parametrize("engine", ["hyperscan", "python"])
def test_examples_pass_on_both_engines(pack, engine):
    failures, checked = run_examples(pack, engine)
    assert checked > 500
    assert not failures, failures[:10]


def test_bugcheck_table_maps_names_and_codes(pack):
    assert len(pack.bugchecks) >= 40
    bc = pack.bugcheck(code="0x0000007B")
    assert bc is not None and bc.name == "INACCESSIBLE_BOOT_DEVICE"
    assert pack.bugcheck(name="CRITICAL_PROCESS_DIED").code == "0x000000EF"
    codes = [b.code for b in pack.bugchecks]
    names = [b.name for b in pack.bugchecks]
    assert len(set(codes)) == len(codes) and len(set(names)) == len(names)


def test_stop_code_normalisation_and_ocr_misreads(pack):
    from diagnose.match import normalise_fields

    assert normalise_fields({"stop_code": "0x7b"}, pack)["stop_name"] == \
        "INACCESSIBLE_BOOT_DEVICE"
    got = normalise_fields({"stop_name": "INACCESSIBLE BOOT _DEVILE"}, pack)
    assert got["stop_name"] == "INACCESSIBLE_BOOT_DEVICE" and got["stop_code"] == "0x0000007B"
    # short or ambiguous names are not guessed
    assert "stop_code" not in normalise_fields({"stop_name": "BAD_THING"}, pack)
