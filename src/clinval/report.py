"""Pages built from the evidence records: ``reports/index.html``.

The index links every record (``reports/NN_name.html``) with the SHA-256 of its HTML
and JSON files and the one-line status the notebook gave. It is self-contained and
deterministic: the same records give the same bytes.
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path

from clinval import __version__
from clinval._io import atomic_write_text, sha256_file

__all__ = ["collect_records", "write_index"]

_STYLE = """
body { font: 14px/1.5 -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: #222;
       max-width: 1100px; margin: 2em auto; padding: 0 1em; }
h1 { font-size: 22px; margin-bottom: .2em; } p.lead { color: #555; margin-top: 0; }
table { border-collapse: collapse; width: 100%; margin: 1em 0; }
th, td { border-bottom: 1px solid #ddd; padding: 6px 8px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } code { font-size: 11px; color: #555; word-break: break-all; }
.alert { color: #a40000; font-weight: 600; } footer { margin-top: 3em; color: #666; font-size: 12px; }
"""


def collect_records(reports_dir: str | os.PathLike) -> list[dict]:
    """The JSON evidence records in ``reports_dir``, in file-name order (NN_ prefix)."""
    reports_dir = Path(reports_dir)
    records = []
    for path in sorted(reports_dir.glob("[0-9][0-9]_*.json")):
        record = json.loads(path.read_text())
        page = path.with_suffix(".html")
        record["_json"] = path.name
        record["_html"] = page.name if page.exists() else None
        record["_json_sha256"] = sha256_file(path)
        record["_html_sha256"] = sha256_file(page) if page.exists() else None
        records.append(record)
    return records


def write_index(*, reports_dir: str | os.PathLike = "reports", out: str | os.PathLike = "reports/index.html") -> Path:
    """Write the index page and return its path."""
    records = collect_records(reports_dir)
    if not records:
        raise FileNotFoundError(f"{reports_dir}: no evidence records (NN_name.json) to index; run the notebook stages first.")
    rows = []
    for r in records:
        alerts = r.get("alerts") or []
        alert_text = f'<span class="alert">{len(alerts)} alert(s)</span>' if alerts else "no alerts"
        link = f'<a href="{html.escape(r["_html"])}">{html.escape(r.get("title", r["record"]))}</a>' if r["_html"] else html.escape(r["record"])
        rows.append(
            "<tr>"
            f"<td>{link}</td>"
            f"<td>{html.escape(str(r.get('status', '')))}</td>"
            f"<td>{alert_text}</td>"
            f"<td><code>html {r['_html_sha256'] or '—'}</code><br><code>json {r['_json_sha256']}</code></td>"
            "</tr>"
        )
    page = (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<title>clinval evidence index</title>"
        f"<style>{_STYLE}</style></head><body>"
        "<h1>clinval evidence index</h1>"
        "<p class=\"lead\">Each record is a self-contained HTML page showing aggregates only; "
        "its JSON twin holds every number it shows. Digests are SHA-256. Who ran and signed what, and when, "
        "is in the audit ledger (<code>clinval audit show</code>).</p>"
        "<table><thead><tr><th>record</th><th>status</th><th>alerts</th><th>digests</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
        f"<footer>Made by clinval {html.escape(__version__)}.</footer>"
        "</body></html>\n"
    )
    return atomic_write_text(out, page)
