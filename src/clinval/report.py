"""Pages built from the evidence records and the audit ledger.

``reports/index.html`` (:func:`write_index`)
    Links every record (``reports/NN_name.html``) with the SHA-256 of its HTML and JSON
    files and the one-line status the notebook gave, counts the alerts (open or decided,
    from the signed approval files) and charts the monitored metrics per period. It is a
    DVC output: a pure function of the records and the approval files, the same bytes
    for the same inputs.

``reports/pccp_report.html`` (:func:`write_pccp_report`)
    The predetermined change control plan report, in the three parts of the FDA PCCP
    guidance: Description of Modifications, Modification Protocol (data management,
    re-training, performance evaluation, update procedures) and Impact Assessment; then a
    traceability table (modification -> protocol section -> criterion -> result ->
    evidence record digest -> signatures) and the sign-off page. It verifies the ledger
    first and says so at the top. It shows ledger times, so it is not a DVC output.

Both pages are self-contained (no script, style, font or image from the network) and
show aggregates only.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from clinval import __version__
from clinval._io import atomic_write_text, sha256_file
from clinval.evidence import html_table, interval_view
from clinval.vocabulary import REFERENCE

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from clinval.ledger import Entry, Ledger, RegisteredKey, VerifyResult
    from clinval.pccp import ChangeControlPlan
    from clinval.review import Approval

__all__ = [
    "MONITORED_METRICS",
    "AlertCounts",
    "PccpReport",
    "alert_counts",
    "collect_records",
    "monitored_performance",
    "performance_figure",
    "write_index",
    "write_pccp_report",
]

DRIFT_RECORD = "02_drift_analysis"
"""The record whose ``performance`` values the index charts."""
MONITORED_METRICS = ("AUROC", "O/E", "calibration slope")
"""The metrics the index charts per period, in panel order."""
REFERENCE_PERIOD = REFERENCE  # clinval.vocabulary
REVALIDATION_RECORD = "04_revalidation"
"""The record that applies the whole plan (data management, acceptance criteria)."""
PLAN_INPUT = "params/pccp.yaml"
"""How records name the change control plan among their inputs."""

MSG_NO_RECORDS = "{reports}: no evidence records (NN_name.json) to index; run the notebook stages first."
MSG_NO_PERFORMANCE = "No monitored performance yet: {record}.json is missing or has no `performance` values."
MSG_LEDGER_OK = "Audit ledger verified. {result}"
MSG_LEDGER_BAD = (
    "THE AUDIT LEDGER FAILED VERIFICATION: {code}{where}: {message}. What follows is rendered "
    "from the ledger as it stands; {untrusted}. Run `clinval audit verify` and resolve this "
    "before relying on any signature below."
)
MSG_UNREADABLE = "Ledger entries from seq {seq} on could not be read ({error}); they are left out."
MSG_NO_KEYS = "The signing keys could not be listed ({error})."
MSG_PLAN_DIFFERS = (
    "The plan given (sha256 {given}) is not the plan {record} applied (sha256 {used}): "
    "re-run the pipeline (`dvc repro`) or report on the plan that was applied."
)
MSG_APPROVAL_BAD = "Approval file for {alert}: {problem}."
NOT_VERIFIED = "NOT VERIFIED"
SIGNOFF_TITLE = "Sign-off page: electronic signatures"

_STYLE = """
body { font: 14px/1.5 -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: #222;
       max-width: 1100px; margin: 2em auto; padding: 0 1em; }
