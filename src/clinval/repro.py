"""Does the pipeline reproduce? Compare a fresh run with what ``dvc.lock`` records.

``clinval repro check`` re-runs the pipeline in a clean clone (:func:`fresh_clone`) and
compares every output with the committed ``dvc.lock`` (:func:`compare_runs`). Same bytes
is the promise on x86-64 Linux (see :mod:`clinval.numeric_env`). Where bytes differ
(another architecture, another library build, an edited input), the comparison says for
each differing output the largest absolute and relative change of any number in it and
whether any *decision* changed:

- a boolean (drifted, signal, flagged, passed, suppressed, ...),
- a ``status`` or ``decision`` value, an alert or candidate id,
- the shape of a result (a row or an alert more or fewer).

The verdict (:class:`Verdict`) maps to exit codes: ``IDENTICAL`` 0, ``WITHIN_TOLERANCE``
1 (numbers moved by at most the tolerance, no decision moved), ``DIFFERENT`` 2 (a decision
moved, a number moved beyond the tolerance, or an output could not be compared).

The committed bytes are looked up by their MD5 in the reference checkout's workspace and
DVC cache; when neither holds them (a fresh clone on another machine) only the digest
comparison is possible, and the report says so.
"""

from __future__ import annotations

import enum
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "DEFAULT_RTOL",
    "DEFAULT_ATOL",
    "OutputComparison",
    "ReproReport",
    "Verdict",
    "compare_json",
    "compare_runs",
    "fresh_clone",
    "lock_outputs",
    "run_pipeline",
]

DEFAULT_RTOL = 1e-6
"""Relative tolerance: far below the 2-3 significant digits a record shows."""
DEFAULT_ATOL = 1e-9
"""Absolute tolerance, for numbers near zero."""

DECISION_KEYS = frozenset({"status", "decision", "id", "alert_id", "alert_ids", "trigger", "period"})
"""String fields that carry a decision or identify one (compared exactly)."""
_CACHE = Path(".dvc") / "cache" / "files" / "md5"


class Verdict(enum.IntEnum):
    """The outcome of a reproduction check; its value is the exit code."""

    IDENTICAL = 0
    WITHIN_TOLERANCE = 1
    DIFFERENT = 2


@dataclass(frozen=True)
class FileDifference:
    """How one file of an output differs between the committed and the fresh run."""

    path: str
    max_abs: float = 0.0
    max_rel: float = 0.0
    where: str = ""
    beyond: int = 0
    decisions: tuple[str, ...] = ()
    texts: int = 0
    note: str = ""


@dataclass(frozen=True)
class OutputComparison:
    """One DVC output (file or folder) of one stage."""

    stage: str
    path: str
    identical: bool
    files: tuple[FileDifference, ...] = ()
    comparable: bool = True

    @property
    def verdict(self) -> Verdict:
        if self.identical:
            return Verdict.IDENTICAL
        if not self.comparable or any(f.decisions or f.note or f.beyond for f in self.files):
            return Verdict.DIFFERENT
        return Verdict.WITHIN_TOLERANCE


@dataclass(frozen=True)
class ReproReport:
    """Every output compared, and the overall verdict."""

    outputs: tuple[OutputComparison, ...]
    rtol: float
    atol: float
    input_changes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def verdict(self) -> Verdict:
        if self.input_changes:
            return Verdict.DIFFERENT
        return max((o.verdict for o in self.outputs), default=Verdict.IDENTICAL)

    def lines(self) -> list[str]:
        """The report a person reads, one line per output (and per differing file)."""
        out = [f"input changed: {c}" for c in self.input_changes]
        for o in self.outputs:
            if o.identical:
                out.append(f"identical   {o.path}")
                continue
            verdict = o.verdict
            label = "within tol." if verdict == Verdict.WITHIN_TOLERANCE else "DIFFERS"
            if not o.comparable:
                out.append(f"{label:<11} {o.path}: the committed bytes are not in this checkout's workspace or DVC cache; "
                           "compare on the machine that wrote dvc.lock (or after `dvc pull`)")
                continue
            out.append(f"{label:<11} {o.path}")
            for f in o.files:
                parts = []
                if f.note:
                    parts.append(f.note)
                if f.max_abs or f.max_rel:
                    parts.append(f"largest change {f.max_abs:.3g} absolute, {f.max_rel:.3g} relative (at {f.where})")
                if f.beyond:
                    parts.append(f"{f.beyond} number(s) beyond the tolerance")
                if f.texts:
                    parts.append(f"{f.texts} sentence(s) changed")
                if f.decisions:
                    shown = "; ".join(f.decisions[:5]) + (f" and {len(f.decisions) - 5} more" if len(f.decisions) > 5 else "")
                    parts.append(f"DECISION changed: {shown}")
                out.append(f"              {f.path}: " + ("; ".join(parts) or "bytes differ, no number or decision changed"))
        summary = {
            Verdict.IDENTICAL: "identical: every output has the bytes dvc.lock records.",
            Verdict.WITHIN_TOLERANCE: f"numbers differ within the tolerance (relative {self.rtol:g}, absolute {self.atol:g}); "
            "no decision differs.",
            Verdict.DIFFERENT: "a decision differs, a number moved beyond the tolerance, or an output could not be compared.",
        }[self.verdict]
        return [*out, summary]


