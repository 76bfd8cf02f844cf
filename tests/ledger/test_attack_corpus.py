"""The attack corpus: every cases/*.json is one attack and the verdict it must get.

In the style of the Certificate Transparency test vectors: each case names an
``attack`` (one operation, or a list, from ``_ledger_attacks.py``) applied to a subject
(``fixture``: the standard ledger of ``ledger_harness.py``, or ``gate``, the review gate's
workbench), what the verifier kept from before the attack (``checkpoint``: ``true`` for
the checkpoint taken just before it, ``"early"`` for the one after seq 5; ``trust``:
``"pinned"`` for a trust root pinning the genesis key and the head, ``"witnessed"`` for
one whose head a witness cosigned), and the ``check`` that follows (one or a list, from
``_ledger_checks.py``; default ``verify``, with ``deep``), with the expected outcome:
``{"ok": true}`` or a ``code`` and the first bad ``seq``. Every check runs through the
library and through the ``clinval`` command line, and both must agree with ``expect``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from _ledger_attacks import ATTACKS
from _ledger_checks import CHECKS, matches
from ledger_harness import build_standard_ledger, copy_gate_workbench, load_case

from clinval.ledger import ERROR_CODES, PinnedHead, TrustRoot, cosign, verify, write_trust_root
from clinval.signing import Signer

CASES = sorted((Path(__file__).parent / "cases").glob("*.json"))


def test_corpus_covers_every_error_code():
    expected = {load_case(path)["expect"].get("code") for path in CASES}
    assert set(ERROR_CODES) <= expected


def test_every_case_reproduces_an_issue_or_documents_a_limit():
    for path in CASES:
        case = load_case(path)
        assert case["desc"], f"{path.name}: every case explains its attack"
        assert set(case) <= {"desc", "issue", "fixture", "attack", "checkpoint", "trust", "deep", "check", "expect"}
        checks = case.get("check", {"op": "verify"})
        for check in checks if isinstance(checks, list) else [checks]:
            assert check["op"] in CHECKS, f"{path.name}: unknown check {check['op']}"


def _subject(case: dict, where: Path, gate_template, monkeypatch):
    if case.get("fixture") == "gate":
        subject = copy_gate_workbench(gate_template, where)
        monkeypatch.setenv("CLINVAL_HOME", str(subject.home))
    else:
        subject = build_standard_ledger(where / "repo")
        assert verify(subject.path, checkpoint=subject.checkpoint, deep=True, root=subject.root).ok
    checkpoint = subject.path.parent / "checkpoints" / "latest.json"
    if case.get("checkpoint") == "early":
        subject.kept_checkpoint = subject.root / "early-checkpoint.json"
    elif case.get("checkpoint"):
        subject.kept_checkpoint = Path(shutil.copy(checkpoint, where / "kept.json"))
    if case.get("trust"):
        now = verify(subject.path)
        head = PinnedHead(size=now.size, head=now.head)
        root = TrustRoot(genesis_key=now.genesis_key, heads=(head,))
        if case["trust"] == "witnessed":
            qa = Signer.ephemeral(user_id="qa", printed_name="QA Witness")
            witness, cosignature = cosign(genesis_key=now.genesis_key, size=now.size, head=now.head, signer=qa)
            root = TrustRoot(genesis_key=now.genesis_key).with_cosigned_head(
                size=now.size, head=now.head, witness=witness, cosignature=cosignature)
        subject.kept_trust = write_trust_root(where / "trust.json", root)
    attacks = case["attack"] if isinstance(case["attack"], list) else [case["attack"]]
    for attack in attacks:
        attack = dict(attack)
        ATTACKS[attack.pop("op")](subject, **attack)
    return subject


@pytest.mark.parametrize("case_path", CASES, ids=[path.stem for path in CASES])
def test_attack(case_path, tmp_path, request, monkeypatch):
    case = load_case(case_path)
    case.setdefault("deep", False)
    template = request.getfixturevalue("gate_template") if case.get("fixture") == "gate" else None
    checks = case.get("check", {"op": "verify"})
    shared = None
    for mode in ("library", "cli"):
        for index, check in enumerate(checks if isinstance(checks, list) else [checks]):
            args = {name: value for name, value in check.items() if name != "op"}
            implementation = CHECKS[check["op"]]
            if implementation.mutates or shared is None:
                where = tmp_path / f"{mode}-{index}"
                where.mkdir()
                subject = _subject(case, where, template, monkeypatch)
                shared = None if implementation.mutates else subject
            else:
                subject = shared
            outcome = getattr(implementation, mode)(subject, case, **args)
            assert matches(outcome, case["expect"]), f"{mode} {check['op']}: {outcome} (expected {case['expect']})"
