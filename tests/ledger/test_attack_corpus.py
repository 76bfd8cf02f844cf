"""The attack corpus: every cases/*.json is one attack and the verdict it must get.

In the style of the Certificate Transparency test vectors: each case names an
``attack`` (an operation in ``_ledger_attacks.py`` applied to the standard ledger of
``conftest.py``), whether the verifier kept the checkpoint taken just before the
attack (``true``) or the one taken after seq 5 (``"early"``),
whether verification is ``deep``, and the expected outcome (``ok``, or a ``code`` and
the first bad ``seq``). The CLI must agree with the library on every case.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from _ledger_attacks import ATTACKS
from click.testing import CliRunner
from conftest import build_standard_ledger, load_case

from clinval.cli.audit import EXIT_VERIFY_FAILED, audit
from clinval.ledger import ERROR_CODES, verify

CASES = sorted((Path(__file__).parent / "cases").glob("*.json"))


def test_corpus_covers_every_error_code():
    expected = {load_case(path)["expect"].get("code") for path in CASES}
    assert set(ERROR_CODES) <= expected


@pytest.mark.parametrize("case_path", CASES, ids=[path.stem for path in CASES])
def test_attack(case_path, tmp_path):
    case = load_case(case_path)
    assert case["desc"], "every case explains its attack"
    standard = build_standard_ledger(tmp_path / "repo")
    assert verify(standard.path, checkpoint=standard.checkpoint, deep=True, root=standard.root).ok
    if case["checkpoint"] == "early":
        standard.kept_checkpoint = standard.root / "early-checkpoint.json"
    elif case["checkpoint"]:
        standard.kept_checkpoint = Path(shutil.copy(standard.checkpoint, tmp_path / "kept.json"))
    attack = dict(case["attack"])
    ATTACKS[attack.pop("op")](standard, **attack)

    result = verify(
        standard.path,
        checkpoint=standard.kept_checkpoint,
        deep=case["deep"],
        root=standard.root,
    )

    expect = case["expect"]
    if expect.get("ok"):
        assert result.ok, str(result)
    else:
        assert (result.ok, result.code, result.seq) == (False, expect["code"], expect["seq"]), str(
            result
        )
    args = ["verify", "--ledger", str(standard.path), "--root", str(standard.root)]
    args += ["--checkpoints", str(tmp_path / "no-local-checkpoints")]
    if standard.kept_checkpoint is not None:
        args += ["--checkpoint", str(standard.kept_checkpoint)]
    if case["deep"]:
        args.append("--deep")
    cli = CliRunner().invoke(audit, args)
    assert cli.exit_code == (0 if result.ok else EXIT_VERIFY_FAILED), cli.output
    assert str(result) in cli.output
