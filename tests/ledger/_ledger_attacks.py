"""What an attacker does to the files: one function per ``attack.op`` in cases/*.json.

Attacks work on bytes. Where an attacker holds a key (their own, or a revoked one),
they sign with the same encoding the ledger uses (``seal``), bypassing every rule the
writer would enforce, so only ``verify`` stands in the way.
"""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path
from typing import Any, Callable

from clinval.ledger import Ledger, path_sha256
from clinval.ledger._encoding import b64encode, canonical, sha256_hex, utc_now
from clinval.ledger._entry import seal
from clinval.ledger._keys import key_added_body, key_export
from clinval.signing import Signer

ATTACKS: dict[str, Callable[..., None]] = {}


def attack(function: Callable[..., None]) -> Callable[..., None]:
    ATTACKS[function.__name__] = function
    return function


def _write_lines(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(line + b"\n" for line in lines))


def raw_append(path: Path, signer: Signer, kind: str, body: dict[str, Any], **override: Any) -> bytes:
    """Append a correctly chained entry signed by ``signer``, with no rule checks."""
    lines = path.read_bytes().split(b"\n")[:-1]
    unsigned = {
        "actor": signer.user_id,
        "body": body,
        "key": signer.key_id,
        "kind": kind,
        "prev": sha256_hex(lines[-1]),
        "seq": len(lines),
        "time": utc_now(),
        **override,
    }
    line = seal(unsigned, signer.sign)
    with open(path, "ab") as handle:
        handle.write(line + b"\n")
    return line


@attack
def replace_bytes(s, *, seq: int, old: str, new: str, drop_final_newline: bool = False) -> None:
    lines = s.lines()
    assert old.encode() in lines[seq], f"{old!r} not in seq {seq}"
    lines[seq] = lines[seq].replace(old.encode(), new.encode(), 1)
    _write_lines(s.path, lines)
    if drop_final_newline:
        s.path.write_bytes(s.path.read_bytes()[:-1])


@attack
def delete_lines(s, *, seqs: list[int], renumber: bool = False) -> None:
    """Remove lines; with ``renumber``, also close the seq gap (without re-signing)."""
    kept = [line for seq, line in enumerate(s.lines()) if seq not in seqs]
    if renumber:
        values = [json.loads(line) for line in kept]
        kept = [canonical({**value, "seq": seq}) for seq, value in enumerate(values)]
    _write_lines(s.path, kept)


@attack
def duplicate_line(s, *, seq: int) -> None:
    lines = s.lines()
    _write_lines(s.path, [*lines, lines[seq]])


@attack
def set_member(s, *, seq: int, member: str, value: Any) -> None:
    """Change one top-level member and store the line canonically, without re-signing."""
    lines = s.lines()
    entry = json.loads(lines[seq])
    entry[member] = value
    lines[seq] = canonical(entry)
    _write_lines(s.path, lines)


@attack
def swap_lines(s, *, a: int, b: int) -> None:
    lines = s.lines()
    lines[a], lines[b] = lines[b], lines[a]
    _write_lines(s.path, lines)


@attack
def truncate_lines(s, *, keep: int) -> None:
    _write_lines(s.path, s.lines()[:keep])


@attack
def truncate_bytes(s, *, drop: int) -> None:
    s.path.write_bytes(s.path.read_bytes()[:-drop])


@attack
def append_bytes(s, *, text: str) -> None:
    with open(s.path, "ab") as handle:
        handle.write(text.encode())


@attack
def reformat_line(s, *, seq: int) -> None:
    lines = s.lines()
    lines[seq] = json.dumps(json.loads(lines[seq]), sort_keys=True).encode()
    _write_lines(s.path, lines)


@attack
def forge_signature(s, *, seq: int, signer: str) -> None:
    """Re-sign an edited line with another key while keeping the victim's key id."""
    lines = s.lines()
    value = json.loads(lines[seq])
    value["body"]["reason"] = "forged reason"
    value.pop("sig")
    forger = s.signers[signer]
    lines[seq] = seal(value, forger.sign)
    _write_lines(s.path, lines)


@attack
def move_signature(s, *, source: int, target: int) -> None:
    lines = s.lines()
    signature = json.loads(lines[source])["sig"]
    value = json.loads(lines[target])
    value["sig"] = signature
    lines[target] = canonical(value)
    _write_lines(s.path, lines)


@attack
def append_signed(s, *, signer: str, kind: str, body: dict[str, Any], actor: str | None = None) -> None:
    override = {} if actor is None else {"actor": actor}
    raw_append(s.path, s.signers[signer], kind, body, **override)


@attack
def replay_signature(s, *, seq: int) -> None:
    """The signer's own key signs the same approval again (e.g. a scripted re-submit)."""
    value = json.loads(s.lines()[seq])
    raw_append(s.path, s.signers[value["actor"]], "esig", value["body"])


