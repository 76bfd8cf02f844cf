"""Shared pieces of the CLI: errors a user can fix, params files, ledger options, signers.

Every command is wrapped in :func:`friendly`: an error in the user's input or a refused
operation prints ``Error: <one paragraph>`` and exits with status 2; an unexpected
internal error says so in one line (set ``CLINVAL_DEBUG=1`` for the traceback).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import yaml

EXIT_ERROR = 2
ENV_DEBUG = "CLINVAL_DEBUG"
DEFAULT_LEDGER = "audit/ledger.jsonl"
DEFAULT_CHECKPOINTS = "audit/checkpoints"
DEFAULT_KEYS_DIR = "audit/keys"

MSG_INTERNAL = "internal error: {kind}: {error} (set {env}=1 for a traceback)"
MSG_NO_INPUT = "no {what} given: enter it at the prompt or set ${env} for non-interactive use"


class UserError(click.ClickException):
    """Bad input or a refused operation: printed as ``Error: ...``, exit status 2."""

    exit_code = EXIT_ERROR


def _expected_errors() -> tuple[type[BaseException], ...]:
    """Exceptions the library raises for bad input or refused operations."""
    from clinval.data import StudyError
    from clinval.evidence import NotebookFailed
    from clinval.ledger import CheckpointError, LedgerError
    from clinval.pccp import ModificationRefused, PlanError
    from clinval.review import GateRefused
    from clinval.signing import SigningError

    return (StudyError, NotebookFailed, LedgerError, SigningError, CheckpointError, PlanError,
            ModificationRefused, GateRefused, FileNotFoundError, FileExistsError, ValueError, KeyError)


def friendly(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn library errors into one-paragraph messages instead of tracebacks."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except _expected_errors() as exc:
            if os.environ.get(ENV_DEBUG):
                raise
            message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
            raise UserError(str(message)) from None
        except OSError as exc:
            where = f" ({exc.filename})" if exc.filename else ""
            raise UserError(f"{exc.strerror or exc}{where}") from None
        except Exception as exc:
            if os.environ.get(ENV_DEBUG):
                raise
            raise UserError(MSG_INTERNAL.format(kind=type(exc).__name__, error=exc, env=ENV_DEBUG)) from None

    return wrapper


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


def ledger_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add --ledger, --checkpoints and --keys-dir, all relative to the current directory."""
    options = [
        click.option("--ledger", "ledger_path", type=click.Path(dir_okay=False, path_type=Path),
                     default=DEFAULT_LEDGER, show_default=True, help="The ledger file."),
        click.option("--checkpoints", "checkpoint_dir", type=click.Path(file_okay=False, path_type=Path),
                     default=DEFAULT_CHECKPOINTS, show_default=True, help="Directory of signed checkpoints (latest.json)."),
        click.option("--keys-dir", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_KEYS_DIR,
                     show_default=True, help="Directory the public keys are exported to."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def open_ledger(ledger_path: Path, checkpoint_dir: Path, keys_dir: Path):
    from clinval.ledger import Ledger

    return Ledger(path=ledger_path, checkpoint_dir=checkpoint_dir, keys_dir=keys_dir)


def ask_passphrase(prompt: str = "Passphrase", *, confirm: bool = False) -> str:
    """Return ``$CLINVAL_PASSPHRASE`` or ask for it with hidden input."""
    from clinval.signing import ENV_PASSPHRASE

    value = os.environ.get(ENV_PASSPHRASE)
    if value:
        return value
    try:
        return click.prompt(prompt, hide_input=True, confirmation_prompt=confirm)
    except click.Abort:
        raise UserError(MSG_NO_INPUT.format(what="passphrase", env=ENV_PASSPHRASE)) from None


def ask_user_id() -> str:
    """Return ``$CLINVAL_USER`` or ask for the user id (first signature component)."""
    from clinval.signing import ENV_USER

    value = os.environ.get(ENV_USER)
    if value:
        return value
    try:
        return click.prompt("User id")
    except click.Abort:
        raise UserError(MSG_NO_INPUT.format(what="user id", env=ENV_USER)) from None


def unlock_signer(ledger=None):
    """Ask for both signature components (21 CFR 11.200(a)) and unlock that user's key.

    With ``ledger``, failed attempts on this user id since its last sign-in are first
    appended to it (``access_failure``, 21 CFR 11.300(d)), signed by the user.
    """
    from clinval.signing import load_signer, record_access_failures

    user_id = ask_user_id()
    signer = load_signer(user_id, passphrase=ask_passphrase(f"Passphrase for {user_id}"))
    if ledger is not None:
        entry = record_access_failures(ledger, signer=signer)
        if entry is not None:
            click.echo(f"seq {entry.seq}: access_failure: {len(entry.body['attempts'])} failed attempt(s) on "
                       f"{user_id} since the last sign-in recorded", err=True)
    return signer