# ---------------------------------------------------------------------------- dvc.lock


def lock_outputs(lock_text: str) -> dict[str, dict[str, str]]:
    """``{stage: {output path: md5}}`` from a ``dvc.lock`` (folder md5s end in ``.dir``)."""
    lock = yaml.safe_load(lock_text) or {}
    return {name: {o["path"]: o["md5"] for o in spec.get("outs", [])} for name, spec in lock.get("stages", {}).items()}


def _lock_deps(lock_text: str) -> dict[str, str]:
    lock = yaml.safe_load(lock_text) or {}
    return {d["path"]: d["md5"] for spec in lock.get("stages", {}).values() for d in spec.get("deps", [])}


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _dir_manifest(folder: Path) -> list[dict[str, str]]:
    """DVC's manifest of a folder: every file's relative path and MD5, sorted by path."""
    entries = [
        {"md5": _md5(p), "relpath": p.relative_to(folder).as_posix()}
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    ]
    return sorted(entries, key=lambda e: e["relpath"])


def _dir_md5(manifest: list[dict[str, str]]) -> str:
    """DVC 3's folder digest: MD5 of the JSON manifest, with ``.dir`` appended."""
    return hashlib.md5(json.dumps(manifest, sort_keys=True).encode(), usedforsecurity=False).hexdigest() + ".dir"


def _committed_files(root: Path, out_path: str, md5: str) -> dict[str, Path] | None:
    """The committed bytes of an output, ``{relative file: local path}``, or None if absent here."""
    workspace = root / out_path
    cache = root / _CACHE
    if md5.endswith(".dir"):
        if workspace.is_dir():
            manifest = _dir_manifest(workspace)
            if _dir_md5(manifest) == md5:
                return {e["relpath"]: workspace / e["relpath"] for e in manifest}
        stored = cache / md5[:2] / md5[2:]
        if not stored.is_file():
            return None
        files = {}
        for entry in json.loads(stored.read_text()):
            blob = cache / entry["md5"][:2] / entry["md5"][2:]
            if not blob.is_file():
                return None
            files[entry["relpath"]] = blob
        return files
    if workspace.is_file() and _md5(workspace) == md5:
        return {"": workspace}
    blob = cache / md5[:2] / md5[2:]
    return {"": blob} if blob.is_file() else None


def _fresh_files(root: Path, out_path: str) -> dict[str, Path]:
    path = root / out_path
    if path.is_dir():
        return {e["relpath"]: path / e["relpath"] for e in _dir_manifest(path)}
    return {"": path} if path.is_file() else {}


# ---------------------------------------------------------------------------- comparing content


def _leaves(value: Any, path: str = "") -> Iterator[tuple[str, str, Any]]:
    """(path, field name, value) for every leaf of a JSON value; a list also yields its length."""
    if isinstance(value, Mapping):
        for k, v in value.items():
            yield from _leaves(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, list):
        yield f"{path}.length", "length", len(value)
        for i, v in enumerate(value):
            yield from _leaves(v, f"{path}[{i}]")
    else:
        yield path, path.rsplit(".", 1)[-1].split("[")[0], value


