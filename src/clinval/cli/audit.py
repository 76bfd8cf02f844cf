"""``clinval audit``, ``clinval keys`` and ``clinval sign``: the Part 11 commands.

Exit codes: 0 success; 1 ``audit verify`` (or ``audit show``) found a problem with the
ledger (it prints ``CODE at seq N: message``); 2 a usage error or a refused operation
(wrong passphrase, locked user id, replayed signature, torn ledger, ...), printed as
``Error: ...``. Set ``CLINVAL_DEBUG=1`` to see a traceback for an unexpected internal error.
"""

from __future__ import annotations

from pathlib import Path

import click

from clinval import layout
from clinval.cli._common import (
    DEFAULT_APPROVALS,
    EXIT_ERROR,
    LazyChoice,
    LazyValue,
    UserError,
    ask_passphrase,
    echo_json,
    format_option,
    friendly,
    ledger_options,
    machine_key,
    open_ledger,
    sorted_choices,
    unlock_signer,
)

__all__ = ["EXIT_ERROR", "EXIT_VERIFY_FAILED", "audit", "keys", "sign"]

EXIT_VERIFY_FAILED = 1

MSG_NO_SIGNER = (
    "no private key for actor {actor!r} on this machine; pass --create-signer (uses "
    "${env}) or run `clinval keys init --id {actor} --name \"...\"`"
)
MSG_NOTHING_NEW = "nothing new to record: this run is already in the ledger ({size} entries)"
MSG_NOT_TORN = "nothing to recover: the ledger does not end in an incomplete line"
MSG_NAME_DIFFERS = "the key of {user!r} on this machine is for {stored!r}, not {given!r}"
MSG_NO_ENDORSER_INPUT = "the endorser's passphrase must be typed at the prompt"
MSG_CANNOT_RECOVER = "the ledger has a problem recover cannot fix: {result}"
MSG_OUTSIDE_ROOT = "target {target} is outside the root {root}"
MSG_ALREADY_REGISTERED = "key {key} of {user!r} is already registered (seq {seq})"
MSG_NO_LEDGER = "no ledger at {path}: nothing to show (pass --ledger, or run `clinval audit record` first)"
MSG_WITNESS_FAILED = "the ledger fails verification ({result}); a witness cosigns only a ledger that verifies"
MSG_WITNESS_IS_GENESIS = (
    "{user!r} holds the genesis key of this ledger; a witness must be someone who cannot rebuild it"
)
MSG_NOT_LOCKED = "{user!r} has no failed attempts or lock on this machine's key store"
MSG_TRUST_HELP = (
    "A trust root kept off-system (written by `clinval audit witness`): the ledger must start "
    "from its genesis key and extend every head it pins."
)


PIPELINE_ACTOR = LazyValue("clinval.signing", "PIPELINE_ACTOR")
PIPELINE_NAME = LazyValue("clinval.signing", "PIPELINE_NAME")


