"""Small file-system helpers shared by the stages: atomic writes and content digests."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_directory", "atomic_write_bytes", "atomic_write_text", "sha256_file", "sha256_path", "sha256_tree"]


@contextlib.contextmanager
def atomic_directory(out_dir: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling directory that replaces ``out_dir`` only on success.

    On any error the temporary directory is removed and ``out_dir`` is left as it was,
    so a failed stage never leaves half-written outputs.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o755)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_tree(directory: str | os.PathLike) -> str:
    """Hex SHA-256 of a directory: over the sorted lines ``<relative POSIX path>\\0<file
    SHA-256>\\n`` of every regular file below it (sorted as UTF-8 bytes; empty
    directories contribute nothing). The audit ledger records directories this way."""
    directory = Path(directory)
    lines = []
    for dirpath, dirnames, filenames in os.walk(directory):
        dirnames.sort()
        for name in filenames:
            full = Path(dirpath) / name
            lines.append(f"{full.relative_to(directory).as_posix()}\0{sha256_file(full)}\n".encode())
    lines.sort()
    return hashlib.sha256(b"".join(lines)).hexdigest()


def sha256_path(path: str | os.PathLike) -> str:
    """:func:`sha256_file` for a file, :func:`sha256_tree` for a directory."""
    path = Path(path)
    if path.is_dir():
        return sha256_tree(path)
    return sha256_file(path)