def _moved(a: float, b: float, *, rtol: float, atol: float) -> bool:
    return abs(a - b) > atol + rtol * max(abs(a), abs(b))


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def compare_json(committed: Any, fresh: Any, *, name: str = "", rtol: float = DEFAULT_RTOL,
                 atol: float = DEFAULT_ATOL) -> FileDifference:
    """Compare two JSON values leaf by leaf: the largest numeric change, how many numbers
    moved beyond the tolerance, and every decision that moved."""
    a = {p: (k, v) for p, k, v in _leaves(committed)}
    b = {p: (k, v) for p, k, v in _leaves(fresh)}
    max_abs = max_rel = 0.0
    where, decisions, texts, beyond = "", [], 0, 0
    for path in sorted(set(a) | set(b)):
        if path not in a or path not in b:
            decisions.append(f"{path} {'added' if path in b else 'removed'}")
            continue
        (key, va), (_, vb) = a[path], b[path]
        if va == vb and type(va) is type(vb):
            continue
        if key == "length":
            decisions.append(f"{path[:-len('.length')] or 'top level'} has {vb} items instead of {va}")
        elif _is_number(va) and _is_number(vb):
            if math.isnan(va) and math.isnan(vb):
                continue
            diff = abs(float(va) - float(vb))
            if diff > max_abs:
                max_abs, where = diff, path
            max_rel = max(max_rel, diff / max(abs(float(va)), abs(float(vb))))
            beyond += _moved(float(va), float(vb), rtol=rtol, atol=atol)
        elif isinstance(va, bool) or isinstance(vb, bool) or key in DECISION_KEYS or va is None or vb is None:
            decisions.append(f"{path}: {va!r} -> {vb!r}")
        else:
            texts += 1
    return FileDifference(path=name, max_abs=max_abs, max_rel=max_rel, where=where, beyond=beyond,
                          decisions=tuple(decisions), texts=texts)


def _compare_parquet(committed: Path, fresh: Path, name: str, *, rtol: float, atol: float) -> FileDifference:
    import numpy as np
    import pandas as pd

    a, b = pd.read_parquet(committed), pd.read_parquet(fresh)
    if list(a.columns) != list(b.columns) or len(a) != len(b):
        return FileDifference(path=name, note=f"table shape differs: {a.shape} committed, {b.shape} now")
    max_abs = max_rel = 0.0
    where, decisions, beyond = "", [], 0
    for column in a.columns:
        x, y = a[column], b[column]
        if pd.api.types.is_float_dtype(x) and pd.api.types.is_float_dtype(y):
            xv, yv = x.to_numpy(float), y.to_numpy(float)
            keep = ~(np.isnan(xv) & np.isnan(yv))
            diff = np.abs(xv[keep] - yv[keep])
            scale = np.maximum(np.abs(xv[keep]), np.abs(yv[keep]))
            if diff.size and diff.max() > max_abs:
                max_abs, where = float(diff.max()), column
            if diff.size:
                max_rel = max(max_rel, float(np.max(diff / np.where(scale > 0, scale, 1.0))))
                beyond += int(np.sum(~(diff <= atol + rtol * scale)))
        elif not x.equals(y):
            decisions.append(f"column {column} differs in {int((x.astype(str) != y.astype(str)).sum())} rows")
    return FileDifference(path=name, max_abs=max_abs, max_rel=max_rel, where=where, beyond=beyond, decisions=tuple(decisions))


def _compare_file(committed: Path, fresh: Path, name: str, *, rtol: float, atol: float) -> FileDifference:
    suffix = Path(name).suffix.lower()
    if suffix == ".json":
        try:
            return compare_json(json.loads(committed.read_text()), json.loads(fresh.read_text()), name=name, rtol=rtol, atol=atol)
        except ValueError:
            return FileDifference(path=name, note="not valid JSON in one of the runs")
    if suffix == ".parquet":
        return _compare_parquet(committed, fresh, name, rtol=rtol, atol=atol)
    if suffix in (".html", ".ipynb", ".joblib"):
        # renderings of the JSON twin beside them; a model's numbers are in its card.json
        return FileDifference(path=name, texts=1)
    return FileDifference(path=name, note="bytes differ")


