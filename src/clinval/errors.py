"""The errors clinval raises on purpose.

Every error the package raises for a reason a person can act on derives from
:class:`ClinvalError`: a study, plan or params file that cannot be used, a refused
signature or decision, a damaged ledger, a notebook that failed. The ``clinval`` command
prints those as one paragraph and exits with status 2; any other exception is a bug in
clinval and is reported as an internal error (``clinval.cli._common.friendly``).

:class:`InputError` is the one to raise for bad input (params files, command-line
arguments, data files); it is also a :class:`ValueError`, so callers that caught
``ValueError`` keep working. :class:`MissingInputError` (also a :class:`KeyError`) and
:class:`InputTypeError` (also a :class:`TypeError`) replace the library's former
``KeyError`` and ``TypeError`` raises for bad data in the same way. Module-specific errors
(``StudyError``, ``LedgerError``, ...) subclass one of these and keep their own bases.

This module imports nothing, so anything may import it.
"""

from __future__ import annotations

__all__ = ["ClinvalError", "InputError", "InputTypeError", "MissingInputError"]


class ClinvalError(Exception):
    """Base of every error clinval raises deliberately; its message is for a person."""

    def __str__(self) -> str:  # the message as given, even where a KeyError base would quote it
        return Exception.__str__(self)


class InputError(ClinvalError, ValueError):
    """Bad input a user can fix (a params file, an argument, a data file); the message says which."""


class MissingInputError(InputError, KeyError):
    """A column, period or key the input should hold and does not; also a :class:`KeyError`."""


class InputTypeError(InputError, TypeError):
    """Input of the wrong kind (text where numbers are needed); also a :class:`TypeError`."""