class _VerifyCommand(click.Command):
    """``audit verify``: its help ends with the ledger's error codes, read when the help is shown."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        from clinval.ledger import ERROR_CODES

        with formatter.section("Error codes"):
            formatter.write_dl([(str(code), meaning) for code, meaning in ERROR_CODES.items()])
        super().format_epilog(ctx, formatter)


# -- clinval audit -----------------------------------------------------------------
@click.group()
def audit() -> None:
    """The audit trail: record pipeline runs, verify, show and recover the ledger.

    The ledger (audit/ledger.jsonl) is append-only, hash-chained and signed; see
    docs/ledger.md for its format and error codes.
    """


# paths the ledger records as given, relative to --root: kept as text, shown as FILE/DIRECTORY like every path
_RELATIVE_FILE = click.Path(dir_okay=False)
_RELATIVE_DIR = click.Path(file_okay=False)


@audit.command()
@click.option(
    "--root",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=".",
    show_default=True,
    help="Repository root; dvc.lock, reports and recorded paths are relative to it.",
)
@click.option("--dvc-lock", type=_RELATIVE_FILE, default="dvc.lock", show_default=True, help="DVC lock file, relative to --root.")
@click.option("--reports", "reports_dir", type=_RELATIVE_DIR, default=layout.REPORTS, show_default=True, help="Directory of evidence records (*.json), relative to --root.")
@click.option("--actor", default=PIPELINE_ACTOR, show_default=True, help="User id of the recording signer.")
@click.option("--printed-name", default=PIPELINE_NAME, show_default=True, help="Printed name used if --create-signer creates the key.")
@click.option(
    "--create-signer",
    is_flag=True,
    help="If this machine has no key for --actor, create one non-interactively with $CLINVAL_PASSPHRASE.",
)
@click.option("--approvals", type=_RELATIVE_DIR, default=DEFAULT_APPROVALS, show_default=True,
              help="The approval cache, rebuilt from the verified ledger after recording (relative to --root).")
@ledger_options
@friendly
def record(
    root: Path,
    dvc_lock: str,
    reports_dir: str,
    actor: str,
    printed_name: str,
    create_signer: bool,
    approvals: str,
    ledger_path: Path,
    checkpoint_dir: Path,
    keys_dir: Path,
) -> None:
    """Append what the last `dvc repro` produced, once per distinct run.

    Records the dvc.lock digest and every stage output's digest (pipeline_run), each
    new alert in reports/*.json (drift_alert or fairness_alert) with its review-queue
    pull (data_pull), and each new retraining candidate (retrain). Recording an
    unchanged run appends nothing. On an empty ledger the signer's key is registered
    first, as the genesis entry, with the role of a machine identity (it can never sign
    a decision or a promotion). Refuses, recording nothing, when an output differs from
    its md5 in dvc.lock. Then rebuilds the approval cache from the verified ledger.
    """
    from clinval.ledger import record_run
    from clinval.review import sync_approvals, trusted_entries
    from clinval.signing import private_key_path, record_access_failures
    from clinval.signoff import printable, summarize

    signer, created = machine_key(actor, printed_name=printed_name, create=create_signer, no_signer=MSG_NO_SIGNER)
    if created:
        click.echo(f"created signing key {signer.key_id} for {actor!r} at {private_key_path(actor)}")
    ledger = open_ledger(ledger_path, checkpoint_dir, keys_dir)
    record_access_failures(ledger, signer=signer)
    result = record_run(ledger, signer=signer, root=root, dvc_lock=dvc_lock, reports_dir=reports_dir)
    for warning in result.warnings:
        click.echo(f"warning: {printable(warning)}", err=True)
    if not result.appended:
        click.echo(MSG_NOTHING_NEW.format(size=len(ledger)))
    for entry in result.appended:
        click.echo(f"seq {entry.seq}: {entry.kind}: {summarize(entry)}")
    entries, verification = trusted_entries(ledger)
    if verification.ok:
        synced = sync_approvals(entries, approvals_dir=root / approvals)
        if synced.removed or synced.written:
            click.echo(f"approval cache {approvals}: {len(synced.written)} written, removed (not in the ledger): "
                       f"{', '.join(synced.removed) or 'none'}")
    else:
        click.echo(f"warning: the ledger fails verification ({verification}); approval cache not rebuilt", err=True)


@audit.command(name="verify", cls=_VerifyCommand)
@click.option("--deep", is_flag=True, help="Also re-hash every file the ledger refers to (latest record per path).")
@click.option(
    "--checkpoint",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="A checkpoint kept from earlier; proves the ledger only grew since. "
    "Default: <checkpoints>/latest.json if it exists.",
)
@click.option(
    "--root",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=".",
    show_default=True,
    help="Directory recorded paths are relative to (for --deep).",
)
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Processes for signature checks (default: all CPUs for large ledgers).")
@click.option("--trust", type=click.Path(dir_okay=False, path_type=Path), default=None, help=MSG_TRUST_HELP)
@ledger_options
@friendly
def verify_command(
    deep: bool,
    checkpoint: Path | None,
    root: Path,
    workers: int | None,
    trust: Path | None,
    ledger_path: Path,
    checkpoint_dir: Path,
    keys_dir: Path,
) -> None:
    """Check the whole ledger offline; exit 1 with `CODE at seq N: message` on failure.

    Checks that every line is canonical JSON, chains to the previous line, carries a
    valid signature by a key active at its seq, and obeys the key and signature rules;
    that the ledger extends the checkpoint and the --trust root; that audit/keys/ holds
    exactly the registered keys; with --deep, that recorded files still have their
    recorded digests. A problem with the ledger is reported before any file problem,
    then the failure with the lowest seq.
    """
    if not ledger_path.exists():
        click.echo(f"warning: {ledger_path} does not exist; verifying an empty ledger", err=True)
    result = _verify(ledger_path, checkpoint, checkpoint_dir, trust, keys_dir, deep=deep, root=root, workers=workers)
    click.echo(str(result))
    if result.ok and result.checkpoint is not None:
        click.echo(f"checkpoint: the ledger extends its {result.checkpoint.size} entries")
    if result.ok and result.trust is not None:
        click.echo(f"trust root {trust}: genesis key {result.trust.genesis_key} and "
                   f"{len(result.trust.heads)} pinned head(s) hold")
    if result.ok and deep:
        click.echo(f"{result.files_checked} recorded files re-hashed and unchanged")
    if result.ok and result.size:
        click.echo(f"pin: size {result.size}, head {result.head}, genesis key {result.genesis_key}")
    if not result.ok:
        raise click.exceptions.Exit(EXIT_VERIFY_FAILED)


def _verify(ledger_path: Path, checkpoint: Path | None, checkpoint_dir: Path, trust: Path | None, keys_dir: Path,
            **options):
    """``verify`` with the local checkpoint (unless one is given) and the key export when present."""
    from clinval.ledger import CHECKPOINT_FILE, verify

    if checkpoint is None and (checkpoint_dir / CHECKPOINT_FILE).exists():
        checkpoint = checkpoint_dir / CHECKPOINT_FILE
    return verify(ledger_path, checkpoint=checkpoint, trust=trust,
                  keys_dir=keys_dir if keys_dir.is_dir() else None, **options)


@audit.command()
@click.option("--trust", "trust_path", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The trust root to create or extend; keep it off this system (QA's own storage).")
@ledger_options
@friendly
def witness(trust_path: Path, ledger_path: Path, checkpoint_dir: Path, keys_dir: Path) -> None:
    """Cosign the ledger's current head with your key, as an independent witness (QA).

    Verifies the whole ledger (against the local checkpoint and TRUST if it exists), then
    signs its size, head and genesis key with your key from this machine's key store and
    writes the cosigned head into TRUST. Keep TRUST outside the repository: with it,
    `clinval audit verify --trust TRUST` detects a ledger rebuilt from scratch
    (UNTRUSTED_ROOT) or rewritten (INCONSISTENT) or cut (TRUNCATED) since. Your key need
    not be registered in the ledger (better: it is not); it may not be its genesis key.
    """
    from clinval.ledger import TrustRoot, cosign, read_trust_root, write_trust_root
    from clinval.signoff import signer_text

    existing = trust_path if trust_path.exists() else None
    result = _verify(ledger_path, None, checkpoint_dir, existing, keys_dir)
    if not result.ok or not result.size:
        raise UserError(MSG_WITNESS_FAILED.format(result=result))
    signer = unlock_signer()
    if signer.key_id == result.genesis_key:
        raise UserError(MSG_WITNESS_IS_GENESIS.format(user=signer.user_id))
    root = result.trust or TrustRoot(genesis_key=str(result.genesis_key))
    pinned_by, cosignature = cosign(genesis_key=root.genesis_key, size=result.size, head=str(result.head), signer=signer)
    updated = root.with_cosigned_head(size=result.size, head=str(result.head), witness=pinned_by, cosignature=cosignature)
    write_trust_root(trust_path, updated)
    read_trust_root(trust_path)
    click.echo(f"witnessed by {signer_text(signer.printed_name, signer.user_id, signer.key_id)}: size {result.size}, "
               f"head {result.head}, genesis key {result.genesis_key}; wrote {trust_path} "
               f"({len(updated.heads)} pinned head(s)). Keep it off this system.")




@audit.command()
@click.option("--kind", type=LazyChoice(sorted_choices("clinval.ledger", "KINDS")), default=None,
              help="Show only entries of this kind.")
@click.option(
    "--html",
    "html_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write a self-contained sign-off page (printed name, user id, key, UTC time, meaning of every signature) to this file.",
)
@click.option("--checkpoint", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="A checkpoint kept from earlier (default: <checkpoints>/latest.json if it exists).")
@click.option("--trust", type=click.Path(dir_okay=False, path_type=Path), default=None, help=MSG_TRUST_HELP)
@format_option("text", "json")
@ledger_options
@friendly
def show(
    kind: str | None,
    html_path: Path | None,
    checkpoint: Path | None,
    trust: Path | None,
    output_format: str,
    ledger_path: Path,
    checkpoint_dir: Path,
    keys_dir: Path,
) -> None:
    """Print the audit trail, one entry per line: seq, UTC time, kind, actor, what.

    The first line is the verification verdict, with the same checks as `audit verify`
    (checkpoint, trust root); entries from the first bad seq on are marked NOT VERIFIED,
    and the command exits 1 when the ledger fails. Text from entries is printed with
    control characters escaped, so no reason can forge a line. --format json prints
    the verdict and every entry (with its body) as one JSON document instead.
    """
    from clinval.ledger import LedgerError
    from clinval.signoff import signoff_page, summarize, verification_text

    if not ledger_path.exists():
        raise UserError(MSG_NO_LEDGER.format(path=ledger_path))
    verification = _verify(ledger_path, checkpoint, checkpoint_dir, trust, keys_dir)
    ledger = open_ledger(ledger_path, checkpoint_dir, keys_dir)
    entries: list = []
    try:
        entries.extend(ledger.entries())
        registered = ledger.registered_keys()
    except LedgerError:
        registered = []  # a damaged line: show what can be read; the verdict names the damage
    shown = [entry for entry in entries if kind is None or entry.kind == kind]
    if html_path is not None:
        page = signoff_page(entries, keys=registered, verification=verification)
        html_path.parent.mkdir(parents=True, exist_ok=True)
        html_path.write_text(page, encoding="utf-8")
        click.echo(f"wrote sign-off page {html_path}", err=output_format == "json")
    if output_format == "json":
        echo_json({
            "verification": {"ok": verification.ok, "code": verification.code and str(verification.code),
                             "seq": verification.seq, "message": verification.message, "size": verification.size,
                             "head": verification.head, "genesis_key": verification.genesis_key},
            "entries": [{"seq": e.seq, "time": e.time, "kind": e.kind, "actor": e.actor, "key": e.key,
                         "summary": summarize(e), "verified": verification.trusted(e.seq), "body": e.body}
                        for e in shown],
        })
    elif html_path is None:
        click.echo(f"ledger: {verification_text(verification)}")
        for entry in shown:
            mark = "" if verification.trusted(entry.seq) else "  [NOT VERIFIED]"
            click.echo(f"{entry.seq:>6}  {entry.time}  {entry.kind:<14}  {entry.actor:<12}  {summarize(entry)}{mark}")
    if not verification.ok:
        click.echo(f"Error: the ledger fails verification: {verification}", err=True)
        raise click.exceptions.Exit(EXIT_VERIFY_FAILED)


@audit.command()
@click.option("--reason", default="interrupted append (torn tail)", show_default=True, help="Why the tail is being removed; recorded in the recovery entry.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@ledger_options
@friendly
def recover(reason: str, yes: bool, ledger_path: Path, checkpoint_dir: Path, keys_dir: Path) -> None:
    """Remove an incomplete last line left by a crash, and log a recovery entry.

    Only a torn tail (a final line without its newline) is ever removed; its bytes are
    kept in the recovery entry. Asks for your user id and passphrase to sign it.
    Refuses if the local checkpoint vouches for the incomplete entry.
    """
    from clinval.ledger import verify
    from clinval.signoff import summarize

    result = verify(ledger_path)
    if result.ok or result.code != "TORN_TAIL":
        if result.ok:
            click.echo(MSG_NOT_TORN)
            return
        raise UserError(MSG_CANNOT_RECOVER.format(result=result))
    click.echo(str(result))
    if not yes:
        click.confirm("Truncate the incomplete line and record a recovery entry?", abort=True)
    signer = unlock_signer()
    entry = open_ledger(ledger_path, checkpoint_dir, keys_dir).recover(signer=signer, reason=reason)
    if entry is None:
        click.echo(MSG_NOT_TORN)
        return
    click.echo(f"seq {entry.seq}: recovery: {summarize(entry)}")


# -- clinval keys ------------------------------------------------------------------
@click.group()
def keys() -> None:
    """Signing keys: create and register, revoke, list.

    Private keys live outside the repository in the user's key store
    ($CLINVAL_HOME/keys or the user config directory), encrypted with a passphrase;
    public keys are registered in the ledger and exported to audit/keys/.
    """


@keys.command(name="init")
@click.option("--id", "user_id", required=True, help="Your unique user id (e.g. jsmith).")
@click.option("--name", "printed_name", required=True, help="Your printed name, shown with every signature.")
@click.option(
    "--endorse-by",
    default=None,
    help="User id whose key endorses this one; needed when the user id already has a "
    "registered key (the same user's active key or the genesis key).",
)
@click.option("--role", type=LazyChoice(LazyValue("clinval.ledger", "ROLES")), default="person", show_default=True,
              help="A person signs decisions and promotions; a machine identity records pipeline runs.")
@ledger_options
@friendly
def keys_init(
    user_id: str,
    printed_name: str,
    endorse_by: str | None,
    role: str,
    ledger_path: Path,
    checkpoint_dir: Path,
    keys_dir: Path,
) -> None:
    """Create your Ed25519 key (passphrase-protected) and register it in the ledger.

    The passphrase is read from $CLINVAL_PASSPHRASE or asked twice. If this machine
    already has your key, it is unlocked and registered in this ledger instead. On an
    empty ledger the key becomes the genesis key.
    """
    from clinval.ledger import register_key
    from clinval.signing import create_key, has_private_key, load_signer, private_key_path
    from clinval.signoff import summarize

    ledger = open_ledger(ledger_path, checkpoint_dir, keys_dir)
    if has_private_key(user_id):
        signer = load_signer(user_id, passphrase=ask_passphrase(f"Passphrase for {user_id}"))
        if signer.printed_name != printed_name:
            raise UserError(
                MSG_NAME_DIFFERS.format(user=user_id, stored=signer.printed_name, given=printed_name)
            )
        for key in ledger.registered_keys():
            if key.key_id == signer.key_id:
                raise UserError(
                    MSG_ALREADY_REGISTERED.format(key=key.key_id, user=user_id, seq=key.added_seq)
                )
    else:
        signer = create_key(
            user_id=user_id,
            printed_name=printed_name,
            passphrase=ask_passphrase("New passphrase", confirm=True),
        )
        click.echo(f"created key {signer.key_id} at {private_key_path(user_id)}")
    endorser = None
    if endorse_by is not None:
        try:
            endorser_passphrase = click.prompt(f"Passphrase for {endorse_by}", hide_input=True)
        except click.Abort:
            raise UserError(MSG_NO_ENDORSER_INPUT) from None
        endorser = load_signer(endorse_by, passphrase=endorser_passphrase)
    entry = register_key(ledger, signer=signer, endorser=endorser, role=role)
    click.echo(f"seq {entry.seq}: key_added: {summarize(entry)}")


@keys.command(name="revoke")
@click.argument("key_id")
@click.option("--reason", required=True, help="Why the key is revoked (lost, left the organisation, ...).")
@ledger_options
@friendly
def keys_revoke(key_id: str, reason: str, ledger_path: Path, checkpoint_dir: Path, keys_dir: Path) -> None:
    """Revoke KEY_ID: nothing it signs after this entry counts.

    Signed by the key itself or by the genesis key: asks for that user id and
    passphrase ($CLINVAL_USER / $CLINVAL_PASSPHRASE when set).
    """
    from clinval.ledger import revoke_key
    from clinval.signoff import summarize

    ledger = open_ledger(ledger_path, checkpoint_dir, keys_dir)
    signer = unlock_signer(ledger)
    entry = revoke_key(ledger, key_id=key_id, reason=reason, signer=signer)
    click.echo(f"seq {entry.seq}: key_revoked: {summarize(entry)}")


@keys.command(name="unlock")
@click.argument("user_id")
@click.option("--reason", required=True, help="Why the user id is unlocked (identity confirmed how, by whom).")
@ledger_options
@friendly
def keys_unlock(user_id: str, reason: str, ledger_path: Path, checkpoint_dir: Path, keys_dir: Path) -> None:
    """Unlock USER_ID after too many wrong passphrases (21 CFR 11.300(d)).

    Signed by the ledger administrator (the genesis key: asks for that user id and
    passphrase). Appends the user's failed and refused attempts to the ledger as an
    access_failure entry, then lifts the lock in this machine's key store.
    """
    from clinval.signing import record_access_failures
    from clinval.signoff import summarize

    ledger = open_ledger(ledger_path, checkpoint_dir, keys_dir)
    admin = unlock_signer(ledger)
    entry = record_access_failures(ledger, signer=admin, user_id=user_id, reason=f"unlocked by {admin.user_id}: {reason}")
    if entry is None:
        raise UserError(MSG_NOT_LOCKED.format(user=user_id))
    click.echo(f"seq {entry.seq}: access_failure: {summarize(entry)}")


@keys.command(name="list")
@format_option("text", "json")
@ledger_options
@friendly
def keys_list(output_format: str, ledger_path: Path, checkpoint_dir: Path, keys_dir: Path) -> None:
    """List the keys the ledger registered, their status, and which are on this machine."""
    from clinval.signing import has_private_key
    from clinval.signoff import printable

    registered = open_ledger(ledger_path, checkpoint_dir, keys_dir).registered_keys()
    genesis = registered[0].key_id if registered else None
    rows = [{"key_id": key.key_id, "user_id": key.user_id, "printed_name": key.printed_name, "role": key.role,
             "added_seq": key.added_seq, "revoked_seq": key.revoked_seq, "endorsed_by": key.endorsed_by,
             "genesis": key.key_id == genesis, "private_key_on_this_machine": has_private_key(key.user_id)}
            for key in registered]
    if output_format == "json":
        echo_json(rows)
        return
    if not rows:
        click.echo("no keys registered")
        return
    for row in rows:
        status = "active" if row["revoked_seq"] is None else f"revoked@{row['revoked_seq']}"
        notes = ["genesis"] if row["genesis"] else []
        if row["endorsed_by"]:
            notes.append(f"endorsed by {row['endorsed_by']}")
        if row["private_key_on_this_machine"]:
            notes.append("private key on this machine")
        click.echo(
            f"{row['key_id']}  {row['user_id']:<12}  {printable(row['printed_name']):<24}  {row['role']:<7}  "
            f"added@{row['added_seq']:<5}  {status:<12}  {', '.join(notes)}".rstrip()
        )


# -- clinval sign --------------------------------------------------------------------
@click.command()
@click.option("--meaning", type=LazyChoice(LazyValue("clinval.ledger", "MEANINGS")), required=True,
              help="What your signature means.")
@click.option("--target", required=True, help="What you sign: a ledger seq (e.g. 12) or a path relative to --root.")
@click.option("--reason", required=True, help="Why you sign, in your words; recorded with the signature.")
@click.option(
    "--root",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=".",
    show_default=True,
    help="Repository root that a path --target is relative to.",
)
@ledger_options
@friendly
def sign(
    meaning: str,
    target: str,
    reason: str,
    root: Path,
    ledger_path: Path,
    checkpoint_dir: Path,
    keys_dir: Path,
) -> None:
    """Sign a ledger entry or a file electronically (21 CFR Part 11).

    Asks for your user id and passphrase ($CLINVAL_USER / $CLINVAL_PASSPHRASE when
    set), binds the signature to the SHA-256 of the target so it cannot be moved, and
    records your printed name, the UTC time and the meaning. Signing the same target
    with the same meaning twice is refused.
    """
    from clinval.signing import digest_of_target, esign
    from clinval.signoff import signer_text

    ledger = open_ledger(ledger_path, checkpoint_dir, keys_dir)
    target_ref = _relative_target(target, root)
    digest = digest_of_target(ledger, target_ref, root=root)
    click.echo(f"signing {target_ref} (sha256 {digest}) as {meaning.upper()}")
    signer = unlock_signer(ledger)
    entry = esign(
        ledger, signer=signer, target_ref=target_ref, target_digest=digest, meaning=meaning, reason=reason
    )
    click.echo(
        f"seq {entry.seq}: {meaning.upper()} by {signer_text(signer.printed_name, signer.user_id, signer.key_id)} "
        f"at {entry.time}"
    )


def _relative_target(target: str, root: Path) -> str:
    """Turn an existing path given relative to the shell or absolute into one under ``root``."""
    if target.isdigit() or target.startswith("seq:"):
        return target
    candidate = Path(target)
    if candidate.is_absolute() or candidate.exists():
        try:
            return candidate.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            raise UserError(MSG_OUTSIDE_ROOT.format(target=target, root=root)) from None
    return candidate.as_posix()