def _compare_output(stage: str, out_path: str, md5: str, fresh_md5: str | None, reference: Path, fresh: Path,
                    *, rtol: float, atol: float) -> OutputComparison:
    if fresh_md5 == md5:
        return OutputComparison(stage=stage, path=out_path, identical=True)
    committed = _committed_files(reference, out_path, md5)
    if committed is None:
        return OutputComparison(stage=stage, path=out_path, identical=False, comparable=False)
    now = _fresh_files(fresh, out_path)
    files = []
    for rel in sorted(set(committed) | set(now)):
        name = f"{out_path}/{rel}" if rel else out_path
        if rel not in now or rel not in committed:
            files.append(FileDifference(path=name, note="missing now" if rel not in now else "new file"))
        elif _md5(committed[rel]) != _md5(now[rel]):
            files.append(_compare_file(committed[rel], now[rel], name, rtol=rtol, atol=atol))
    return OutputComparison(stage=stage, path=out_path, identical=False, files=tuple(files))


def compare_runs(*, committed_lock: str, reference: Path, fresh: Path, stages: Sequence[str] | None = None,
                 rtol: float = DEFAULT_RTOL, atol: float = DEFAULT_ATOL) -> ReproReport:
    """Compare the outputs of a fresh run (``fresh``, holding its own ``dvc.lock``) with the
    committed ``dvc.lock``, reading committed bytes from the ``reference`` checkout.

    Parameters
    ----------
    committed_lock
        The text of the committed ``dvc.lock``.
    stages
        Only these stages (default: every stage of the committed lock).
    """
    expected = lock_outputs(committed_lock)
    fresh_lock_text = (fresh / "dvc.lock").read_text() if (fresh / "dvc.lock").exists() else ""
    now = {p: m for outs in lock_outputs(fresh_lock_text).values() for p, m in outs.items()}
    committed_deps, fresh_deps = _lock_deps(committed_lock), _lock_deps(fresh_lock_text)
    input_changes = tuple(
        f"{path} (md5 {committed_deps[path][:8]} committed, {fresh_deps[path][:8]} now)"
        for path in sorted(committed_deps)
        if path in fresh_deps and committed_deps[path] != fresh_deps[path] and path not in now
    )
    outputs = [
        _compare_output(stage, path, md5, now.get(path), reference, fresh, rtol=rtol, atol=atol)
        for stage, outs in expected.items()
        if stages is None or stage in stages
        for path, md5 in outs.items()
    ]
    return ReproReport(outputs=tuple(outputs), rtol=rtol, atol=atol, input_changes=input_changes)


# ---------------------------------------------------------------------------- running


def _source_path(root: Path) -> str | None:
    study = yaml.safe_load((root / "params" / "study.yaml").read_text()) or {}
    return (study.get("source") or {}).get("path")


def fresh_clone(reference: Path, into: Path) -> Path:
    """A clean clone of ``reference``'s committed state in ``into`` (which must not exist),
    with the study's raw source (git-ignored patient data) copied in if it lives inside the
    repository. DVC's cache of the clone starts empty, so every stage really runs."""
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(reference), str(into)], check=True, capture_output=True)
    source = _source_path(into)
    if source and not Path(source).is_absolute() and (reference / source).exists() and not (into / source).exists():
        target = into / source
        target.parent.mkdir(parents=True, exist_ok=True)
        copy = shutil.copytree if (reference / source).is_dir() else shutil.copy2
        copy(reference / source, target)
    return into


def run_pipeline(checkout: Path, *, targets: Sequence[str] = (), echo: bool = True) -> subprocess.CompletedProcess:
    """``clinval study embed`` then ``dvc repro --force`` in ``checkout``, with this
    environment's commands first on PATH (the run inherits the pinned numerics)."""
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    embed = subprocess.run([str(bin_dir / "clinval"), "study", "embed"], cwd=checkout, env=env, capture_output=True, text=True)
    if embed.returncode != 0:
        return embed
    command = [str(bin_dir / "dvc"), "repro", "--force", *targets]
    if echo:
        return subprocess.run(command, cwd=checkout, env=env, text=True)
    return subprocess.run(command, cwd=checkout, env=env, capture_output=True, text=True)
