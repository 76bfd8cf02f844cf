"""Shared pieces of the CLI: errors a user can fix, params files, ledger options, signers.

Every command is wrapped in :func:`friendly`: an error clinval raises on purpose
(:class:`clinval.errors.ClinvalError`: bad input, a refused operation, a damaged ledger) or
a missing or clashing file prints ``Error: <one paragraph>`` and exits with status 2; any
other exception is a bug in clinval and prints one ``internal error`` line with exit status
70 (set ``CLINVAL_DEBUG=1`` for the traceback).

The command starts in a fraction of a second because this module and every module of
``clinval.cli`` import only click and the standard library at the top: a command imports
pandas, scipy or the ledger in its body, when it runs. Values a decorator needs from a heavy
module are read lazily (:class:`LazyValue`, :class:`LazyChoice`);
``tests/test_cli_startup.py`` keeps it so.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import click

from clinval import layout
from clinval.errors import ClinvalError

EXIT_ERROR = 2
EXIT_INTERNAL = 70
"""Exit status of a bug in clinval (``EX_SOFTWARE`` of sysexits.h), never confused with a user error."""
ENV_DEBUG = "CLINVAL_DEBUG"
DEFAULT_STUDY = layout.STUDY
DEFAULT_PLAN = layout.PLAN
DEFAULT_APPROVALS = layout.APPROVALS
DEFAULT_LEDGER = layout.LEDGER
DEFAULT_CHECKPOINTS = layout.CHECKPOINTS
DEFAULT_KEYS_DIR = layout.KEYS

MSG_INTERNAL = "internal error: {kind}: {error} (a bug in clinval; set {env}=1 for a traceback)"
MSG_NO_INPUT = "no {what} given: enter it at the prompt or set ${env} for non-interactive use"
MSG_FORMAT_CLASH = "--json asks for JSON but --format asks for {chosen}: give one of them."

USER_ERRORS: tuple[type[BaseException], ...] = (
    ClinvalError, FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError, NotADirectoryError,
)
"""What a person can fix: clinval's own errors and a path that is missing, taken or not allowed."""


PARAMS_FILE = click.Path(dir_okay=False, path_type=Path)
"""A params YAML; :func:`load_params` names it when it is missing or malformed."""
EXISTING_DIR = click.Path(file_okay=False, exists=True, path_type=Path)
"""A folder the command reads (a pipeline output): it must exist."""
OUTPUT_DIR = click.Path(file_okay=False, path_type=Path)
"""A folder the command writes or reads if present."""
OUTPUT_FILE = click.Path(dir_okay=False, path_type=Path)
"""A file the command writes."""


class UserError(click.ClickException):
    """Bad input or a refused operation: printed as ``Error: ...``, exit status 2."""

    exit_code = EXIT_ERROR


class InternalError(click.ClickException):
    """A bug in clinval: one line on stderr, exit status :data:`EXIT_INTERNAL`."""

    exit_code = EXIT_INTERNAL

    def show(self, file: Any = None) -> None:
        click.echo(self.format_message(), file=file, err=file is None)


def _user_message(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:  # raised by the OS: name the path it concerns
        where = f"{error.filename}: " if error.filename else ""
        return f"{where}{error.strerror}"
    return str(error)


def friendly(command: Callable[..., Any]) -> Callable[..., Any]:
    """Print clinval's own errors as one paragraph (exit 2) and anything else as an internal error."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except USER_ERRORS as exc:
            if os.environ.get(ENV_DEBUG):
                raise
            raise UserError(_user_message(exc)) from None
        except Exception as exc:
            if os.environ.get(ENV_DEBUG):
                raise
            raise InternalError(MSG_INTERNAL.format(kind=type(exc).__name__, error=exc, env=ENV_DEBUG)) from None

    wrapper.friendly = True  # tests/test_cli_errors.py checks that every command carries it
    return wrapper


# -- values from heavy modules, read when a command runs or shows its own help ----------
class LazyValue:
    """``module.name``, imported when first used (as an option's default, or by ``str()`` in --help).

    click calls a callable default to get the value and prints ``str()`` of it in the
    option's help, so the module is imported only when the command runs or shows its help.
    """

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name

    def __call__(self) -> Any:
        return getattr(importlib.import_module(self.module), self.name)

    def __str__(self) -> str:
        return str(self())


class LazyChoice(click.Choice):
    """A :class:`click.Choice` whose choices come from a heavy module, read when first needed."""

    def __init__(self, choices: Callable[[], Iterable[str]], *, case_sensitive: bool = True) -> None:
        self._load = choices
        self._choices: tuple[str, ...] | None = None
        self.case_sensitive = case_sensitive

    @property
    def choices(self) -> tuple[str, ...]:  # type: ignore[override]
        if self._choices is None:
            self._choices = tuple(self._load())
        return self._choices

    @choices.setter
    def choices(self, value: Iterable[str]) -> None:
        self._choices = tuple(value)


def sorted_choices(module: str, name: str) -> Callable[[], list[str]]:
    """The sorted members of ``module.name``, for :class:`LazyChoice`."""
    return lambda: sorted(LazyValue(module, name)())


# -- output -------------------------------------------------------------------------------
def format_option(*formats: str, default: str | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--format`` with these choices (the first is the default), and ``--json`` for ``--format json``.

    Machine formats go to stdout alone; notes go to stderr. The command receives
    ``output_format`` only.
    """
    choice = click.option("--format", "output_format", type=click.Choice(formats), default=default or formats[0],
                          show_default=True, help="What to print on stdout: " + ", ".join(formats) + ".")
    if "json" not in formats:
        return choice

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(command)  # keeps the `friendly` mark of the command
        def with_json_flag(*args: Any, as_json: bool = False, **kwargs: Any) -> Any:
            if as_json:
                source = click.get_current_context().get_parameter_source("output_format")
                if source == click.core.ParameterSource.COMMANDLINE and kwargs["output_format"] != "json":
                    raise UserError(MSG_FORMAT_CLASH.format(chosen=kwargs["output_format"]))
                kwargs["output_format"] = "json"
            return command(*args, **kwargs)

        flag = click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout (same as --format json).")
        return choice(flag(with_json_flag))

    return decorate


def echo_json(value: Any) -> None:
    """Print ``value`` as indented JSON (no NaN) on stdout."""
    click.echo(json.dumps(value, indent=2, allow_nan=False, ensure_ascii=False))


def load_params(path: str | Path) -> dict[str, Any]:
    """Read a params YAML file into a dict, with a clear error naming the file."""
    import yaml

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


MSG_CREATE_NEEDS_PASSPHRASE = "--create-signer runs non-interactively and needs the passphrase in ${env}"


def machine_key(actor: str, *, printed_name: str, create: bool, no_signer: str):
    """Unlock the machine identity ``actor``'s key, or with ``create`` make it from
    ``$CLINVAL_PASSPHRASE`` (non-interactive). Returns ``(signer, created)``;
    ``no_signer`` (with ``{actor}`` and ``{env}``) is the error when there is no key to use."""
    from clinval.signing import ENV_PASSPHRASE, create_key, has_private_key, load_signer

    if has_private_key(actor):
        return load_signer(actor, passphrase=ask_passphrase(f"Passphrase for {actor}")), False
    if not create:
        raise UserError(no_signer.format(actor=actor, env=ENV_PASSPHRASE))
    passphrase = os.environ.get(ENV_PASSPHRASE)
    if not passphrase:
        raise UserError(MSG_CREATE_NEEDS_PASSPHRASE.format(env=ENV_PASSPHRASE))
    return create_key(user_id=actor, printed_name=printed_name, passphrase=passphrase), True


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
