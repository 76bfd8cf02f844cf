"""The review gate's trust rules, decided from the verified audit ledger alone.

Every fact ``clinval model promote`` and the PCCP report decide on is read here from
signed ledger entries, never from a file anyone can edit:

* which alert a decision is for, the decision and who made it: the first ``approved`` or
  ``rejected`` e-signature on the alert's entry (:func:`clinval.review.decisions_in`);
* which candidate was built from which approvals, under which plan, with which criteria
  results and verdict: the candidate's latest ``retrain`` entry, which the pipeline's
  machine identity recorded from a run whose outputs matched ``dvc.lock``;
* the plan file and the model file: only after they hash to the digests those entries hold.

:class:`GateLedger` holds the entries up to the ledger's first problem
(:func:`clinval.review.trusted_entries`). :meth:`GateLedger.promotion_problem` is the one
definition of the two-person rule, used by ``clinval model promote`` before it signs and by
the PCCP report to judge a promotion already in the ledger (as of the entries before it).
That the machine identity never signs a decision or a promotion is a rule of the ledger
itself (:data:`clinval.ledger.PERSON_KINDS`), enforced on every append and by ``verify``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from clinval.review import Approval, GateCode, Refusal, decisions_in

if TYPE_CHECKING:
    from clinval.ledger import Entry
    from clinval.pccp import ChangeControlPlan

__all__ = ["Approver", "GateLedger", "criteria_failed"]

AUTOMATIC = "automatic (per plan)"

MSG_NOT_RECORDED = "candidate {cid} has no retrain entry in the verified ledger; run `clinval audit record` first."
MSG_ALREADY = "candidate {cid} was already promoted (ledger seq {seq})."
MSG_CRITERIA = ("the ledger's retrain entry (seq {seq}) says candidate {cid} does not meet the acceptance criteria "
                "and cannot be promoted: {failed}")
MSG_PLAN = ("candidate {cid} was evaluated under the plan with sha256 {recorded} (retrain seq {seq}); the plan "
            "given has sha256 {given}. Re-run `dvc repro` and `clinval audit record` under this plan, or promote "
            "under the plan it was evaluated with.")
MSG_NO_APPROVAL = ("candidate {cid} has no signed approval of its retraining in the ledger (alerts {alerts}); "
                   "promotion needs an approved alert first.")
MSG_APPROVAL_MISSING = ("candidate {cid} names the approval of {alert} at seq {seq} (sha256 {sha}), which is not "
                        "that alert's decision in the verified ledger")
MSG_APPROVAL_REJECTED = "the decision on alert {alert} (seq {seq}) is {decision}, not approved"
MSG_WRONG_MODIFICATION = ("alert {alert} (trigger {trigger}) allows modification {allowed!r} under the plan, not "
                          "{modification!r}")
MSG_SAME_PERSON = ("{user} approved the retraining of {cid}; the change control process requires promotion to be "
                   "signed by a different person.")


def criteria_failed(criteria: Any) -> list[str]:
    """Names of the criteria a recorded verdict says failed; all of them if none are recorded."""
    if not isinstance(criteria, list) or not criteria:
        return ["no acceptance criterion was recorded"]
    return [str(c.get("criterion")) for c in criteria if not (isinstance(c, Mapping) and c.get("passed") is True)]


@dataclass(frozen=True)
class Approver:
    """A person whose signed approval a candidate's retraining rests on."""

    alert_id: str
    user_id: str
    printed_name: str
    key_id: str
    esig: Entry