@attack
def retarget_signature(s, *, signer: str, target_seq: int, digest_of_seq: int) -> None:
    """An approval that names one entry but carries the digest of another."""
    lines = s.lines()
    body = {
        "meaning": "approved",
        "printed_name": s.signers[signer].printed_name,
        "reason": "moved approval",
        "target": {"seq": target_seq, "sha256": sha256_hex(lines[digest_of_seq])},
    }
    raw_append(s.path, s.signers[signer], "esig", body)


@attack
def register_second_key(s, *, user: str, endorser: str | None = None) -> None:
    """Self-register another key for an existing user id."""
    impostor = Signer.ephemeral(user_id=user, printed_name=s.signers[user].printed_name)
    body = key_added_body(impostor, None if endorser is None else s.signers[endorser])
    raw_append(s.path, impostor, "key_added", body)


@attack
def revoke_other(s, *, signer: str, victim: str) -> None:
    body = {"key_id": s.signers[victim].key_id, "reason": "hostile revocation"}
    raw_append(s.path, s.signers[signer], "key_revoked", body)


@attack
def rebuild_chain(s, *, replace: dict[str, str] | None = None, drop: list[int] | None = None) -> None:
    """Rewrite history and re-sign every entry with fresh keys for the same user ids.

    The result is a self-consistent ledger; only a kept checkpoint can expose it.
    """
    fresh: dict[str, Signer] = {}
    key_map: dict[str, str] = {}
    old_lines = [line for seq, line in enumerate(s.lines()) if seq not in (drop or [])]
    new_lines: list[bytes] = []
    for line in old_lines:
        text = line.decode()
        for old, new in (replace or {}).items():
            text = text.replace(old, new)
        value = json.loads(text)
        user = value["actor"]
        if user not in fresh:
            fresh[user] = Signer.ephemeral(user_id=user, printed_name=s.signers[user].printed_name)
            key_map[s.signers[user].key_id] = fresh[user].key_id
        signer = fresh[user]
        body = value["body"]
        if value["kind"] == "key_added":
            body = key_added_body(signer, role=body.get("role", "person"))
        elif value["kind"] == "key_revoked":
            body = {**body, "key_id": key_map[body["key_id"]]}
        elif value["kind"] == "esig" and "seq" in body["target"]:
            target_seq = body["target"]["seq"]
            body = {**body, "target": {"seq": target_seq, "sha256": sha256_hex(new_lines[target_seq])}}
        unsigned = {
            **{name: value[name] for name in ("kind", "time")},
            "actor": user,
            "body": body,
            "key": signer.key_id,
            "prev": sha256_hex(new_lines[-1]) if new_lines else "0" * 64,
            "seq": len(new_lines),
        }
        new_lines.append(seal(unsigned, signer.sign))
    _write_lines(s.path, new_lines)
    # The insider also regenerates the public-key export, so it matches the new keys.
    keys_dir = s.path.parent / "keys"
    if keys_dir.is_dir():
        for old in keys_dir.glob("*.json"):
            old.unlink()
        for key in Ledger(path=s.path).registered_keys():
            (keys_dir / f"{key.key_id}.json").write_text(key_export(key))


@attack
def edit_checkpoint(s, *, member: str, value: Any) -> None:
    data = json.loads(s.kept_checkpoint.read_bytes())
    data[member] = value
    s.kept_checkpoint.write_bytes(canonical(data) + b"\n")


@attack
def modify_file(s, *, path: str, text: str) -> None:
    (s.root / path).write_text(text)


@attack
def append_to_file(s, *, path: str, text: str) -> None:
    with open(s.root / path, "a", encoding="utf-8") as handle:
        handle.write(text)


@attack
def delete_file(s, *, path: str) -> None:
    (s.root / path).unlink()


@attack
def esign_raw(
    s, *, signer: str, target_seq: int, meaning: str = "approved", reason: str = "signed",
    printed_name: str | None = None,
) -> None:
    """An e-signature appended without the writer's rules (any meaning, reason or name)."""
    target = s.lines()[target_seq]
    body = {
        "meaning": meaning,
        "printed_name": printed_name or s.signers[signer].printed_name,
        "reason": reason,
        "target": {"seq": target_seq, "sha256": sha256_hex(target)},
    }
    raw_append(s.path, s.signers[signer], "esig", body)


@attack
def register_raw(s, *, user: str, printed_name: str, role: str = "person") -> None:
    """A new user id registers its own key, with any printed name and role."""
    newcomer = Signer.ephemeral(user_id=user, printed_name=printed_name)
    raw_append(s.path, newcomer, "key_added", key_added_body(newcomer, role=role))
    s.signers[user] = newcomer


@attack
def append_padded(s, *, signer: str, kind: str, size: int) -> None:
    """A correctly chained and signed entry whose body carries ``size`` bytes of padding."""
    raw_append(s.path, s.signers[signer], kind, {"pad": "x" * size})


@attack
def delete_tree(s, *, path: str) -> None:
    shutil.rmtree(s.root / path)


