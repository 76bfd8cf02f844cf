"""What the attack corpus checks after an attack: one pair of functions per ``check.op``.

Each check runs twice, through the library and through the ``clinval`` command line,
and returns an *outcome*: ``{"ok": True}`` or ``{"code": CODE, "seq": N}`` (plus what
the check measures, e.g. ``attempts_recorded``). The two must agree with the case's
``expect``. A check that changes the subject (``mutates``) gets a fresh copy per mode.

Codes are the ledger's (:class:`clinval.ledger.ErrorCode`), the gate's
(:class:`clinval.review.GateCode`), ``LOCKED_OUT`` (:mod:`clinval.signing`), and two names
for refusals that have no code of their own: ``NO_LEDGER`` (a reader refused a missing
ledger and created nothing) and ``FORGED_LINE`` (text from an entry reached the terminal
with a control character in it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

from clinval.ledger import ERROR_CODES, LedgerError, verify
from clinval.review import GateCode, GateRefused
from clinval.signing import LOCKED_OUT, SigningError

REPO_ROOT = Path(__file__).resolve().parents[2]
EXTRA_CODES = (LOCKED_OUT, "NO_LEDGER", "FORGED_LINE", "INTERNAL")
_CODE = re.compile(r"\b(" + "|".join([*map(str, ERROR_CODES), *map(str, GateCode), *EXTRA_CODES]) + r")\b(?: at seq (\d+))?")


def outcome_of_text(text: str) -> dict[str, Any]:
    """The first code (and its seq) named in a command's output."""
    if "internal error" in text:
        return {"code": "INTERNAL", "text": text}
    match = _CODE.search(text)
    if match is None:
        return {"code": None, "text": text}
    return {"code": match.group(1), "seq": int(match.group(2)) if match.group(2) else None}


def _from_error(exc: Exception) -> dict[str, Any]:
    return {"code": str(getattr(exc, "code", None)), "seq": getattr(exc, "seq", None)}


def _verification(result) -> dict[str, Any]:
    return {"ok": True} if result.ok else {"code": str(result.code), "seq": result.seq}


@dataclass(frozen=True)
class Check:
    library: Callable[..., dict[str, Any]]
    cli: Callable[..., dict[str, Any]]
    mutates: bool = False


CHECKS: dict[str, Check] = {}


def check(op: str, *, mutates: bool = False) -> Callable[[type], type]:
    def register(cls: type) -> type:
        CHECKS[op] = Check(library=cls.library, cli=cls.cli, mutates=mutates)
        return cls

    return register


def _ledger_args(s) -> list[str]:
    return ["--ledger", str(s.path), "--checkpoints", str(s.path.parent / "checkpoints"),
            "--keys-dir", str(s.path.parent / "keys")]


def _cli(s, *args: str, user: str | None = None):
    """Run clinval in a gate workbench, or (standard ledger) with explicit paths."""
    if hasattr(s, "cli"):
        return s.cli(*args, user=user)
    from click.testing import CliRunner

    from clinval.cli import main

    return CliRunner().invoke(main, list(args))


# -- verify ----------------------------------------------------------------------------
@check("verify")
class Verify:
    @staticmethod
    def library(s, case, **_):
        return _verification(verify(s.path, checkpoint=s.kept_checkpoint, trust=s.kept_trust, deep=case["deep"],
                                    root=s.root, keys_dir=s.path.parent / "keys"))

    @staticmethod
    def cli(s, case, **_):
        args = ["audit", "verify", "--root", str(s.root), *_ledger_args(s)]
        args[args.index("--checkpoints") + 1] = str(s.root / "no-local-checkpoints")
        if s.kept_checkpoint is not None:
            args += ["--checkpoint", str(s.kept_checkpoint)]
        if s.kept_trust is not None:
            args += ["--trust", str(s.kept_trust)]
        if case["deep"]:
            args.append("--deep")
        result = _cli(s, *args)
        found = outcome_of_text(result.output)
        return {"ok": True} if result.exit_code == 0 and found["code"] is None else found


