"""``--json`` (``--format json``) of `clinval review list`, `audit show` and `keys list`: the same facts as the text, for machines."""

from __future__ import annotations

import json

from ledger_harness import GATE_ALERTS, PRINTED_NAMES


def _json(gate, *args):
    result = gate.cli(*args, "--format", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_review_list_json_holds_each_alert_and_its_decision(gate):
    every = {alert["id"]: alert for alert in _json(gate, "review", "list", "--all")}
    assert set(every) == {alert["id"] for alert in GATE_ALERTS.values()}
    a1 = every[gate.alert_id("A1")]
    assert a1["decision"]["decision"] == "approved" and a1["decision"]["signer"] == "alice"
    assert a1["decision"]["printed_name"] == PRINTED_NAMES["alice"] and a1["decision"]["seq"] > 0
    assert every[gate.alert_id("A3")]["decision"] is None
    open_ids = [alert["id"] for alert in _json(gate, "review", "list")]
    assert open_ids == [gate.alert_id("A3"), gate.alert_id("F1")]
    text = gate.cli("review", "list").output
    assert all(alert_id in text for alert_id in open_ids) and gate.alert_id("A1") not in text


def test_audit_show_json_holds_the_verdict_and_every_entry(gate):
    shown = _json(gate, "audit", "show")
    assert shown["verification"]["ok"] is True and shown["verification"]["size"] == len(gate.lines())
    assert [e["seq"] for e in shown["entries"]] == list(range(len(gate.lines())))
    assert [e["body"] for e in shown["entries"]] == [json.loads(line)["body"] for line in gate.lines()]
    assert all(e["verified"] for e in shown["entries"])
    esigs = _json(gate, "audit", "show", "--kind", "esig")["entries"]
    assert esigs and {e["kind"] for e in esigs} == {"esig"}


def test_audit_show_json_marks_entries_after_a_bad_one(gate):
    lines = gate.path.read_bytes().split(b"\n")
    edited = next(i for i, line in enumerate(lines) if b"Alice Reviewer" in line)
    lines[edited] = lines[edited].replace(b"Alice Reviewer", b"Alice Reviewed")
    gate.path.write_bytes(b"\n".join(lines))
    result = gate.cli("audit", "show", "--format", "json")
    assert result.exit_code == 1
    shown = json.loads(result.stdout)
    assert shown["verification"]["ok"] is False and shown["verification"]["code"]
    bad = shown["verification"]["seq"]
    assert bad == edited
    assert [e["verified"] for e in shown["entries"]] == [e["seq"] < bad for e in shown["entries"]]


def test_keys_list_json_names_every_key(gate):
    keys = _json(gate, "keys", "list")
    assert [k["user_id"] for k in keys] == ["pipeline", "alice", "bob", "carol"]
    assert keys[0]["genesis"] is True and keys[0]["role"] == "machine"
    assert all(k["revoked_seq"] is None and k["private_key_on_this_machine"] for k in keys)
    text = gate.cli("keys", "list").output
    assert all(k["key_id"] in text for k in keys)


def test_json_flag_is_format_json(gate):
    for args in (("review", "list", "--all"), ("audit", "show"), ("keys", "list")):
        flag = gate.cli(*args, "--json")
        assert flag.exit_code == 0 and json.loads(flag.stdout) == _json(gate, *args)
    clash = gate.cli("keys", "list", "--json", "--format", "text")
    assert clash.exit_code == 2 and "--json" in clash.output
