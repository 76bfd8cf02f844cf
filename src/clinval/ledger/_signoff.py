"""Human-readable views of the ledger: one-line summaries and the HTML sign-off page."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any, Iterable

if TYPE_CHECKING:
    from clinval.ledger._entry import Entry
    from clinval.ledger._state import RegisteredKey
    from clinval.ledger._verify import VerifyResult

__all__ = ["signoff_html", "summarize"]

_SHORT = 12


def _short(digest: Any) -> str:
    return str(digest)[:_SHORT] if digest else "-"


def _target_text(target: dict[str, Any]) -> str:
    where = f"seq {target['seq']}" if "seq" in target else str(target.get("path"))
    return f"{where} (sha256 {_short(target.get('sha256'))})"


def summarize(entry: Entry) -> str:
    """Return one line saying what an entry records, for ``clinval audit show``."""
    body = entry.body
    kind = entry.kind
    if kind == "key_added":
        endorsed = body.get("endorsement")
        suffix = f", endorsed by key {endorsed['key']}" if isinstance(endorsed, dict) else ""
        return f"key {body.get('key_id')} registered for {body.get('printed_name')}{suffix}"
    if kind == "key_revoked":
        return f"key {body.get('key_id')} revoked: {body.get('reason')}"
    if kind == "esig":
        target = body.get("target") if isinstance(body.get("target"), dict) else {}
        return (
            f"{str(body.get('meaning')).upper()} by {body.get('printed_name')} "
            f"on {_target_text(target)}: {body.get('reason')}"
        )
    if kind == "pipeline_run":
        lock = body.get("dvc_lock") if isinstance(body.get("dvc_lock"), dict) else {}
        outputs = body.get("outputs") if isinstance(body.get("outputs"), list) else []
        return f"dvc.lock sha256 {_short(lock.get('sha256'))}, {len(outputs)} outputs"
    if kind in ("drift_alert", "fairness_alert"):
        return f"alert {body.get('alert_id')} ({body.get('period', '-')}): {body.get('summary', '')}"
    if kind == "data_pull":
        queue = body.get("queue_file") if isinstance(body.get("queue_file"), dict) else {}
        count = body.get("n_records", "?")
        return f"{count} records for review in {queue.get('path')} (alert {body.get('alert_id')})"
    if kind == "retrain":
        return f"candidate {body.get('candidate_id')}: {body.get('modification', '')}"
    if kind == "recovery":
        return (
            f"removed {body.get('torn_bytes')} torn bytes at byte {body.get('truncated_at')}: "
            f"{body.get('reason')}"
        )
    names = ", ".join(f"{name}={value}" for name, value in sorted(body.items())[:3])
    return names


_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem;color:#1b1b1b}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:2rem}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{border:1px solid #c8c8c8;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#f0f0f0}code{font-size:.85rem}
.ok{color:#0a6b2d;font-weight:bold}.bad{color:#a4161a;font-weight:bold}
"""


def _cell(value: Any) -> str:
    return f"<td>{html.escape(str(value))}</td>"


def signoff_html(
    entries: Iterable[Entry],
    *,
    keys: Iterable[RegisteredKey],
    verification: VerifyResult,
    title: str = "Electronic signatures",
) -> str:
    """Render a self-contained sign-off page: every signature, the keys, the trail.

    Each signature shows the printed name, the UTC time and the meaning next to what
    was signed and its digest (21 CFR 11.50). The page embeds no generation time, so
    the same ledger renders to the same bytes.

    Parameters
    ----------
    entries : iterable of Entry
        The ledger entries, in order.
    keys : iterable of RegisteredKey
        Registered keys (for the key table).
    verification : VerifyResult
        The result of verifying the ledger, shown at the top.
    title : str
        Page heading.
    """
    entries = list(entries)
    status_class = "ok" if verification.ok else "bad"
    rows = []
    for entry in entries:
        if entry.kind != "esig":
            continue
        body = entry.body
        target = body.get("target") if isinstance(body.get("target"), dict) else {}
        rows.append(
            "<tr>"
            + _cell(entry.seq)
            + _cell(body.get("printed_name"))
            + _cell(entry.actor)
            + _cell(entry.time)
            + _cell(str(body.get("meaning")).upper())
            + _cell(f"seq {target['seq']}" if "seq" in target else target.get("path"))
            + f"<td><code>{html.escape(str(target.get('sha256')))}</code></td>"
            + _cell(body.get("reason"))
            + "</tr>"
        )
    key_rows = [
        "<tr>"
        + f"<td><code>{html.escape(key.key_id)}</code></td>"
        + _cell(key.user_id)
        + _cell(key.printed_name)
        + _cell(key.added_seq)
        + _cell("active" if key.revoked_seq is None else f"revoked at seq {key.revoked_seq}")
        + "</tr>"
        for key in keys
    ]
    trail = [
        "<tr>"
        + _cell(entry.seq)
        + _cell(entry.time)
        + _cell(entry.kind)
        + _cell(entry.actor)
        + _cell(summarize(entry))
        + "</tr>"
        for entry in entries
    ]
    no_signatures = '<tr><td colspan="8">No electronic signatures yet.</td></tr>'
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
            f"<h1>{html.escape(title)}</h1>",
            f'<p>Ledger verification: <span class="{status_class}">'
            f"{html.escape(str(verification))}</span></p>",
            f"<p>{verification.size} entries; head <code>{html.escape(str(verification.head))}"
            "</code>. Times are UTC.</p>",
            "<h2>Signatures</h2><table><tr><th>Seq</th><th>Printed name</th><th>User id</th>"
            "<th>Signed (UTC)</th><th>Meaning</th><th>Target</th><th>Target SHA-256</th>"
            "<th>Reason</th></tr>",
            *(rows or [no_signatures]),
            "</table>",
            "<h2>Signing keys</h2><table><tr><th>Key id</th><th>User id</th>"
            "<th>Printed name</th><th>Registered at seq</th><th>Status</th></tr>",
            *key_rows,
            "</table>",
            "<h2>Audit trail</h2><table><tr><th>Seq</th><th>Time (UTC)</th><th>Kind</th>"
            "<th>Actor</th><th>What</th></tr>",
            *trail,
            "</table></body></html>",
            "",
        ]
    )