@attack
def append_raw(s, *, text: str = "", prefix: str = "", suffix: str = "", count: int = 0) -> None:
    """Append arbitrary bytes as a line: ``text`` or ``prefix * count + suffix * count``."""
    with open(s.path, "ab") as handle:
        handle.write((text or prefix * count + suffix * count).encode() + b"\n")


@attack
def rerun_then_duplicate(s, *, seq: int) -> None:
    """A later run supersedes seq ``seq``'s outputs; then that line is duplicated in place.

    The walk stops at the duplicate, where only the superseded run is known: its file
    digests no longer match, but the chain's problem must be reported first.
    """
    (s.root / "dvc.lock").write_text("schema: '2.0'\nstages: {changed: {}}\n")
    lock = {"path": "dvc.lock", "sha256": path_sha256(s.root / "dvc.lock")}
    s.ledger.append(kind="pipeline_run", body={"dvc_lock": lock, "outputs": []}, signer=s.signers["pipeline"])
    lines = s.lines()
    _write_lines(s.path, [*lines[: seq + 1], lines[seq], *lines[seq + 1 :]])


@attack
def swap_key_export(s, *, user: str, impostor: str) -> None:
    """Replace a user's exported public key with another key (the ledger is untouched)."""
    path = s.path.parent / "keys" / f"{s.signers[user].key_id}.json"
    record = json.loads(path.read_text())
    record["public_key"] = b64encode(s.signers[impostor].public_key)
    path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


@attack
def forge_cosignature(s) -> None:
    """Flip one byte of the first witness cosignature in the kept trust root."""
    value = json.loads(s.kept_trust.read_bytes())
    cosignature = value["heads"][0]["cosignatures"][0]
    raw = bytearray(base64.b64decode(cosignature["sig"]))
    raw[0] ^= 1
    cosignature["sig"] = b64encode(bytes(raw))
    s.kept_trust.write_bytes(canonical(value) + b"\n")


# -- the review gate's workbench (cases with "fixture": "gate") ---------------------------
@attack
def run(s, *, commands: list[dict[str, Any]]) -> None:
    """Commands a user runs before the checked one, each of which must succeed."""
    for command in commands:
        s.must(*command["args"], user=command.get("user"))


@attack
def edit_candidate(s, *, candidate: str, **members: Any) -> None:
    """Edit a candidate in reports/04_revalidation.json (no key needed)."""
    path = s.root / "reports" / "04_revalidation.json"
    record = json.loads(path.read_text())
    found = next(c for c in record["candidates"] if c["id"] == candidate)
    for name, value in members.items():
        found[name] = [s.alert_id(a) for a in value] if name == "alert_ids" else value
    if members.get("decision") == "promote":
        found["criteria"] = [{**c, "passed": True} for c in found["criteria"]]
    path.write_text(json.dumps(record, indent=1, sort_keys=True))


@attack
def delete_approval(s, *, alert: str) -> None:
    (s.approvals / f"{s.alert_id(alert)}.json").unlink()


@attack
def plant_approval(s, *, alert: str, source: str) -> None:
    """Copy another alert's approval file under this alert's name (it proves nothing for it)."""
    value = json.loads((s.approvals / f"{s.alert_id(source)}.json").read_text())
    value["alert_id"] = s.alert_id(alert)
    (s.approvals / f"{s.alert_id(alert)}.json").write_text(json.dumps(value, indent=2, sort_keys=True))


@attack
def forge_machine_approval(s, *, alert: str) -> None:
    """An approval file from an e-signature the pipeline's machine key made (kept out of the ledger)."""
    lines = s.lines()
    entries = [json.loads(line) for line in lines]
    seq = s.alert_seq(alert)
    pipeline = s.signers["pipeline"]
    body = {"meaning": "approved", "printed_name": pipeline.printed_name, "reason": "auto",
            "target": {"seq": seq, "sha256": sha256_hex(lines[seq])}}
    esig = seal({"actor": pipeline.user_id, "body": body, "key": pipeline.key_id, "kind": "esig",
                 "prev": sha256_hex(lines[-1]), "seq": len(lines), "time": utc_now()}, pipeline.sign)
    key_line = next(line for line, e in zip(lines, entries) if e["kind"] == "key_added" and e["actor"] == "pipeline")
    value = {"alert_id": s.alert_id(alert), "decision": "approved",
             "lines": [line.decode() for line in (key_line, lines[seq], esig)]}
    (s.approvals / f"{s.alert_id(alert)}.json").write_text(json.dumps(value, indent=2, sort_keys=True))


@attack
def wrong_passphrases(s, *, user: str, count: int) -> None:
    """Someone tries ``count`` wrong passphrases on ``user``'s key."""
    from clinval.signing import SigningError, load_signer

    for _ in range(count):
        try:
            load_signer(user, passphrase="a wrong guess")
        except SigningError:
            pass


@attack
def nothing(s) -> None:
    """The control case: an untouched ledger verifies."""


__all__ = ["ATTACKS", "raw_append"]