# -- audit show: the trail, the sign-off page ---------------------------------------------
def _has_control(text: str) -> bool:
    return any(not ch.isprintable() for ch in text)


@check("show")
class Show:
    """The trail as text: the verdict comes first, and no entry forges a line."""

    @staticmethod
    def library(s, case, **_):
        from clinval.ledger import Ledger
        from clinval.signoff import summarize

        if not s.path.exists():
            ledger = Ledger(path=s.path)
            ledger.registered_keys(), list(ledger.entries()), len(ledger)
            created = [p.name for p in s.path.parent.glob("*")] if s.path.parent.exists() else []
            return {"code": "NO_LEDGER"} if not created else {"code": None, "created": created}
        result = verify(s.path, checkpoint=s.path.parent / "checkpoints" / "latest.json")
        if not result.ok:
            return _verification(result)
        lines = [summarize(e) for e in Ledger(path=s.path).entries()]
        return {"code": "FORGED_LINE"} if any(_has_control(line) for line in lines) else {"ok": True}

    @staticmethod
    def cli(s, case, **_):
        existed = s.path.parent.exists()
        result = _cli(s, "audit", "show", *_ledger_args(s))
        if not s.path.exists():
            created = existed or s.path.parent.exists()
            refused = result.exit_code == 2 and "no ledger at" in result.output
            return {"code": "NO_LEDGER"} if refused and not created else {"code": None, "exit": result.exit_code}
        if result.exit_code != 0:
            return outcome_of_text(result.output)
        # One line per entry, in seq order, after the verdict: a reason cannot add a line or erase one.
        body = [line for line in result.output.splitlines() if not line.startswith("ledger: ")]
        entries = len(s.path.read_bytes().split(b"\n")) - 1
        in_order = all(re.match(rf"\s*{seq}  \d{{4}}-", line) for seq, line in enumerate(body))
        forged = len(body) != entries or not in_order or _has_control(result.output.replace("\n", ""))
        return {"code": "FORGED_LINE"} if forged else {"ok": True}


@check("show_html")
class ShowHtml:
    """The sign-off page states the same verdict as `audit verify` with the local checkpoint."""

    @staticmethod
    def library(s, case, **_):
        from clinval.ledger import Ledger
        from clinval.signoff import signoff_page

        result = verify(s.path, checkpoint=s.path.parent / "checkpoints" / "latest.json")
        ledger = Ledger(path=s.path)
        page = signoff_page(list(ledger.entries()), keys=ledger.registered_keys(), verification=result)
        return outcome_of_text(page.split("Ledger verification:", 1)[1]) if not result.ok else {"ok": "OK:" in page}

    @staticmethod
    def cli(s, case, **_):
        out = s.root / "signoff.html"
        result = _cli(s, "audit", "show", "--html", str(out), *_ledger_args(s))
        page = out.read_text() if out.exists() else ""
        if result.exit_code == 0:
            return {"ok": True} if '<span class="ok">OK:' in page else {"code": None, "page": page[:200]}
        return outcome_of_text(page.split("Ledger verification:", 1)[1] if page else result.output)


# -- clinval sign ---------------------------------------------------------------------------
def _target(s, target: Any) -> str:
    return str(s.alert_seq(target)) if isinstance(target, str) and hasattr(s, "alert_seq") else str(target)


def _attempts_since(s, size: int) -> int:
    """Attempts recorded by access_failure entries appended after the first ``size`` entries."""
    return sum(len(e["body"]["attempts"]) for e in s.entries()[size:] if e["kind"] == "access_failure")


