"""Helpers for the live-loop tests (and bench/serve_speed.py): a repository root with a
locked model recorded in a real signed ledger, and a running `clinval serve`."""

from __future__ import annotations

import copy
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml

REPO = Path(__file__).resolve().parents[2]
PASSPHRASE = "live-loop-test-passphrase"
LOCK_TEMPLATE = """schema: '2.0'
stages:
  train:
    cmd: clinval train
    outs:
    - path: models/locked
      md5: 00000000000000000000000000000000.dir
"""


@dataclass
class LiveRoot:
    """A repository root the service can start from."""

    root: Path
    home: Path

    @property
    def ledger(self) -> Path:
        return self.root / "audit" / "ledger.jsonl"

    @property
    def log_dir(self) -> Path:
        return self.root / "data" / "predictions"

    def env(self) -> dict[str, str]:
        return {**os.environ, "CLINVAL_HOME": str(self.home), "CLINVAL_PASSPHRASE": PASSPHRASE, "PYTHONUNBUFFERED": "1"}

    def open_ledger(self):
        from clinval.ledger import Ledger

        return Ledger(path=self.ledger, checkpoint_dir=self.root / "audit" / "checkpoints", keys_dir=self.root / "audit" / "keys")

    def signer(self):
        from clinval.signing import load_signer

        return load_signer("pipeline", passphrase=PASSPHRASE, home=self.home)


def monica_study() -> dict:
    """The MONICA study as tests/conftest.py pins it (tests never read params/study.yaml)."""
    spec = importlib.util.spec_from_file_location("_clinval_tests_conftest", REPO / "tests" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return copy.deepcopy(module.MONICA_STUDY)


def make_live_root(path: Path, *, pipeline, card, study: dict | None = None) -> LiveRoot:
    """Write the study, the locked model and a dvc.lock naming it; record the run in a new ledger."""
    from clinval import model as model_lib
    from clinval.ledger import record_run
    from clinval.signing import create_key

    root, home = path / "repo", path / "home"
    (root / "params").mkdir(parents=True)
    (root / "audit" / "approvals").mkdir(parents=True)
    (root / "params" / "study.yaml").write_text(yaml.safe_dump(study or monica_study(), sort_keys=False))
    model_lib.write_model(pipeline, card, root / "models" / "locked")
    (root / "dvc.lock").write_text(LOCK_TEMPLATE)
    live = LiveRoot(root=root, home=home)
    signer = create_key(user_id="pipeline", printed_name="clinval pipeline", passphrase=PASSPHRASE, home=home)
    record_run(live.open_ledger(), signer=signer, root=root)
    return live


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    """A `clinval serve` child process on loopback."""

    process: subprocess.Popen
    url: str
    output: Path
    extra: dict = field(default_factory=dict)

    def wait_ready(self, deadline_seconds: float = 120.0) -> dict:
        """Poll /healthz until it answers (or the process dies); return its body."""
        end = time.monotonic() + deadline_seconds
        while time.monotonic() < end:
            if self.process.poll() is not None:
                raise RuntimeError(f"clinval serve exited {self.process.returncode}: {self.output.read_text()}")
            try:
                response = httpx.get(f"{self.url}/healthz", timeout=2.0)
                return response.json()
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError(f"clinval serve did not answer within {deadline_seconds} s: {self.output.read_text()}")

    def kill(self) -> None:
        """SIGKILL: no shutdown hook runs."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


def start_server(live: LiveRoot, *args: str, port: int | None = None, preexec_fn=None) -> Server:
    port = port or free_port()
    output = live.root / f"serve-{port}.out"
    command = [sys.executable, "-m", "clinval", "serve", "--port", str(port), "--reports", "reports", *args]
    with open(output, "ab") as sink:
        process = subprocess.Popen(command, cwd=live.root, env=live.env(), stdout=sink, stderr=subprocess.STDOUT,
                                   preexec_fn=preexec_fn)
    return Server(process=process, url=f"http://127.0.0.1:{port}", output=output)


def record(study_frame_row: dict, features: tuple[str, ...]) -> dict:
    """A request record from a study row (NA -> null)."""
    import pandas as pd

    return {name: (None if pd.isna(study_frame_row[name]) else study_frame_row[name]) for name in features}
