"""Per-period memo: a pure computation's result, stored under the content hash of its inputs.

A new production period re-runs every notebook stage (DVC re-runs a stage when any of
its inputs changed), but the old periods' records, risks and settings did not change, so
their expensive results (bootstrap intervals, ...) are read back instead of recomputed.

The key of an entry is the SHA-256 of everything the result depends on: the input arrays
(dtype, shape and bytes) or frames (column names, dtypes and pandas' 64-bit hash of
each row), the settings, the source of every clinval module, the
versions of numpy, pandas, scipy, scikit-learn, statsmodels and fairlearn, and the numeric environment
(:mod:`clinval.numeric_env`). An entry holds the result table with every float written as
its shortest round-trip text, so a read gives back the very same bytes, and the warnings
the computation raised, which a read raises again (a notebook shows them). The memo is
only an optimisation: a cold run and a run that reads the memo write identical records
(``tests/test_memo.py`` checks it).

Where: ``$CLINVAL_MEMO`` (a folder; ``off`` disables the memo), else, inside a pipeline
stage (DVC sets ``DVC_ROOT`` for a stage's command and its notebook kernel inherits it),
``$DVC_ROOT/.clinval/memo``; anywhere else (tests, simulations, JupyterLab) there is no
memo. ``.clinval/`` is git-ignored and is no DVC output, so the pipeline's outputs and
``dvc.lock`` do not depend on it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import warnings
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["MEMO_ENV", "digest", "memo_dir", "memoised_table"]

MEMO_ENV = "CLINVAL_MEMO"
"""Environment variable: a folder for the memo, or ``off``."""

_FORMAT = 2  # bump when the entry layout or the key's parts change
_SHOWN: dict = {}  # one registry for every re-raised warning: each shows once per process, as Python's default does
_ERR_KEY_PART = "memo key part of type {kind} cannot be hashed; pass arrays, numbers, strings or tuples"


def memo_dir() -> Path | None:
    """The memo folder, or None when memoising is off (see the module docstring)."""
    setting = os.environ.get(MEMO_ENV)
    if setting:
        return None if setting.lower() == "off" else Path(setting)
    stage_root = os.environ.get("DVC_ROOT")
    return Path(stage_root) / ".clinval" / "memo" if stage_root else None


def _feed(h: Any, part: Any) -> None:
    if isinstance(part, pd.Series):
        part = part.to_frame()
    if isinstance(part, pd.DataFrame):
        layout = [(str(c), str(t), list(map(str, t.categories)) + [str(t.ordered)] if isinstance(t, pd.CategoricalDtype)
                   else None) for c, t in part.dtypes.items()]
        h.update(f"frame:{len(part)}:{layout!r}:".encode())
        h.update(pd.util.hash_pandas_object(part, index=False).to_numpy().tobytes())  # 64-bit per row, values only
    elif isinstance(part, np.ndarray):
        array = np.ascontiguousarray(part)
        h.update(f"array:{array.dtype.str}:{array.shape}:".encode())
        h.update(array.tobytes())
    elif isinstance(part, (tuple, list)):
        h.update(f"seq:{len(part)}:".encode())
        for item in part:
            _feed(h, item)
    elif part is None or isinstance(part, (bool, int, float, str, np.integer, np.floating)):
        h.update(f"{type(part).__name__}:{part!r};".encode())
    else:
        raise TypeError(_ERR_KEY_PART.format(kind=type(part).__name__))


@lru_cache(maxsize=1)
def _library_versions() -> tuple[str, ...]:
    """Versions of the libraries a memoised result depends on (read once per process)."""
    from importlib.metadata import version

    import scipy
    import sklearn
    import statsmodels

    return (np.__version__, pd.__version__, scipy.__version__, sklearn.__version__, statsmodels.__version__,
            version("fairlearn"))


def _environment() -> tuple[str, ...]:
    from clinval import numeric_env

    return (str(_FORMAT), *_library_versions(), "pinned" if numeric_env.is_pinned() else "native")


@lru_cache(maxsize=1)
def _package_source() -> str:
    """SHA-256 of every module of the clinval package: an entry is valid for this code only."""
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(f"{path.relative_to(root).as_posix()}:{path.stat().st_size}:".encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def digest(*parts: Any, source: str | os.PathLike | None = None) -> str:
    """SHA-256 (hex) of ``parts`` (arrays, frames, numbers, strings, tuples), of the
    clinval package's source, of the file ``source`` if given, and of the library
    versions and numeric environment."""
    h = hashlib.sha256()
    _feed(h, _environment())
    _feed(h, _package_source())
    if source is not None:
        h.update(Path(source).read_bytes())
    for part in parts:
        _feed(h, part)
    return h.hexdigest()


def _encode(value: Any) -> Any:
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return {"f": repr(value)} if not math.isfinite(value) else value
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def _decode(value: Any) -> Any:
    return float(value["f"]) if isinstance(value, dict) else value


def _to_entry(table: pd.DataFrame, caught: list[warnings.WarningMessage]) -> dict:
    return {
        "format": _FORMAT,
        "columns": [str(c) for c in table.columns],
        "dtypes": [str(t) for t in table.dtypes],
        "values": {str(c): [_encode(v) for v in table[c].tolist()] for c in table.columns},
        "warnings": [{"category": f"{w.category.__module__}.{w.category.__qualname__}", "message": str(w.message),
                      "filename": w.filename, "lineno": w.lineno} for w in caught],
    }


def _from_entry(entry: dict) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series([_decode(v) for v in entry["values"][c]], dtype=t)
                         for c, t in zip(entry["columns"], entry["dtypes"])})


def _category(name: str) -> type[Warning]:
    import importlib

    module, _, qualname = name.rpartition(".")
    try:
        found = importlib.import_module(module)
        for attribute in qualname.split("."):
            found = getattr(found, attribute)
        return found if isinstance(found, type) and issubclass(found, Warning) else UserWarning
    except (ImportError, AttributeError):
        return UserWarning


def _write(path: Path, entry: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False, encoding="utf-8") as f:
        json.dump(entry, f, allow_nan=False, separators=(",", ":"))
    os.replace(f.name, path)


def memoised_table(kind: str, key: str, compute: Callable[[], pd.DataFrame]) -> pd.DataFrame:
    """``compute()``, or the table a previous call with the same ``key`` stored.

    Parameters
    ----------
    kind
        What is computed (a subfolder of the memo, e.g. ``"performance.evaluate"``).
    key
        :func:`digest` of everything the result depends on.
    compute
        The pure computation; its warnings are stored and raised again on a read.

    Returns
    -------
    pandas.DataFrame
        The same values, dtypes and column order whether computed or read.
    """
    folder = memo_dir()
    path = None if folder is None else folder / kind / f"{key}.json"
    if path is not None and path.is_file():
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
            table = _from_entry(entry) if entry.get("format") == _FORMAT else None
        except (OSError, ValueError, KeyError, TypeError):
            table = None  # a damaged entry is recomputed and replaced
        if table is not None:
            for w in entry["warnings"]:
                warnings.warn_explicit(w["message"], _category(w["category"]), w["filename"], w["lineno"], registry=_SHOWN)
            return table
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = compute()
    for w in caught:  # raise them as the computation did, now under the caller's filters
        warnings.warn_explicit(str(w.message), w.category, w.filename, w.lineno, registry=_SHOWN)
    if path is not None:
        try:
            _write(path, _to_entry(table, caught))
        except OSError:
            pass  # a read-only or full disk costs speed, never a result
    return table
