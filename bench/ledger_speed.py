"""How fast the audit ledger appends and verifies.

Run: ``uv run python bench/ledger_speed.py [--entries 100000] [--appends 1000]``

Prints durable appends per second (file lock, one line, fsync, signed checkpoint with
its own fsync and rename) and the time to verify a ledger of ``--entries`` entries in
one process and across all CPUs. Verification is dominated by one Ed25519 signature
check per entry; the OpenSSL figure printed first is the ceiling for one core.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from clinval.ledger import Ledger, register_key, verify
from clinval.ledger._encoding import sha256_hex, utc_now
from clinval.ledger._entry import seal
from clinval.signing import Signer

BODY = {
    "dvc_lock": {"path": "dvc.lock", "sha256": "3f" * 32},
    "outputs": [
        {"md5": "0f" * 16, "path": "models/locked.bin", "sha256": "a1" * 32, "stage": "train", "type": "file"},
        {"md5": "1e" * 16, "path": "reports/02_drift.json", "sha256": "b2" * 32, "stage": "drift", "type": "file"},
    ],
}


def ed25519_verify_rate(seconds: float = 1.0) -> float:
    """Signature checks per second on one core, straight through `cryptography`."""
    key = Ed25519PrivateKey.generate()
    message = b"x" * 600
    signature, public_key = key.sign(message), key.public_key()
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(200):
            public_key.verify(signature, message)
        count += 200
    return count / (time.perf_counter() - start)


def bench_appends(directory: Path, appends: int) -> float:
    ledger = Ledger(path=directory / "appends.jsonl", checkpoint_dir=directory / "checkpoints")
    signer = Signer.ephemeral(user_id="pipeline", printed_name="clinval pipeline")
    register_key(ledger, signer=signer, role="machine")
    start = time.perf_counter()
    for n in range(appends):
        ledger.append(kind="pipeline_run", body={**BODY, "n": n}, signer=signer)
    return appends / (time.perf_counter() - start)


def build_ledger(path: Path, entries: int) -> None:
    """Write a valid ledger of ``entries`` entries without per-entry fsync (setup only)."""
    signer = Signer.ephemeral(user_id="pipeline", printed_name="clinval pipeline")
    register_key(Ledger(path=path), signer=signer, role="machine")
    last = path.read_bytes().rstrip(b"\n")
    with open(path, "ab") as handle:
        for seq in range(1, entries):
            unsigned = {
                "actor": signer.user_id,
                "body": {**BODY, "n": seq},
                "key": signer.key_id,
                "kind": "pipeline_run",
                "prev": sha256_hex(last),
                "seq": seq,
                "time": utc_now(),
            }
            last = seal(unsigned, signer.sign)
            handle.write(last + b"\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000, help="ledger size to verify")
    parser.add_argument("--appends", type=int, default=1_000, help="durable appends to time")
    parser.add_argument(
        "--ledger", type=Path, default=None, help="keep the built ledger here and reuse it next time"
    )
    args = parser.parse_args()
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"CPUs available: {cpus}; load average now: {os.getloadavg()[0]:.2f}")
    print(f"Ed25519 verify, one core (cryptography/OpenSSL): {ed25519_verify_rate():,.0f} /s")
    with tempfile.TemporaryDirectory() as temp:
        directory = Path(temp)
        print(f"durable appends: {bench_appends(directory, args.appends):,.0f} /s "
              f"({args.appends} appends, fsync + signed checkpoint each)")
        path = args.ledger or directory / "ledger.jsonl"
        if path.exists():
            args.entries = path.read_bytes().count(b"\n")
            print(f"reusing {path} ({args.entries:,} entries)")
        else:
            start = time.perf_counter()
            build_ledger(path, args.entries)
            elapsed = time.perf_counter() - start
            print(f"built {args.entries:,} entries ({path.stat().st_size / 1e6:.1f} MB) in {elapsed:.1f} s")
        for label, workers in (("1 process", 1), (f"{cpus} processes", None)):
            start = time.perf_counter()
            result = verify(path, workers=workers)
            elapsed = time.perf_counter() - start
            assert result.ok, str(result)
            print(f"verify {args.entries:,} entries, {label}: {elapsed:.2f} s = "
                  f"{args.entries / elapsed:,.0f} entries/s")


if __name__ == "__main__":
    main()
