"""Shared pieces of the CLI: reading params files and the errors a user can fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class UserError(Exception):
    """An error in the user's input, shown as one paragraph without a traceback."""


# exceptions the library raises for bad input; the CLI shows their message as is
def user_errors() -> tuple[type[BaseException], ...]:
    from clinval.data import StudyError
    from clinval.evidence import NotebookFailed

    return (StudyError, NotebookFailed, FileNotFoundError, ValueError)


def load_params(path: str | Path) -> dict[str, Any]:
    """Read a params YAML file into a dict, with a clear error naming the file."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: params file not found.")
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise UserError(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', exc)}.") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise UserError(f"{path}: expected a mapping of settings at the top level, got {type(loaded).__name__}.")
    return loaded


class as_user_error:
    """Context manager: re-raise the library's bad-input errors as :class:`UserError`."""

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc is not None and isinstance(exc, user_errors()):
            raise UserError(str(exc).strip("'\"")) from exc
        return False
