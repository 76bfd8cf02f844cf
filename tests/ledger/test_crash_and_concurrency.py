"""Real processes: a writer killed mid-append, and eight writers appending at once."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

from clinval.ledger import ErrorCode, Ledger, LedgerError, register_key, verify
from clinval.signing import create_key, load_signer

PASSPHRASE = "crash-test passphrase"

# A writer whose os.write stores half the line, reports how much, then hangs: the
# parent kills it there, as a power cut or OOM kill would.
HALF_WRITE_THEN_HANG = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from clinval.ledger import Ledger
    from clinval.signing import load_signer

    root, ready = Path(sys.argv[1]), Path(sys.argv[2])
    ledger = Ledger(path=root / "ledger.jsonl", checkpoint_dir=root / "checkpoints")
    signer = load_signer("pipeline", passphrase=os.environ["CLINVAL_PASSPHRASE"])
    real_write = os.write

    def write_half_then_hang(descriptor, data):
        written = real_write(descriptor, bytes(data[: len(data) // 2]))
        ready.write_text(str(written))
        time.sleep(600)

    os.write = write_half_then_hang
    ledger.append(kind="pipeline_run", body={"note": "this append never completes"}, signer=signer)
    """
)

APPEND_FOREVER = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from clinval.ledger import Ledger
    from clinval.signing import load_signer

    root = Path(sys.argv[1])
    ledger = Ledger(path=root / "ledger.jsonl", checkpoint_dir=root / "checkpoints")
    signer = load_signer("pipeline", passphrase=os.environ["CLINVAL_PASSPHRASE"])
    n = 0
    while True:
        ledger.append(kind="pipeline_run", body={"n": n, "pad": "x" * 5000}, signer=signer)
        n += 1
    """
)

APPEND_FIFTY = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from clinval.ledger import Ledger
    from clinval.signing import load_signer

    root, writer = Path(sys.argv[1]), int(sys.argv[2])
    ledger = Ledger(path=root / "ledger.jsonl", checkpoint_dir=root / "checkpoints")
    signer = load_signer("pipeline", passphrase=os.environ["CLINVAL_PASSPHRASE"])
    for n in range(50):
        ledger.append(kind="data_pull", body={"writer": writer, "n": n}, signer=signer)
    """
)


@pytest.fixture
def writer_env(monkeypatch):
    monkeypatch.setenv("CLINVAL_PASSPHRASE", PASSPHRASE)
    return dict(os.environ)


@pytest.fixture
def started(tmp_path, writer_env):
    """A ledger in tmp_path with the pipeline key registered (genesis)."""
    signer = create_key(user_id="pipeline", printed_name="clinval pipeline", passphrase=PASSPHRASE)
    ledger = Ledger(path=tmp_path / "ledger.jsonl", checkpoint_dir=tmp_path / "checkpoints")
    register_key(ledger, signer=signer, role="machine")
    ledger.append(kind="pipeline_run", body={"n": "before the crash"}, signer=signer)
    return ledger


def _spawn(script: str, *args: object, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", script, *map(str, args)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _wait_for(condition, process: subprocess.Popen, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"writer exited early: {process.stderr.read().decode()}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("writer did not reach the expected point in time")
        time.sleep(0.02)


def test_writer_killed_mid_append_leaves_torn_tail_that_recover_fixes(
    started, tmp_path, writer_env
):
    ready = tmp_path / "ready"
    writer = _spawn(HALF_WRITE_THEN_HANG, tmp_path, ready, env=writer_env)
    _wait_for(ready.exists, writer)
    writer.kill()
    writer.wait(timeout=30)
    written = int(ready.read_text())
    checkpoint = tmp_path / "checkpoints" / "latest.json"

    torn = verify(started.path, checkpoint=checkpoint)
    assert (torn.code, torn.seq) == (ErrorCode.TORN_TAIL, 2), str(torn)

    signer = load_signer("pipeline", passphrase=PASSPHRASE)
    with pytest.raises(LedgerError) as refused:
        started.append(kind="pipeline_run", body={"n": "after"}, signer=signer)
    assert refused.value.code == ErrorCode.TORN_TAIL
    torn_bytes = started.path.read_bytes()[-written:]

    recovery = started.recover(signer=signer, reason="writer killed in test")

    assert recovery is not None and recovery.kind == "recovery" and recovery.seq == 2
    assert recovery.body["torn_bytes"] == written
    assert base64.b64decode(recovery.body["torn_base64"]) == torn_bytes
    healed = verify(started.path, checkpoint=checkpoint)
    assert healed.ok and healed.size == 3, str(healed)
    assert started.recover(signer=signer, reason="again") is None
    started.append(kind="pipeline_run", body={"n": "after"}, signer=signer)
    assert verify(started.path, checkpoint=checkpoint).ok


def test_writer_killed_at_a_random_moment_never_corrupts_more_than_the_tail(
    started, tmp_path, writer_env
):
    writer = _spawn(APPEND_FOREVER, tmp_path, env=writer_env)
    _wait_for(lambda: started.path.stat().st_size > 60_000, writer)
    writer.kill()
    writer.wait(timeout=30)

    result = verify(started.path)

    assert result.ok or result.code == ErrorCode.TORN_TAIL, str(result)
    signer = load_signer("pipeline", passphrase=PASSPHRASE)
    started.recover(signer=signer, reason="writer killed in test")
    assert verify(started.path, checkpoint=tmp_path / "checkpoints" / "latest.json").ok


def test_eight_processes_appending_fifty_entries_each_get_contiguous_seqs(
    started, tmp_path, writer_env
):
    writers = [_spawn(APPEND_FIFTY, tmp_path, index, env=writer_env) for index in range(8)]
    for writer in writers:
        _, stderr = writer.communicate(timeout=300)
        assert writer.returncode == 0, stderr.decode()

    lines = started.path.read_bytes().split(b"\n")
    assert lines.pop() == b""
    entries = [json.loads(line) for line in lines]
    assert [entry["seq"] for entry in entries] == list(range(2 + 8 * 50))
    appended = sorted((e["body"]["writer"], e["body"]["n"]) for e in entries[2:])
    assert appended == [(writer, n) for writer in range(8) for n in range(50)]
    result = verify(started.path, checkpoint=tmp_path / "checkpoints" / "latest.json")
    assert result.ok and result.checkpoint.size == 402, str(result)
