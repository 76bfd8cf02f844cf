"""Words every layer shares, defined once: the reference period's name and the status of a
result that could be computed.

Imports nothing, so the serving process and the CLI can use it without pandas.
"""

from __future__ import annotations

__all__ = ["REFERENCE", "STATUS_OK"]

REFERENCE = "reference"
"""The period label of the reference rows (the locked model's data), in every table and log."""

STATUS_OK = "ok"
"""``status`` of an estimate or test that could be computed; otherwise the status says why not
(``"insufficient data: ..."``, labels pending)."""