@check("sign", mutates=True)
class Sign:
    """An e-signature as the user asks for it: unlock (attempts recorded first), then sign."""

    @staticmethod
    def library(s, case, *, user, target, meaning="approved", passphrase=None):
        from clinval.signing import digest_of_target, esign, load_signer, record_access_failures

        from ledger_harness import PASSPHRASES

        ledger, size = s.ledger, len(s.entries())
        try:
            signer = load_signer(user, passphrase=passphrase or PASSPHRASES[user])
            record_access_failures(ledger, signer=signer)
            ref = _target(s, target)
            esign(ledger, signer=signer, target_ref=ref, target_digest=digest_of_target(ledger, ref), meaning=meaning,
                  reason="signed in the attack corpus")
        except (LedgerError, SigningError) as exc:
            return {**_from_error(exc), "attempts_recorded": _attempts_since(s, size)}
        return {"ok": True, "attempts_recorded": _attempts_since(s, size)}

    @staticmethod
    def cli(s, case, *, user, target, meaning="approved", passphrase=None):
        size = len(s.entries())
        result = s.cli("sign", "--meaning", meaning, "--target", _target(s, target), "--reason",
                       "signed in the attack corpus", user=user)
        found = {"ok": True} if result.exit_code == 0 else outcome_of_text(result.output)
        return {**found, "attempts_recorded": _attempts_since(s, size)}


@check("unlock_then_sign", mutates=True)
class UnlockThenSign:
    """The ledger administrator unlocks a user id, then the user signs."""

    @staticmethod
    def library(s, case, *, admin, user, target):
        from clinval.signing import load_signer, record_access_failures

        from ledger_harness import PASSPHRASES

        size = len(s.entries())
        record_access_failures(s.ledger, signer=load_signer(admin, passphrase=PASSPHRASES[admin]), user_id=user,
                               reason="identity confirmed in person")
        recorded = _attempts_since(s, size)
        return {**Sign.library(s, case, user=user, target=target), "attempts_recorded": recorded}

    @staticmethod
    def cli(s, case, *, admin, user, target):
        size = len(s.entries())
        unlocked = s.cli("keys", "unlock", user, "--reason", "identity confirmed in person", user=admin)
        if unlocked.exit_code != 0:
            return outcome_of_text(unlocked.output)
        recorded = _attempts_since(s, size)
        return {**Sign.cli(s, case, user=user, target=target), "attempts_recorded": recorded}


# -- keys --------------------------------------------------------------------------------------
@check("register", mutates=True)
class Register:
    @staticmethod
    def library(s, case, *, user, name):
        from clinval.ledger import register_key
        from clinval.signing import create_key

        try:
            register_key(s.ledger, signer=create_key(user_id=user, printed_name=name, passphrase="new user passphrase"))
        except LedgerError as exc:
            return _from_error(exc)
        return {"ok": True}

    @staticmethod
    def cli(s, case, *, user, name):
        result = s.cli("keys", "init", "--id", user, "--name", name, input="new user passphrase\nnew user passphrase\n")
        return {"ok": True} if result.exit_code == 0 else outcome_of_text(result.output)


# -- the review gate ---------------------------------------------------------------------------
@check("decide", mutates=True)
class Decide:
    """A decision on an alert; afterwards the cache must hold exactly the ledger's decisions."""

    @staticmethod
    def _cache_matches(s) -> bool:
        from clinval.review import decisions_in, read_approvals

        expected = {a.alert_id: a.lines for a in decisions_in(s.ledger.entries()).values()}
        return {a.alert_id: a.lines for a in read_approvals(s.approvals)} == expected

    @staticmethod
    def library(s, case, *, user, alert, decision="approved"):
        from clinval import review
        from clinval.signing import load_signer

        from ledger_harness import GATE_ALERTS, PASSPHRASES

        try:
            review.decide(ledger=s.ledger, signer=load_signer(user, passphrase=PASSPHRASES[user]),
                          alert=GATE_ALERTS[alert], decision=decision, reason="decided in the attack corpus",
                          approvals_dir=s.approvals)
        except (LedgerError, GateRefused) as exc:
            return _from_error(exc)
        return {"ok": True} if Decide._cache_matches(s) else {"code": "CACHE_STALE"}

    @staticmethod
    def cli(s, case, *, user, alert, decision="approved"):
        verb = {"approved": "approve", "rejected": "reject"}[decision]
        result = s.cli("review", verb, s.alert_id(alert), "--reason", "decided in the attack corpus", user=user)
        if result.exit_code != 0:
            return outcome_of_text(result.output)
        return {"ok": True} if Decide._cache_matches(s) else {"code": "CACHE_STALE"}