h1 { font-size: 22px; margin-bottom: .2em; } h2 { font-size: 18px; margin-top: 2em; border-bottom: 1px solid #ccc; }
h3 { font-size: 15px; margin-bottom: .3em; } p.lead { color: #444; margin-top: 0; }
table { border-collapse: collapse; width: 100%; margin: .6em 0 1.2em; font-size: 13px; }
th, td { border: 1px solid #d0d0d0; padding: 4px 8px; text-align: left; vertical-align: top; }
table.trace td { overflow-wrap: anywhere; }
th { background: #f3f3f3; } code { font-size: 11px; color: #444; word-break: break-all; }
table.clinval td { text-align: right; } table.clinval td.text { text-align: left; }
table.clinval caption { text-align: left; font-weight: 600; padding: 4px 0; }
.alert, .bad, .fail { color: #a40000; font-weight: 600; } .ok, .pass { color: #0a6b2d; font-weight: 600; }
.banner { border: 2px solid; padding: .6em 1em; margin: 1em 0; }
.banner.bad { border-color: #a40000; background: #fdecea; } .banner.ok { border-color: #0a6b2d; background: #edf7ed; }
img.dashboard { max-width: 100%; height: auto; } table.trace { table-layout: fixed; }
td.digest code { display: inline-block; max-width: 16em; }
.verdict { border: 1px solid #c9d3dd; border-left: 5px solid #0b57a4; background: #f5f8fb; padding: .5em 1em; margin: 1em 0; }
.verdict.attention { border-left-color: #b3261e; background: #fdf5f4; }
.verdict p { margin: .3em 0; }
@media (max-width: 600px) { body { margin: .5em auto; } table { display: block; overflow-x: auto; }
  p, li, h1, h2, h3 { overflow-wrap: anywhere; } }
footer { margin-top: 3em; color: #666; font-size: 12px; }
.signoff h1 { font-size: 18px; } .wet td { height: 2.6em; }
@media print { body { margin: 0; max-width: none; } a { color: inherit; text-decoration: none; }
  section.page { page-break-before: always; } tr, img { page-break-inside: avoid; } }
"""


def _esc(value: Any) -> str:
    return html.escape(str(value))


def _page(title: str, body: Iterable[str]) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_esc(title)}</title><style>{_STYLE}</style></head><body>"
        + "".join(body)
        + f"<footer>Made by clinval {_esc(__version__)}.</footer></body></html>\n"
    )


# ------------------------------------------------------------------------- records


def collect_records(reports_dir: str | os.PathLike) -> list[dict]:
    """The JSON evidence records in ``reports_dir``, in file-name order (NN_ prefix).

    Each record gains ``_json``, ``_html`` (file names, ``_html`` None when missing) and
    ``_json_sha256``, ``_html_sha256`` (their current SHA-256).
    """
    reports_dir = Path(reports_dir)
    records = []
    for path in sorted(reports_dir.glob("[0-9][0-9]_*.json")):
        record = json.loads(path.read_text())
        record.setdefault("record", path.stem)  # a record without its name is still listed
        page = path.with_suffix(".html")
        record["_json"] = path.name
        record["_html"] = page.name if page.exists() else None
        record["_json_sha256"] = sha256_file(path)
        record["_html_sha256"] = sha256_file(page) if page.exists() else None
        records.append(record)
    return records


def _record(records: Sequence[Mapping[str, Any]], name: str) -> Mapping[str, Any] | None:
    return next((r for r in records if r.get("record") == name), None)


def _alerts(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every alert in the records, with the name of the record that raised it."""
    return [{**a, "record": r.get("record")} for r in records for a in r.get("alerts") or []]


def _candidates(records: Sequence[Mapping[str, Any]]) -> list[tuple[Mapping[str, Any], Mapping[str, Any]]]:
    """Every (candidate, record it is in)."""
    return [(c, r) for r in records for c in r.get("candidates") or []]


# ------------------------------------------------------------------------- index


@dataclass(frozen=True)
class AlertCounts:
    """How many alerts the records raised and how many a person has decided.

    Attributes
    ----------
    by_record : tuple of (str, int)
        Record name and the number of alerts it raised, in record order.
    approved, rejected, open : int
        Alerts with a valid signed approval, a valid signed rejection, and neither.
    invalid : tuple of str
        Alert ids whose approval file fails its signature check (counted as open).
    """

    by_record: tuple[tuple[str, int], ...]
    approved: int
    rejected: int
    open: int
    invalid: tuple[str, ...] = ()

    def verdict(self) -> str:
        """The overall verdict and the next step, as HTML (code in ``<code>``)."""
        from clinval.evidence import plural

        total = sum(n for _, n in self.by_record)
        if self.open:
            verb = "awaits" if self.open == 1 else "await"
            return (f"{plural(self.open, 'alert')} {verb} a decision. Next step: <code>clinval review list</code>, "
                    "then <code>clinval review approve</code> or <code>clinval review reject</code> for each.")
        if total:
            return (f"Every alert is decided ({self.approved} approved, {self.rejected} rejected). Next step: "
                    "<code>make run</code> builds and revalidates a candidate for each approved alert.")
        return "No record raised an alert: nothing awaits a decision."

    def sentence(self) -> str:
        """One line for a person."""
        total = sum(n for _, n in self.by_record)
        if not total:
            return "No alerts in any record."
        from clinval.evidence import human_label

        per_record = ", ".join(f"{n} in {human_label(name)}" for name, n in self.by_record if n)
        line = (f"Alerts: {per_record} ({total} in all); decided {self.approved + self.rejected} "
                f"({self.approved} approved, {self.rejected} rejected), open {self.open}.")
        if self.invalid:
            line += f" Approval files failing their signature check (counted open): {', '.join(self.invalid)}."
        return line


def alert_counts(records: Sequence[Mapping[str, Any]], *, approvals: Sequence[Approval]) -> AlertCounts:
    """Count the records' alerts and the decisions on them.

    A decision counts only when its approval file passes
    :func:`clinval.review.check_approval` (signature and binding to the alert); the
    check is offline, so the count depends on the files alone.
    """
    from clinval.review import check_approval

    current = {a["id"] for a in _alerts(records)}
    decisions: dict[str, str] = {}
    invalid = []
    for approval in approvals:
        if approval.alert_id not in current:
            continue
        if check_approval(approval) is None:
            decisions[approval.alert_id] = approval.decision
        else:
            invalid.append(approval.alert_id)
    approved = sum(d == "approved" for d in decisions.values())
    rejected = sum(d == "rejected" for d in decisions.values())
    return AlertCounts(
        by_record=tuple((str(r.get("record")), len(r.get("alerts") or [])) for r in records),
        approved=approved, rejected=rejected, open=len(current) - approved - rejected, invalid=tuple(sorted(invalid)),
    )


def monitored_performance(record: Mapping[str, Any] | None) -> pd.DataFrame:
    """The :data:`MONITORED_METRICS` rows of a drift record's ``performance`` values.

    Columns ``period, metric, value, lower, upper, n, status``; the reference period
    first, then the production periods in the record's order. Empty if there are none.
    """
    columns = ["period", "metric", "value", "lower", "upper", "n", "status"]
    rows = (record or {}).get("values", {}).get("performance") or []
    frame = pd.DataFrame(rows, columns=columns)
    frame = frame[frame["metric"].isin(MONITORED_METRICS)]
    periods = [REFERENCE_PERIOD, *[p for p in pd.unique(frame["period"]) if p != REFERENCE_PERIOD]]
    order = {"_period": frame["period"].map({p: i for i, p in enumerate(periods)}),
             "_metric": frame["metric"].map({m: i for i, m in enumerate(MONITORED_METRICS)})}
    ordered = frame.assign(**order).sort_values(list(order), kind="stable")
    return ordered.drop(columns=list(order)).reset_index(drop=True)


def performance_figure(performance: pd.DataFrame, *, alert_periods: Mapping[str, Iterable[str]] | None = None) -> Figure:
    """One panel per monitored metric: value and 95% CI per period.

    Parameters
    ----------
    performance : DataFrame
        Rows from :func:`monitored_performance`; rows whose status is not ``ok`` are
        left out of the chart.
    alert_periods : mapping of str to iterable of str, optional
        Metric -> periods in which a trigger on that metric fired; drawn in red.
    """
    from matplotlib.figure import Figure

    from clinval.plots import PALETTE

    alert_periods = {m: set(p) for m, p in (alert_periods or {}).items()}
    periods = list(pd.unique(performance["period"]))
    fig = Figure(figsize=(10, 3.2), layout="constrained")
    for ax, metric in zip(fig.subplots(1, len(MONITORED_METRICS)), MONITORED_METRICS, strict=True):
        rows = performance[(performance["metric"] == metric) & (performance["status"] == "ok")]
        reference = rows[rows["period"] == REFERENCE_PERIOD]
        if metric == "AUROC" and not reference.empty:
            ax.axhline(float(reference["value"].iloc[0]), ls="--", lw=1, color="grey", label="reference")
        elif metric != "AUROC":
            ax.axhline(1.0, lw=1, color="grey", label="ideal (1)")
        for row in rows.itertuples(index=False):
            colour = PALETTE[6] if row.period in alert_periods.get(metric, ()) else (
                "grey" if row.period == REFERENCE_PERIOD else PALETTE[0])
            # An estimate without a CI is drawn as a point alone.
            low, high = (row.value if pd.isna(b) else b for b in (row.lower, row.upper))
            ax.errorbar([periods.index(row.period)], [row.value], yerr=[[row.value - low], [high - row.value]],
                        fmt="o", ms=4, capsize=3, color=colour)
        ax.set_xticks(range(len(periods)), periods, rotation=45 if len(periods) > 6 else 0)
        ax.set_xlim(-0.5, len(periods) - 0.5)
        ax.set_title(metric)
        ax.legend(fontsize=7, loc="best")
    return fig


def _png_data_uri(fig: Figure) -> str:
    """The figure as a PNG data URI whose bytes depend only on the figure."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _dashboard(records: Sequence[Mapping[str, Any]]) -> str:
    import matplotlib

    from clinval.plots import use_record_style

    drift = _record(records, DRIFT_RECORD)
    performance = monitored_performance(drift)
    if performance.empty:
        return f"<p>{_esc(MSG_NO_PERFORMANCE.format(record=DRIFT_RECORD))}</p>"
    alert_periods: dict[str, set[str]] = {}
    for alert in (drift or {}).get("alerts") or []:
        metric = (alert.get("evidence") or {}).get("metric")
        if metric:
            alert_periods.setdefault(metric, set()).add(str(alert.get("period")))
    with matplotlib.rc_context():
        use_record_style()
        uri = _png_data_uri(performance_figure(performance, alert_periods=alert_periods))
    table = html_table(interval_view(performance, rows="metric", columns="period"),
                       caption="Value (95% CI) per period; a status replaces the value where it could not be estimated.")
    return (
        f'<img class="dashboard" alt="AUROC, observed/expected and calibration slope per period with 95% CIs" src="{uri}">'
        + table
    )


def write_index(
    *,
    reports_dir: str | os.PathLike = "reports",
    out: str | os.PathLike = "reports/index.html",
    approvals_dir: str | os.PathLike | None = None,
) -> Path:
    """Write the index page and return its path.

    Parameters
    ----------
    reports_dir : path
        The folder of evidence records (``NN_name.json`` and ``.html``).
    out : path
        The page to write.
    approvals_dir : path, optional
        Signed decisions on alerts (``audit/approvals``); None counts every alert open.
        A missing folder holds no decisions.

    Raises
    ------
    FileNotFoundError
        If ``reports_dir`` holds no evidence record.
    """
    from clinval.review import read_approvals

    records = collect_records(reports_dir)
    if not records:
        raise FileNotFoundError(MSG_NO_RECORDS.format(reports=reports_dir))
    approvals = read_approvals(approvals_dir) if approvals_dir is not None else []
    counts = alert_counts(records, approvals=approvals)
    from clinval.evidence import human_label, plural

    rows = []
    studies = sorted({(r.get("study") or {}).get("name") or "" for r in records} - {""})
    data = sorted({(r.get("study") or {}).get("data_sha256") or "" for r in records} - {""})
    references = sorted({(r.get("study") or {}).get("reference_sha256") or "" for r in records} - {""})
    mixed = len(studies) > 1 or len(data) > 1 or len(references) > 1
    for r in records:
        alerts = r.get("alerts") or []
        alert_text = f'<span class="alert">{plural(len(alerts), "alert")}</span>' if alerts else "no alerts"
        title = human_label(r.get("title", r["record"]))
        link = f'<a href="{_esc(r["_html"])}">{_esc(title)}</a>' if r["_html"] else _esc(title)
        rows.append(
            "<tr>"
            f"<td>{link}</td>"
            f"<td>{_esc(r.get('status', ''))}</td>"
            f"<td>{alert_text}</td>"
            f"<td class=\"digest\"><code>html {r['_html_sha256'] or '—'}</code><br><code>json {r['_json_sha256']}</code></td>"
            "</tr>"
        )
    alert_class = "alert" if counts.open or counts.invalid else ""
    if mixed:
        study_line = ('<p class="bad">These records come from different studies or data ('
                      + _esc("; ".join(studies + [d[:12] for d in data + references])) + "): the run is mixed. Run <code>make run</code> "
                      "again before relying on them.</p>")
    else:
        study_line = (f"<p>Study: {_esc(studies[0])}" + (f" (data SHA-256 <code>{_esc(data[0][:12])}</code>)" if data else "")
                      + ".</p>") if studies else ""
    verdict_class = "verdict attention" if counts.open or counts.invalid or mixed else "verdict"
    links = " · ".join([f'<a href="{_esc(r["_html"])}">{_esc(human_label(r.get("title", r["record"])))}</a>'
                        for r in records if r["_html"]]
                       + ['<a href="pccp_report.html">PCCP report</a> and its <a href="pccp_report.html#signoff">sign-off '
                          "page</a> (written by <code>clinval report pccp</code>)"])
    return atomic_write_text(out, _page("clinval evidence index", [
        "<h1>clinval evidence index</h1>",
        f'<section class="{verdict_class}">{study_line}<p><strong>{counts.verdict()}</strong></p>'
        f"<p>Records: {links}.</p></section>",
        "<p class=\"lead\">Each record is a self-contained HTML page showing aggregates only; "
        "its JSON twin holds every number it shows. Digests are SHA-256. Who ran and signed what, and when, "
        "is in the audit ledger (<code>clinval audit show</code>, <code>clinval report pccp</code>).</p>",
        f'<p class="{alert_class}">{_esc(counts.sentence())}</p>',
        "<table><thead><tr><th>Record</th><th>Status</th><th>Alerts</th><th>Digests (SHA-256)</th></tr></thead>",
        f"<tbody>{''.join(rows)}</tbody></table>",
        "<h2>Monitored performance</h2>",
        "<p class=\"lead\">How well the locked model ranked and calibrated risk in each period: AUROC "
        "(dashed line: the reference hold-out), observed/expected events and calibration slope (ideal 1), "
        f"with 95% confidence intervals, from {DRIFT_RECORD}. Red: a trigger on that metric fired.</p>",
        _dashboard(records),
    ]))


# ------------------------------------------------------------------------- PCCP report


@dataclass(frozen=True)
class PccpReport:
    """What :func:`write_pccp_report` wrote.

    Attributes
    ----------
    path : Path
        The report.
    verification : VerifyResult
        The ledger verification shown at its top.
    """

    path: Path
    verification: VerifyResult


class _Trail:
    """The ledger as the report shows it, and the gate that judges it.

    Every entry readable is shown; only verified entries (before the first problem)
    count for a verdict, through :class:`clinval.gate.GateLedger`.
    """

    def __init__(self, entries: Sequence[Entry], verification: VerifyResult) -> None:
        from clinval.gate import GateLedger

        self.entries = list(entries)
        self.verification = verification
        self.gate = GateLedger(e for e in self.entries if verification.trusted(e.seq))

    def trusted(self, entry: Entry) -> bool:
        """Verified: read by :func:`verify`, and before its first bad seq if it failed."""
        return self.verification.trusted(entry.seq)

    def latest(self, kinds: Iterable[str], **match: Any) -> Entry | None:
        kinds = set(kinds)
        found = [e for e in self.entries if e.kind in kinds and all(e.body.get(k) == v for k, v in match.items())]
        return found[-1] if found else None

    def by_seq(self, seq: Any) -> Entry | None:
        return next((e for e in self.entries if e.seq == seq), None)

    def signatures_on(self, *, seq: int | None = None, path: str | None = None, sha256: str | None = None) -> list[Entry]:
        """E-signatures whose target is entry ``seq``, or file ``path`` with digest ``sha256``."""
        out = []
        for e in self.entries:
            target = e.body.get("target") if e.kind == "esig" and isinstance(e.body.get("target"), dict) else {}
            if (seq is not None and target.get("seq") == seq) or (
                    path is not None and target.get("path") == path and target.get("sha256") == sha256):
                out.append(e)
        return out

    def decisions(self, alert_id: str) -> list[Entry]:
        """The decision signatures shown for an alert: every one on its latest entry."""
        entry = self.latest(["drift_alert", "fairness_alert"], alert_id=alert_id)
        if entry is None:
            return []
        return [s for s in self.signatures_on(seq=entry.seq) if s.body.get("meaning") in ("approved", "rejected")]

    def signer(self, entry: Entry) -> str:
        """Printed name, user id and key of an e-signature's signer."""
        from clinval.signoff import signer_text

        return signer_text(entry.body.get("printed_name"), entry.actor, entry.key)

    def signature_text(self, entry: Entry) -> str:
        body = entry.body
        text = (f"{str(body.get('meaning')).upper()} by {self.signer(entry)}, "
                f"{entry.time} (UTC), ledger seq {entry.seq}: {body.get('reason')}")
        return text if self.trusted(entry) else f"{text} [{NOT_VERIFIED}]"

    def short_signature(self, entry: Entry) -> str:
        text = f"{str(entry.body.get('meaning')).upper()} by {self.signer(entry)}"
        return text if self.trusted(entry) else f"{text} [{NOT_VERIFIED}]"

    def seq_text(self, entry: Entry) -> str:
        return f"seq {entry.seq}" + ("" if self.trusted(entry) else f" [{NOT_VERIFIED}]")

    def candidates(self) -> list[tuple[dict[str, Any], Entry]]:
        """Every candidate the ledger recorded: the facts of its latest ``retrain`` entry."""
        latest: dict[str, Entry] = {}
        for entry in self.entries:
            if entry.kind == "retrain" and isinstance(entry.body.get("candidate_id"), str):
                latest[entry.body["candidate_id"]] = entry
        return [({**entry.body, "id": cid}, entry) for cid, entry in latest.items()]


def _read_entries(ledger: Ledger) -> tuple[list[Entry], str | None]:
    """The readable entries, and why reading stopped early (None if it did not)."""
    from clinval.ledger import LedgerError

    entries: list[Entry] = []
    try:
        for entry in ledger.entries():
            entries.append(entry)
    except LedgerError as exc:
        return entries, MSG_UNREADABLE.format(seq=len(entries), error=exc)
    return entries, None


def _read_keys(ledger: Ledger) -> tuple[list[RegisteredKey], str | None]:
    from clinval.ledger import LedgerError

    try:
        return ledger.registered_keys(), None
    except LedgerError as exc:
        return [], MSG_NO_KEYS.format(error=exc)


def write_pccp_report(
    *,
    plan: ChangeControlPlan,
    ledger: Ledger,
    reports_dir: str | os.PathLike = "reports",
    out: str | os.PathLike = "reports/pccp_report.html",
    approvals_dir: str | os.PathLike | None = None,
    plan_file: str | os.PathLike | None = None,
    trust: str | os.PathLike | None = None,
) -> PccpReport:
    """Verify the ledger, then write the PCCP report from it and the evidence records.

    Every verdict (a decision, a two-person promotion, a criterion PASSED) is decided from
    the verified ledger with the rules of :mod:`clinval.gate`; records only add the
    numbers shown next to them, with whether they still match the digest the ledger
    bound. The report renders whatever the inputs hold: no records, no alerts, no
    candidates or an empty ledger each give a sentence saying so. A ledger that fails
    verification is named at the top in red with its code and seq, and every signature
    from that seq on is marked NOT VERIFIED and counts for nothing. The ledger's size,
    head and genesis key are printed, so the submitted report pins the ledger it came from.

    Parameters
    ----------
    plan : ChangeControlPlan
        The plan (:func:`clinval.pccp.plan_from_params`).
    ledger : Ledger
        The audit ledger; its checkpoint (``checkpoint_path``), when present, is checked too.
    reports_dir : path
        The evidence records.
    out : path
        The report to write.
    approvals_dir : path, optional
        The approval cache (``audit/approvals``), compared with the ledger.
    plan_file : path, optional
        The file ``plan`` was read from; its SHA-256 is shown, compared with the plan the
        revalidation record applied, and must equal a candidate's recorded plan digest
        for ``plan`` to say which trigger allows which modification.
    trust : path, optional
        A trust root kept off-system (``clinval audit witness``), checked too.

    Returns
    -------
    PccpReport
    """
    from clinval.ledger import verify
    from clinval.review import read_approvals

    checkpoint = ledger.checkpoint_path
    verification = verify(ledger.path, checkpoint=checkpoint if checkpoint is not None and checkpoint.exists() else None,
                          trust=trust)
    entries, entries_problem = _read_entries(ledger)
    keys, keys_problem = _read_keys(ledger)
    records = collect_records(reports_dir)
    approvals = read_approvals(approvals_dir) if approvals_dir is not None else []
    trail = _Trail(entries, verification)
    plan_sha256 = sha256_file(plan_file) if plan_file is not None else None
    problems = [p for p in (entries_problem, keys_problem) if p]
    problems += _plan_problems(records, plan_sha256)
    page = _page("PCCP report", [
        "<h1>Predetermined change control plan (PCCP) report</h1>",
        _banners(verification, problems),
        _overview(plan, records, trail, plan_file, plan_sha256),
        _description_of_modifications(plan, records, trail),
        _modification_protocol(plan, records, trail, approvals, plan_sha256),
        _impact_assessment(records, trail),
        _traceability(plan, records, trail, plan_sha256),
        _signoff(trail, keys),
    ])
    return PccpReport(path=atomic_write_text(out, page), verification=verification)


def _plan_problems(records: Sequence[Mapping[str, Any]], plan_sha256: str | None) -> list[str]:
    # Only the revalidation depends on the whole plan; the drift and fairness stages
    # depend on its triggers alone and keep an older file digest when other parts change.
    used = ((_record(records, REVALIDATION_RECORD) or {}).get("inputs") or {}).get(PLAN_INPUT)
    if plan_sha256 is None or used in (None, plan_sha256):
        return []
    return [MSG_PLAN_DIFFERS.format(given=plan_sha256, record=REVALIDATION_RECORD, used=used)]


def _banners(verification: VerifyResult, problems: Sequence[str]) -> str:
    """The ledger verification (green or red), then any other problem with the inputs (red)."""
    if verification.ok:
        text = MSG_LEDGER_OK.format(result=str(verification).rstrip(".") + ".") + (" Nothing has been recorded or signed yet."
                                                             if verification.size == 0 else "")
        if verification.checkpoint is not None:
            text += f" It extends its signed checkpoint of {verification.checkpoint.size} entries."
        banner = f'<div class="banner ok"><p>{_esc(text)}</p></div>'
    else:
        untrusted = (f"signatures and entries from seq {verification.seq} on are marked {NOT_VERIFIED}"
                     if verification.seq is not None else f"every signature below is marked {NOT_VERIFIED}")
        text = MSG_LEDGER_BAD.format(code=verification.code, message=verification.message, untrusted=untrusted,
                                     where="" if verification.seq is None else f" at seq {verification.seq}")
        banner = f'<div class="banner bad"><p>{_esc(text)}</p></div>'
    if not problems:
        return banner
    return banner + '<div class="banner bad">' + "".join(_para(p) for p in problems) + "</div>"


def _section(title: str, lead: str, *parts: str, level: int = 2) -> str:
    return f"<h{level}>{_esc(title)}</h{level}><p class=\"lead\">{_esc(lead)}</p>" + "".join(parts)


def _para(text: str, css: str = "") -> str:
    return f'<p class="{css}">{_esc(text)}</p>' if css else f"<p>{_esc(text)}</p>"


def _overview(plan: ChangeControlPlan, records, trail: _Trail, plan_file, plan_sha256: str | None) -> str:
    alerts = _alerts(records)
    candidates = trail.candidates()
    promoted = [c for c, _ in candidates if trail.latest(["model_version"], candidate_id=c["id"])]
    decided = [a for a in alerts if a["id"] in trail.gate.decisions]
    passing = [c for c, _ in candidates if not _criteria_failed(c)]
    from clinval.evidence import human_label, plural

    summary = (f"Plan version {plan.version}. The evidence records raised {plural(len(alerts), 'alert')}, of which "
               f"{len(decided)} {'has' if len(decided) == 1 else 'have'} a signed decision in the verified ledger; "
               f"the ledger records {plural(len(candidates), 'candidate model')} built under the plan, "
               f"{len(passing)} met every acceptance criterion and {len(promoted)} "
               f"{'was' if len(promoted) == 1 else 'were'} promoted.")
    links = " · ".join(f'<a href="{_esc(r["_html"])}">{_esc(human_label(r.get("title", r["record"])))}</a>'
                       for r in records if r["_html"])
    v = trail.verification
    inputs = pd.DataFrame(
        [("change control plan", str(plan_file or "not given"), plan_sha256 or "—")]
        + [(human_label(r.get("title", r["record"])), r["_json"], r["_json_sha256"]) for r in records]
        + [(human_label(r.get("title", r["record"])), r["_html"], r["_html_sha256"]) for r in records if r["_html"]]
        + [("audit ledger", f"{v.size} entries, head", v.head or "none"),
           ("audit ledger", "genesis key", v.genesis_key or "none")],
        columns=["input", "file", "sha256"])
    pin = (_para(f"This report was made from the audit ledger with {v.size} entries, head {v.head} and genesis key "
                 f"{v.genesis_key}. To check later that the ledger only grew from this state, keep this page and run "
                 f"`clinval audit verify --trust FILE` with a trust root holding these three values "
                 f"(`clinval audit witness` writes one; docs/ledger.md shows its form).")
           if v.size else _para("The audit ledger is empty: there is no ledger state to pin."))
    return _section(
        "Overview", "This page reports, from the evidence records and the audit ledger, how the model was "
        "monitored and changed under its predetermined change control plan.",
        _para(summary if records else "No evidence records were found: run the pipeline (`dvc repro`) first."),
        f"<p>Evidence records: {links}; the <a href=\"index.html\">index</a> and the "
        "<a href=\"#signoff\">sign-off page</a>.</p>" if links else "",
        pin,
        html_table(inputs, caption="Inputs of this report"),
    )


def _criteria_failed(candidate: Mapping[str, Any]) -> list[str]:
    from clinval.gate import criteria_failed

    return criteria_failed(candidate.get("criteria"))


def _description_of_modifications(plan: ChangeControlPlan, records, trail: _Trail) -> str:
    leads_to: dict[str, list[str]] = {}
    for trigger in plan.triggers.values():
        leads_to.setdefault(trigger.modification or "", []).append(trigger.name)
    from clinval.evidence import human_label

    allowed = pd.DataFrame(
        [(human_label(m.name), m.description, m.approval,
          ", ".join(map(human_label, leads_to.get(m.name, []))) or "none")
         for m in plan.modifications.values()],
        columns=["modification", "what changes", "approval", "triggered by"])
    locked = pd.DataFrame([("features", ", ".join(plan.locked_features)), ("model family", plan.locked_model_family),
                           ("preprocessing", plan.locked_preprocessing)], columns=["locked component", "as locked"])
    made = []
    for candidate, entry in trail.candidates():
        version = trail.latest(["model_version"], candidate_id=candidate["id"])
        verdict = "REJECT" if _criteria_failed(candidate) else "PROMOTE"
        made.append((candidate["id"], candidate.get("modification"), ", ".join(candidate.get("alert_ids") or []) or "—",
                     ", ".join(candidate.get("training_periods") or []) or "—",
                     f"{verdict} (recorded at {trail.seq_text(entry)})",
                     f"promoted ({trail.seq_text(version)})" if version else "not promoted"))
    recorded = {c["id"] for c, _ in trail.candidates()}
    for candidate, _ in _candidates(records):
        if candidate["id"] not in recorded:
            made.append((candidate["id"], candidate.get("modification"), ", ".join(candidate.get("alert_ids") or []),
                         ", ".join(candidate.get("training_periods") or []),
                         "not in the ledger yet (run `clinval audit record`)", "not promoted"))
    made_html = (html_table(pd.DataFrame(made, columns=["candidate", "modification", "for alerts", "trained on",
                                                        "decision under the plan", "deployed"]),
                            caption="Modifications made under the plan")
                 if made else _para("No modification has been made under the plan: no candidate model was built."))
    shown = ((_record(records, REVALIDATION_RECORD) or {}).get("values") or {}).get("refusals") or []
    refusals = [r for r in shown if isinstance(r, Mapping)]  # the record shows "No refusals." when there are none
    refused_html = (html_table(pd.DataFrame([(r.get("alert_id"), r.get("reason")) for r in refusals],
                                            columns=["alert", "why no candidate was built"]),
                               caption="Modifications refused under the plan") if refusals else "")
    return "<section>" + _section(
        "1. Description of Modifications",
        "This section states which changes to the locked model the plan allows, what may never change without a new "
        "submission, and which changes were made under the plan.",
        html_table(allowed, caption="Modifications the plan allows"),
        html_table(locked, caption="Locked components"),
        made_html,
        refused_html,
    ) + "</section>"


def _data_problems(plan: ChangeControlPlan, candidate: Mapping[str, Any]) -> list[str]:
    """How a candidate's training data break the plan's data management (empty if they do not)."""
    from clinval.pccp import training_data_breaches

    sequestered, outside = training_data_breaches(plan, candidate.get("training_periods") or [])
    problems = []
    if sequestered:
        problems.append(f"trained on sequestered periods {sequestered}")
    if outside:
        problems.append(f"trained on periods outside the plan {outside}")
    return problems


def _conformity(plan: ChangeControlPlan, candidate: Mapping[str, Any]) -> str:
    problems = _data_problems(plan, candidate)
    return "DOES NOT CONFORM: " + "; ".join(problems) if problems else "conforms to the plan"


def _modification_protocol(plan: ChangeControlPlan, records, trail: _Trail, approvals: Sequence[Approval],
                           plan_sha256: str | None) -> str:
    return "<section>" + _section(
        "2. Modification Protocol", "This section shows the methods the plan fixes in advance for making and checking "
        "each modification, and how each was followed.",
        _data_management(plan, trail), _retraining(plan, records, trail, approvals),
        _performance_evaluation(plan, trail), _update_procedures(trail, plan, plan_sha256)) + "</section>"


def _data_management(plan: ChangeControlPlan, trail: _Trail) -> str:
    rows = [(c["id"], ", ".join(c.get("training_periods") or []), ", ".join(c.get("sequestered_periods") or []),
             c.get("training_data_digest"), _conformity(plan, c)) for c, _ in trail.candidates()]
    return _section(
        "2.1 Data management", "Which periods a candidate may be fitted on, which are held back for its evaluation, "
        "and the data each candidate actually used, as the ledger recorded it.",
        _para(f"Training periods: {', '.join(plan.training_periods)}. Sequestered for evaluation, never for training: "
              f"{', '.join(plan.sequestered_periods)}."),
        html_table(pd.DataFrame(rows, columns=["candidate", "trained on", "evaluated on", "training data sha256",
                                               "check"])) if rows else _para("No candidate was built."),
        level=3)


def _retraining(plan: ChangeControlPlan, records, trail: _Trail, approvals: Sequence[Approval]) -> str:
    from clinval.review import check_approval

    from clinval.evidence import human_label

    triggers = pd.DataFrame([(human_label(t.name), t.source, t.description, human_label(t.modification or "review only"))
                             for t in plan.triggers.values()], columns=["trigger", "source", "fires when", "leads to"])
    alerts = [(a["id"], human_label(a.get("record") or ""), a.get("period"), a.get("summary"), a.get("modification") or "review only",
               "; ".join(trail.signature_text(d) for d in trail.decisions(a["id"])) or "OPEN: no signed decision")
              for a in _alerts(records)]
    notes = []
    for approval in approvals:
        problem = check_approval(approval)
        backed = trail.gate.decisions.get(approval.alert_id)
        if problem is not None:
            notes.append(MSG_APPROVAL_BAD.format(alert=approval.alert_id, problem=problem))
        elif backed is None or backed.lines != approval.lines:
            notes.append(MSG_APPROVAL_BAD.format(alert=approval.alert_id, problem=(
                "it is not the decision the verified ledger holds; it counts for nothing "
                "(`clinval review sync` rebuilds the cache from the ledger)")))
    return _section(
        "2.2 Re-training", "The events that open an alert, and the signed decision a person made on each alert: "
        "a candidate is retrained only for an approved alert, and only with the modification its trigger allows.",
        html_table(triggers, caption="Triggers"),
        html_table(pd.DataFrame(alerts, columns=["alert", "record", "period", "what was found", "allowed change",
                                                 "decision"]), caption="Alerts and decisions")
        if alerts else _para("No alert has been raised: no trigger fired."),
        *(_para(note, "bad") for note in notes),
        level=3)


_CRITERION_NAMES = {"auroc_noninferiority": "AUROC non-inferiority", "calibration_slope": "Calibration slope",
                    "observed_expected": "Observed/expected", "subgroup_auroc": "Subgroup AUROC"}


def _criterion_text(name: str, rule: Mapping[str, Any] | None) -> str | None:
    """An acceptance criterion of the plan in words (None: say it as the plan does)."""
    if not isinstance(rule, Mapping):
        return None
    try:
        if name == "auroc_noninferiority":
            return (f"the lower 95% bound of AUROC(candidate) − AUROC(locked) lies above −{float(rule['margin']):g} "
                    "(paired DeLong)")
        if name == "calibration_slope":
            low, high = rule["bounds"]
            return f"the slope lies between {float(low):g} and {float(high):g} and its 95% CI includes 1"
        if name == "observed_expected":
            return f"the 95% CI of observed/expected includes {float(rule['includes']):g}"
        if name == "subgroup_auroc":
            waive = rule.get("waive_not_estimable")
            return (f"in no sensitive group is the candidate's AUROC worse than the locked model's beyond "
                    f"{float(rule['margin']):g} (upper 95% bound of the paired difference); a group too small to "
                    + ("judge is waived as the plan says" if waive else "judge fails the criterion"))
    except (KeyError, TypeError, ValueError):
        return None
    return None


def _performance_evaluation(plan: ChangeControlPlan, trail: _Trail) -> str:
    from clinval.pccp import plan_summary

    summary = plan_summary(plan)
    criteria = summary[summary["section"] == "acceptance criterion"][["item", "plan"]].rename(
        columns={"item": "criterion", "plan": "requirement (from the plan)"})
    criteria = criteria.assign(**{"requirement (from the plan)": [
        _criterion_text(name, plan.criteria.get(name)) or text
        for name, text in zip(criteria["criterion"], criteria["requirement (from the plan)"])]})
    criteria["criterion"] = criteria["criterion"].map(_CRITERION_NAMES.get).fillna(criteria["criterion"])
    results = [html_table(pd.DataFrame(c.get("criteria") or [], columns=["criterion", "requirement", "result", "passed"]),
                          caption=f"{c['id']}: {'REJECT' if _criteria_failed(c) else 'PROMOTE'} "
                                  f"(ledger {trail.seq_text(entry)})") for c, entry in trail.candidates()]
    return _section(
        "2.3 Performance evaluation", "The acceptance criteria every candidate must meet on the sequestered data, "
        "written before any result was seen, and each candidate's results as the ledger recorded them.",
        html_table(criteria, caption="Acceptance criteria"),
        *(results or [_para("No candidate has been evaluated.")]),
        level=3)


def _update_procedures(trail: _Trail, plan: ChangeControlPlan, plan_sha256: str | None) -> str:
    versions = []
    for e in trail.entries:
        if e.kind != "model_version":
            continue
        esig = trail.by_seq(e.body.get("promotion_esig_seq"))
        promoter = trail.signer(esig) if esig is not None else e.actor
        verdict = trail.gate.promotion_verdict(e, plan=plan, plan_sha256=plan_sha256) if trail.trusted(e) else None
        check = ("two people, every criterion met" if trail.trusted(e) and verdict is None
                 else str(verdict) if verdict is not None else NOT_VERIFIED)
        versions.append((e.body.get("candidate_id"), e.body.get("modification"),
                         (e.body.get("model_file") or {}).get("sha256"),
                         ", ".join(e.body.get("retraining_approved_by") or []), promoter,
                         f"{trail.seq_text(e)}, {e.time} (UTC)", check))
    return _section(
        "2.4 Update procedures", "How a candidate replaces the locked model, and each time one did.",
        _para("A candidate is promoted only when its retrain entry in the ledger records that it met every acceptance "
              "criterion, its retraining was approved by a signed decision on its alert, and a different person signs "
              "the promotion (`clinval model promote`): two people, two e-signatures. Promotion appends an "
              "e-signature on the candidate's retrain entry and a model_version entry naming the model file, training "
              "data, plan and validation report by SHA-256."),
        html_table(pd.DataFrame(versions, columns=["candidate", "modification", "model sha256", "retraining approved by",
                                                   "promoted by", "ledger", "check"]), caption="Model versions promoted")
        if versions else _para("No candidate has been promoted: the locked model is the model in use."),
        level=3)


def _impact_assessment(records, trail: _Trail) -> str:
    parts = []
    for record in records:
        findings = (record.get("values") or {}).get("findings")
        if record.get("alerts") or findings:
            parts.append(f"<h3>{_esc(record.get('title', record['record']))}</h3>" + _para(record.get("status", "")))
            if isinstance(findings, list):
                parts.append("<ul>" + "".join(f"<li>{_esc(f)}</li>" for f in findings) + "</ul>")
    shown = {c["id"]: r for c, r in _candidates(records)}
    for candidate, entry in trail.candidates():
        failed = _criteria_failed(candidate)
        version = trail.latest(["model_version"], candidate_id=candidate["id"])
        verdict = (f"It fails {', '.join(failed)}: it is not deployed and the locked model stays in use."
                   if failed else
                   f"It meets every acceptance criterion and was promoted at ledger {trail.seq_text(version)}."
                   if version else "It meets every acceptance criterion: it may replace the locked model once a "
                   "second person signs its promotion.")
        parts.append(f"<h3>Candidate {_esc(candidate['id'])} ({_esc(candidate.get('modification'))})</h3>"
                     + _para(f"Locked model and candidate on the sequestered periods "
                             f"{', '.join(candidate.get('sequestered_periods') or [])} (ledger {trail.seq_text(entry)}). "
                             f"{verdict}"))
        record = shown.get(candidate["id"])
        metrics = pd.DataFrame(((record or {}).get("values") or {}).get(f"metrics {candidate['id']}") or [])
        if {"model", "metric", "value"} <= set(metrics.columns):
            parts.append(html_table(interval_view(metrics, rows="metric", columns="model"),
                                    caption="Value (95% CI), locked model against candidate, from the current "
                                            "revalidation record"))
    if not trail.candidates():
        parts.append(_para("No modification was made, so there is no change in performance to assess: the locked "
                           "model stays in use as validated."))
    return "<section>" + _section(
        "3. Impact Assessment", "This section weighs what monitoring found in the population the model serves against "
        "how each candidate performs compared with the locked model, on sequestered data never used for training.",
        *parts) + "</section>"


def _evidence_cell(ref: Mapping[str, Any] | None, entry: Entry | None, records, trail: _Trail) -> str:
    """The record digest a ledger entry bound, and whether the current file still has it."""
    if ref is None or entry is None:
        return "not in the ledger yet (run <code>clinval audit record</code>)"
    current = {r[f"_{kind}"]: r[f"_{kind}_sha256"] for r in records for kind in ("json", "html") if r[f"_{kind}"]}
    now = current.get(Path(str(ref.get("path"))).name)
    match = ("the current file matches" if now == ref.get("sha256") else "the current file is missing" if now is None
             else '<span class="fail">the current file differs</span>')
    return (f"{_esc(ref.get('path'))}<br><code>{_esc(ref.get('sha256'))}</code><br>"
            f"bound at ledger {_esc(trail.seq_text(entry))}; {match}")


@dataclass(frozen=True)
class _Step:
    """One traceability row: a protocol step of a modification and what happened."""

    section: str
    criterion: str
    result: str
    passed: bool | None
    evidence: str


def _candidate_steps(plan: ChangeControlPlan, candidate: Mapping[str, Any], retrain: Entry, records, trail: _Trail,
                     plan_sha256: str | None) -> tuple[list[_Step], list[Entry]]:
    """The protocol steps of one candidate (facts from its retrain entry), and every e-signature on it."""
    cid = candidate["id"]
    trusted = trail.trusted(retrain)
    version = trail.latest(["model_version"], candidate_id=cid)
    report = retrain.body.get("report")
    evidence = _evidence_cell(report, retrain, records, trail)
    # The plan says which trigger allows which modification only if it is the plan the candidate was judged under.
    same_plan = plan_sha256 is not None and candidate.get("plan_sha256") == plan_sha256
    approvers, problems = trail.gate.approvers(retrain, plan=plan if same_plan else None) if trusted else ([], {})
    approved = {a.alert_id for a in approvers}

    steps = [_Step(
        "2.1 Data management", "fitted on the plan's training periods only; sequestered periods never used",
        f"trained on {', '.join(candidate.get('training_periods') or [])}, evaluated on "
        f"{', '.join(candidate.get('sequestered_periods') or [])}: {_conformity(plan, candidate)}. Training data "
        f"sha256 {candidate.get('training_data_digest')}",
        not _data_problems(plan, candidate) and trusted, evidence)]
    alert_entries = []
    for alert_id in candidate.get("alert_ids") or []:
        entry = trail.latest(["drift_alert", "fairness_alert"], alert_id=alert_id)
        if entry is not None:
            alert_entries.append(entry)
        signed = trail.decisions(alert_id)
        notes = [str(problems[alert_id])] if alert_id in problems else []
        steps.append(_Step(
            "2.2 Re-training", f"retraining for alert {alert_id} approved by a signed decision",
            "; ".join([*(trail.short_signature(s) for s in signed), *notes]) or "no signed decision",
            alert_id in approved,
            _evidence_cell(entry.body.get("report") if entry else None, entry, records, trail)))
    steps += [_Step("2.3 Performance evaluation", f"{c.get('criterion')}: {c.get('requirement')}", str(c.get("result")),
                    c.get("passed") is True and trusted, evidence) for c in candidate.get("criteria") or []]
    failed = _criteria_failed(candidate)
    if version is not None:
        verdict = trail.gate.promotion_verdict(version, plan=plan, plan_sha256=plan_sha256) if trail.trusted(version) else None
        esig = trail.by_seq(version.body.get("promotion_esig_seq"))
        promoter = trail.signer(esig) if esig is not None else version.actor
        steps.append(_Step(
            "2.4 Update procedures", "promoted only after every criterion passed and a second person signed",
            f"promoted at {trail.seq_text(version)} by {promoter} (retraining approved by "
            f"{', '.join(version.body.get('retraining_approved_by') or []) or 'nobody'}); model sha256 "
            f"{(version.body.get('model_file') or {}).get('sha256')}" + (f". {verdict}" if verdict else ""),
            trail.trusted(version) and verdict is None,
            _evidence_cell(version.body.get("validation_report"), version, records, trail)))
    else:
        steps.append(_Step(
            "2.4 Update procedures", "promoted only after every criterion passed and a second person signed",
            "meets every criterion; awaiting a second person's promotion signature" if not failed
            else f"not promoted (failed: {', '.join(failed)}); the locked model stays in use", None, evidence))
    decisions = [s for entry in alert_entries for s in trail.signatures_on(seq=entry.seq)
                 if s.body.get("meaning") in ("approved", "rejected")]
    promotions = trail.signatures_on(seq=retrain.seq)
    reviews = trail.signatures_on(path=report.get("path"), sha256=report.get("sha256")) if isinstance(report, Mapping) else []
    return steps, [*decisions, *promotions, *reviews]


def _traceability(plan: ChangeControlPlan, records, trail: _Trail, plan_sha256: str | None) -> str:
    rows = []
    for candidate, retrain in trail.candidates():
        steps, signatures = _candidate_steps(plan, candidate, retrain, records, trail, plan_sha256)
        signed = "<br><br>".join(_esc(trail.signature_text(s)) for s in signatures) or "none yet"
        for index, step in enumerate(steps):
            verdict = ("" if step.passed is None else ' <span class="pass">PASSED</span>' if step.passed
                       else ' <span class="fail">NOT MET</span>')
            # One cell for a run of rows bound to the same evidence record.
            run = 1
            while index + run < len(steps) and steps[index + run].evidence == step.evidence:
                run += 1
            evidence = ("" if index and steps[index - 1].evidence == step.evidence
                        else f'<td rowspan="{run}">{step.evidence}</td>')
            first = (f'<td rowspan="{len(steps)}">{_esc(candidate["id"])}<br>({_esc(candidate.get("modification"))})</td>',
                     f'<td rowspan="{len(steps)}">{signed}</td>')
            rows.append(f"<tr>{first[0] if index == 0 else ''}<td>{_esc(step.section)}</td><td>{_esc(step.criterion)}</td>"
                        f"<td>{_esc(step.result)}{verdict}</td>{evidence}{first[1] if index == 0 else ''}</tr>")
    widths = "".join(f'<col style="width:{w}%">' for w in (11, 10, 18, 23, 18, 20))
    table = (f'<table class="trace"><colgroup>{widths}</colgroup><thead><tr><th>modification</th>'
             "<th>protocol section</th><th>criterion</th><th>result</th><th>evidence record (SHA-256)</th>"
             f"<th>e-signatures</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
             if rows else _para("No modification to trace: no candidate model was built."))
    return '<section class="page">' + _section(
        "4. Traceability", "This table follows each modification from the plan's protocol section and acceptance "
        "criterion to its result, the digest of the evidence record the ledger bound it to, and the e-signatures "
        "given on it. Every fact in it is read from the verified ledger.", table) + "</section>"


def _signoff(trail: _Trail, keys: Sequence[RegisteredKey]) -> str:
    from clinval.signoff import signoff_section

    section = signoff_section(trail.entries, keys=keys, verification=trail.verification, title=SIGNOFF_TITLE)
    wet = "".join("<tr><td></td><td></td><td></td><td></td></tr>" for _ in range(3))
    return (
        '<section class="page signoff" id="signoff">' + section
        + "<h2>Signatures on paper</h2><p class=\"lead\">For a reviewer who signs this printed report; the electronic "
          "signatures above are the binding record.</p>"
          "<table class=\"wet\"><tr><th>Printed name</th><th>Signature</th><th>Date (UTC)</th>"
          f"<th>Meaning (reviewed, approved)</th></tr>{wet}</table></section>"
    )

