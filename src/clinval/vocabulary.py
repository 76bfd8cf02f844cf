"""Words every layer shares, defined once: the reference period's name and the status of a
result that could be computed.

Imports nothing, so the serving process and the CLI can use it without pandas.
"""

from __future__ import annotations

__all__ = ["REFERENCE", "STATUS_OK", "category_key"]

REFERENCE = "reference"
"""The period label of the reference rows (the locked model's data), in every table and log."""

STATUS_OK = "ok"
"""``status`` of an estimate or test that could be computed; otherwise the status says why not
(``"insufficient data: ..."``, labels pending)."""


def category_key(value: object) -> tuple:
    """Sort key of category levels: numeric codes in numeric order (1, 2, 10, not 1, 10, 2),
    before any other level in text order; the type name keeps the order total across dtypes."""
    text = str(value)
    try:
        number = float(text)
    except ValueError:
        return (1, 0.0, text, type(value).__name__)
    if number != number:  # NaN sorts with text
        return (1, 0.0, text, type(value).__name__)
    return (0, number, text, type(value).__name__)
