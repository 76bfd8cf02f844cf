"""Human-readable views of the audit trail: one-line summaries and the sign-off page.

The ledger package verifies; this module only shows. Every text that came from a
ledger entry (a reason, a printed name, a summary) goes through :func:`printable`, so a
newline, a carriage return or a terminal escape in a reason cannot forge a line of
``clinval audit show``; and every printed name is shown with its user id and key id
(:func:`signer_text`), so two people with one name stay two people on paper.
"""

from __future__ import annotations

import html
import unicodedata
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clinval.ledger import Entry, RegisteredKey, VerifyResult

__all__ = ["printable", "signer_text", "signoff_page", "signoff_section", "summarize", "verification_text"]

_SHORT = 12
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}

_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem;color:#1b1b1b}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:2rem}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{border:1px solid #c8c8c8;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#f0f0f0}code{font-size:.85rem}
.ok{color:#0a6b2d;font-weight:bold}.bad{color:#a4161a;font-weight:bold}
"""


def printable(value: Any) -> str:
    """``str(value)`` with every control, format or unassigned character escaped.

    Newlines, carriage returns, ANSI escape sequences and bidirectional overrides come
    out as visible escapes (``\\n``, ``\\x1b``, ``\\u202e``); letters of any script stay.
    """
    text = str(value)
    if text.isprintable():
        return text
    out = []
    for char in text:
        if unicodedata.category(char)[0] in "CZ" and char != " ":
            out.append(_ESCAPES.get(char) or (f"\\x{ord(char):02x}" if ord(char) < 256 else f"\\u{ord(char):04x}"))
        else:
            out.append(char)
    return "".join(out)


def signer_text(printed_name: Any, user_id: Any, key_id: Any) -> str:
    """``Printed Name (user id, key <key id>)``: a name never shown alone."""
    return f"{printable(printed_name)} ({printable(user_id)}, key {printable(key_id)})"


def _short(digest: Any) -> str:
    return printable(digest)[:_SHORT] if digest else "-"


def _target_text(target: dict[str, Any]) -> str:
    where = f"seq {target['seq']}" if "seq" in target else printable(target.get("path"))
    return f"{where} (sha256 {_short(target.get('sha256'))})"


def summarize(entry: Entry) -> str:
    """Return one printable line saying what an entry records, for ``clinval audit show``."""
    return printable(_summary(entry))


def _summary(entry: Entry) -> str:
    body = entry.body
    kind = entry.kind
    if kind == "key_added":
        endorsed = body.get("endorsement")
        suffix = f", endorsed by key {endorsed['key']}" if isinstance(endorsed, dict) else ""
        role = body.get("role", "person")
        return (f"key {body.get('key_id')} registered for {body.get('printed_name')} "
                f"({body.get('user_id')}, {role}){suffix}")
    if kind == "key_revoked":
        return f"key {body.get('key_id')} revoked: {body.get('reason')}"
    if kind == "esig":
        target = body.get("target") if isinstance(body.get("target"), dict) else {}
        return (
            f"{str(body.get('meaning')).upper()} by {signer_text(body.get('printed_name'), entry.actor, entry.key)} "
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
        return (f"candidate {body.get('candidate_id')}: {body.get('modification', '')}, "
                f"{str(body.get('decision', '-')).upper()} under plan sha256 {_short(body.get('plan_sha256'))}")
    if kind == "model_version":
        return f"candidate {body.get('candidate_id')} promoted by {body.get('promoted_by')}"
    if kind == "recovery":
        return (
            f"removed {body.get('torn_bytes')} torn bytes at byte {body.get('truncated_at')}: "
            f"{body.get('reason')}"
        )
    if kind == "access_failure":
        attempts = body.get("attempts") if isinstance(body.get("attempts"), list) else []
        locked = f", locked until {body['locked_until']}" if body.get("locked_until") else ""
        return f"{len(attempts)} failed sign-in attempt(s) for {body.get('user_id')}{locked}: {body.get('reason', '')}"
    return ", ".join(f"{name}={value}" for name, value in sorted(body.items())[:3])


def verification_text(verification: VerifyResult) -> str:
    """The verification verdict and what a reviewer pins: size, head and genesis key."""
    pin = (f"{verification.size} entries; head {verification.head}; genesis key {verification.genesis_key}"
           if verification.size else "no entries")
    return f"{verification} ({pin})"


def _cell(value: Any) -> str:
    return f"<td>{html.escape(printable(value))}</td>"


def _code(value: Any) -> str:
    return f"<td><code>{html.escape(printable(value))}</code></td>"


def signoff_section(
    entries: Iterable[Entry],
    *,
    keys: Iterable[RegisteredKey],
    verification: VerifyResult,
    title: str = "Electronic signatures",
) -> str:
    """Render the sign-off section (an HTML fragment): verdict, signatures, keys, trail.

    Each signature shows the printed name with its user id and key id, the UTC time and
    the meaning next to what was signed and its digest (21 CFR 11.50). Entries from the
    first seq that fails verification on are marked NOT VERIFIED. No generation time is
    embedded, so the same ledger renders to the same bytes.
    """
    entries = list(entries)
    status_class = "ok" if verification.ok else "bad"

    def mark(entry: Entry) -> str:
        return "" if verification.trusted(entry.seq) else " [NOT VERIFIED]"

    rows = []
    for entry in entries:
        if entry.kind != "esig":
            continue
        body = entry.body
        target = body.get("target") if isinstance(body.get("target"), dict) else {}
        rows.append(
            "<tr>" + _cell(f"{entry.seq}{mark(entry)}") + _cell(body.get("printed_name")) + _cell(entry.actor)
            + _code(entry.key) + _cell(entry.time) + _cell(str(body.get("meaning")).upper())
            + _cell(f"seq {target['seq']}" if "seq" in target else target.get("path"))
            + _code(target.get("sha256")) + _cell(body.get("reason")) + "</tr>"
        )
    key_rows = [
        "<tr>" + _code(key.key_id) + _cell(key.user_id) + _cell(key.printed_name) + _cell(key.role)
        + _cell(key.added_seq)
        + _cell("active" if key.revoked_seq is None else f"revoked at seq {key.revoked_seq}") + "</tr>"
        for key in keys
    ]
    trail = [
        "<tr>" + _cell(f"{entry.seq}{mark(entry)}") + _cell(entry.time) + _cell(entry.kind) + _cell(entry.actor)
        + _cell(summarize(entry)) + "</tr>"
        for entry in entries
    ]
    no_signatures = '<tr><td colspan="9">No electronic signatures yet.</td></tr>'
    return "\n".join(
        [
            f"<h1>{html.escape(title)}</h1>",
            f'<p>Ledger verification: <span class="{status_class}">'
            f"{html.escape(printable(verification))}</span></p>",
            f"<p>{verification.size} entries; head <code>{html.escape(str(verification.head))}</code>; "
            f"genesis key <code>{html.escape(str(verification.genesis_key))}</code>. Times are UTC.</p>",
            "<h2>Signatures</h2><table><tr><th>Seq</th><th>Printed name</th><th>User id</th><th>Key id</th>"
            "<th>Signed (UTC)</th><th>Meaning</th><th>Target</th><th>Target SHA-256</th>"
            "<th>Reason</th></tr>",
            *(rows or [no_signatures]),
            "</table>",
            "<h2>Signing keys</h2><table><tr><th>Key id</th><th>User id</th>"
            "<th>Printed name</th><th>Role</th><th>Registered at seq</th><th>Status</th></tr>",
            *key_rows,
            "</table>",
            "<h2>Audit trail</h2><table><tr><th>Seq</th><th>Time (UTC)</th><th>Kind</th>"
            "<th>Actor</th><th>What</th></tr>",
            *trail,
            "</table>",
        ]
    )


def signoff_page(
    entries: Iterable[Entry],
    *,
    keys: Iterable[RegisteredKey],
    verification: VerifyResult,
    title: str = "Electronic signatures",
) -> str:
    """A self-contained HTML page around :func:`signoff_section` (``clinval audit show --html``)."""
    section = signoff_section(entries, keys=keys, verification=verification, title=title)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>\n"
        f"{section}\n</body></html>\n"
    )