class GateLedger:
    """The verified ledger entries the gate decides from.

    Parameters
    ----------
    entries : iterable of Entry
        Entries in order, each one verified (nothing after the first problem).
    """

    def __init__(self, entries: Iterable[Entry]) -> None:
        self.entries = list(entries)
        self._by_seq = {e.seq: e for e in self.entries}
        self.decisions: dict[str, Approval] = decisions_in(self.entries)

    def before(self, seq: int) -> GateLedger:
        """The ledger as it stood before entry ``seq`` was appended."""
        return GateLedger(e for e in self.entries if e.seq < seq)

    def latest(self, kind: str, **match: Any) -> Entry | None:
        found = [e for e in self.entries if e.kind == kind and all(e.body.get(k) == v for k, v in match.items())]
        return found[-1] if found else None

    def retrain(self, candidate_id: str) -> Entry | None:
        """The candidate's latest ``retrain`` entry: the facts promotion relies on."""
        return self.latest("retrain", candidate_id=candidate_id)

    def alert(self, alert_id: str) -> Entry | None:
        """The alert's latest ledger entry."""
        found = [e for e in self.entries if e.kind in ("drift_alert", "fairness_alert")
                 and e.body.get("alert_id") == alert_id]
        return found[-1] if found else None

    def approvers(self, retrain: Entry, *, plan: ChangeControlPlan | None = None
                  ) -> tuple[list[Approver], dict[str, Refusal]]:
        """Who approved the retraining a ``retrain`` entry names, checked against the ledger.

        Each approval the entry names (alert id, e-signature seq and digest) must be that
        alert's decision in the ledger, mean ``approved``, and (with ``plan``) be on an
        alert whose trigger allows the candidate's modification. Returns the approvers and,
        by alert id, a refusal for each approval that fails.
        """
        approvers: list[Approver] = []
        problems: dict[str, Refusal] = {}
        cid = retrain.body.get("candidate_id")
        for ref in retrain.body.get("approvals") or []:
            alert_id = ref.get("alert_id") if isinstance(ref, Mapping) else None
            decision = self.decisions.get(alert_id) if isinstance(alert_id, str) else None
            esig = self._by_seq.get(ref.get("seq")) if isinstance(ref, Mapping) else None
            if (decision is None or esig is None or esig.digest != ref.get("sha256")
                    or decision.esig.seq != esig.seq or alert_id not in (retrain.body.get("alert_ids") or [])):
                problems[str(alert_id)] = Refusal(GateCode.NOT_IN_LEDGER, MSG_APPROVAL_MISSING.format(
                    cid=cid, alert=alert_id, seq=ref.get("seq") if isinstance(ref, Mapping) else None,
                    sha=ref.get("sha256") if isinstance(ref, Mapping) else None))
                continue
            if not decision.approved:
                problems[alert_id] = Refusal(GateCode.NOT_APPROVED, MSG_APPROVAL_REJECTED.format(
                    alert=alert_id, seq=esig.seq, decision=decision.decision))
                continue
            alert = self._by_seq[esig.body["target"]["seq"]]
            trigger = plan.triggers.get(str(alert.body.get("trigger"))) if plan is not None else None
            if plan is not None and (trigger is None or trigger.modification != retrain.body.get("modification")):
                problems[alert_id] = Refusal(GateCode.NOT_APPROVED, MSG_WRONG_MODIFICATION.format(
                    alert=alert_id, trigger=alert.body.get("trigger"),
                    allowed=None if trigger is None else trigger.modification,
                    modification=retrain.body.get("modification")))
                continue
            approvers.append(Approver(alert_id=alert_id, user_id=esig.actor, printed_name=esig.body["printed_name"],
                                      key_id=esig.key, esig=esig))
        return approvers, problems

    def promotion_problem(
        self,
        *,
        candidate_id: str,
        promoter: str | None,
        plan: ChangeControlPlan | None,
        plan_sha256: str | None,
    ) -> Refusal | None:
        """Why ``promoter`` may not promote ``candidate_id`` now, or None if they may.

        Parameters
        ----------
        candidate_id : str
        promoter : str or None
            The promoting user id; None checks everything but the two-person rule.
        plan : ChangeControlPlan or None
            The plan, trusted only if ``plan_sha256`` (its file's digest) is the one the
            candidate was evaluated under: it says which trigger allows which
            modification and which modifications need no person's approval.
        plan_sha256 : str or None
            None skips the plan check (and ``plan`` is then not used).
        """
        retrain = self.retrain(candidate_id)
        if retrain is None:
            return Refusal(GateCode.NOT_RECORDED, MSG_NOT_RECORDED.format(cid=candidate_id))
        done = self.latest("model_version", candidate_id=candidate_id)
        if done is not None:
            return Refusal(GateCode.ALREADY_PROMOTED, MSG_ALREADY.format(cid=candidate_id, seq=done.seq))
        failed = criteria_failed(retrain.body.get("criteria"))
        if failed:
            return Refusal(GateCode.CRITERIA_FAILED,
                           MSG_CRITERIA.format(seq=retrain.seq, cid=candidate_id, failed=", ".join(failed)))
        if plan_sha256 is not None and retrain.body.get("plan_sha256") != plan_sha256:
            return Refusal(GateCode.PLAN_CHANGED, MSG_PLAN.format(
                cid=candidate_id, recorded=retrain.body.get("plan_sha256"), seq=retrain.seq, given=plan_sha256))
        trusted_plan = plan if plan_sha256 is not None else None
        approvers, problems = self.approvers(retrain, plan=trusted_plan)
        if problems:
            return next(iter(problems.values()))
        modification = trusted_plan.modifications.get(str(retrain.body.get("modification"))) if trusted_plan else None
        automatic = modification is not None and modification.approval == "automatic"
        if not approvers and not automatic:
            alerts = ", ".join(map(str, retrain.body.get("alert_ids") or [])) or "none"
            return Refusal(GateCode.NOT_APPROVED, MSG_NO_APPROVAL.format(cid=candidate_id, alerts=alerts))
        if promoter is not None and promoter in {a.user_id for a in approvers}:
            return Refusal(GateCode.SAME_PERSON, MSG_SAME_PERSON.format(user=promoter, cid=candidate_id))
        return None

    def promotion_verdict(self, version: Entry, *, plan: ChangeControlPlan | None, plan_sha256: str | None
                          ) -> Refusal | None:
        """Judge a ``model_version`` already in the ledger by the rule in force when it was made.

        The promotion e-signature it names must be the promoter's approval of the
        candidate's retrain entry, and :meth:`promotion_problem` must pass on the ledger as
        it stood before that e-signature.
        """
        body = version.body
        cid, promoter = str(body.get("candidate_id")), version.actor
        esig = self._by_seq.get(body.get("promotion_esig_seq"))
        retrain = self._by_seq.get(body.get("retrain_seq"))
        if (esig is None or retrain is None or esig.kind != "esig" or esig.actor != promoter
                or esig.body.get("meaning") != "approved" or esig.body["target"].get("seq") != retrain.seq
                or retrain.kind != "retrain" or retrain.body.get("candidate_id") != cid):
            return Refusal(GateCode.NOT_IN_LEDGER, f"the promotion of {cid} at seq {version.seq} does not name its "
                                                   "own approving e-signature on the candidate's retrain entry")
        if plan_sha256 is not None and retrain.body.get("plan_sha256") != plan_sha256:
            plan, plan_sha256 = None, None  # judged under the plan the candidate was evaluated with
        return self.before(esig.seq).promotion_problem(candidate_id=cid, promoter=promoter, plan=plan,
                                                       plan_sha256=plan_sha256)


def approver_names(approvers: Sequence[Approver]) -> list[str]:
    """Sorted user ids of ``approvers``, or the automatic marker when there are none."""
    return sorted({a.user_id for a in approvers}) or [AUTOMATIC]