@check("alert_state")
class AlertState:
    """What `review list` shows for an alert: decided in the ledger, or open."""

    @staticmethod
    def library(s, case, *, alert):
        from clinval.review import decisions_in, trusted_entries

        decided = decisions_in(trusted_entries(s.ledger)[0]).get(s.alert_id(alert))
        return {"state": decided.decision if decided else "open"}

    @staticmethod
    def cli(s, case, *, alert):
        result = s.cli("review", "list", "--all")
        line = next(line for line in result.output.splitlines() if line.startswith(s.alert_id(alert)))
        return {"state": line.split("[", 1)[1].split()[0].rstrip("]")}


@check("approval_file")
class ApprovalFile:
    """The revalidate stage's offline check of one approval cache file."""

    @staticmethod
    def library(s, case, *, alert):
        from clinval.review import check_approval, read_approvals

        [approval] = [a for a in read_approvals(s.approvals) if a.alert_id == s.alert_id(alert)]
        problem = check_approval(approval)
        return {"ok": True} if problem is None else {"code": str(problem.code)}

    @staticmethod
    def cli(s, case, *, alert):
        result = s.cli("review", "check")
        line = next((line for line in result.output.splitlines() if line.startswith(s.alert_id(alert) + ":")), "")
        return {"ok": True} if line.endswith(": ok") else {"code": outcome_of_text(line or result.output)["code"]}


@check("promote", mutates=True)
class Promote:
    @staticmethod
    def library(s, case, *, user, candidate):
        from clinval._io import sha256_file
        from clinval.gate import GateLedger
        from clinval.pccp import plan_from_params
        from clinval.review import trusted_entries

        plan_file = s.root / "params" / "pccp.yaml"
        entries, verification = trusted_entries(s.ledger)
        if not verification.ok:
            return _verification(verification)
        problem = GateLedger(entries).promotion_problem(
            candidate_id=candidate, promoter=user, plan=plan_from_params(yaml.safe_load(plan_file.read_text())),
            plan_sha256=sha256_file(plan_file))
        return {"ok": True} if problem is None else {"code": str(problem.code)}

    @staticmethod
    def cli(s, case, *, user, candidate):
        result = s.cli("model", "promote", candidate, "--reason", "promoted in the attack corpus", user=user)
        return {"ok": True} if result.exit_code == 0 else outcome_of_text(result.output)


@check("pccp")
class Pccp:
    """The PCCP report is written and names the ledger's first problem at its top."""

    @staticmethod
    def library(s, case, **_):
        from clinval.ledger import Ledger
        from clinval.pccp import plan_from_params
        from clinval.report import write_pccp_report

        plan = plan_from_params(yaml.safe_load((REPO_ROOT / "params" / "pccp.yaml").read_text()))
        written = write_pccp_report(plan=plan, ledger=Ledger(path=s.path, checkpoint_dir=s.path.parent / "checkpoints"),
                                    reports_dir=s.root / "reports", out=s.root / "pccp.html")
        return _verification(written.verification)

    @staticmethod
    def cli(s, case, **_):
        result = _cli(s, "report", "pccp", "--reports", str(s.root / "reports"), "--plan",
                      str(REPO_ROOT / "params" / "pccp.yaml"), "--out", str(s.root / "pccp.html"), *_ledger_args(s))
        return {"ok": True} if result.exit_code == 0 else outcome_of_text(result.output)


def matches(outcome: dict[str, Any], expect: dict[str, Any]) -> bool:
    """Whether an outcome is what the case expects (every member it names)."""
    if expect.get("ok") and outcome.get("code") is not None:
        return False
    return all(outcome.get(name) == value for name, value in expect.items() if name != "ok") and (
        not expect.get("ok") or outcome.get("ok") is True)


__all__ = ["CHECKS", "matches", "outcome_of_text"]
