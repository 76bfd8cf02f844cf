"""The numeric environment every pipeline stage runs in, so results are the same bytes on
any x86-64 Linux CPU.

Floating-point results depend on which machine code computes them. Three libraries pick
that code at run time from the CPU's features, and each choice changes the last bits of
a result (measured on this project: the locked model's coefficients, hence every record):

``OpenBLAS``  a matrix kernel per CPU family (Haswell, SkylakeX, Zen, ...) and a thread
              count that splits sums differently;
``NumPy``     SIMD loops for tanh, sin, exp and friends (AVX2, AVX-512);
``glibc``     FMA variants of exp, log, pow, sin in libm.

:data:`PINNED` fixes each to the code path every x86-64 CPU runs: OpenBLAS's baseline
``Prescott`` kernel on one thread, NumPy's baseline loops only, glibc's SSE2 libm, one
OpenMP thread (scikit-learn's loss loops) and Arrow's scalar kernels. glibc reads its
setting only when a process starts, so :func:`pin` re-executes the ``clinval`` command
once with the pinned environment; everything it starts (notebook kernels included)
inherits it. The cost is speed on large matrix products, which this workbook does not
need. Set ``CLINVAL_NUMERIC_ENV=native`` to run with the CPU's own choices (results then
match ``dvc.lock`` only on a CPU like the one that wrote it).

Not covered: arm64 and macOS (Accelerate) use other code altogether; there the bytes
differ and ``clinval repro check`` reports by how much and whether a decision moved.

This module must not import numpy (or anything that does): it runs before numpy loads.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Mapping, MutableMapping, Sequence

__all__ = ["OPT_OUT", "PINNED", "is_pinned", "pin", "pinned_environment"]

OPT_OUT = "CLINVAL_NUMERIC_ENV"
"""Environment variable: ``native`` leaves the CPU's own choices in place."""

_GLIBC_MASK = "glibc.cpu.hwcaps=-FMA,-FMA4"

PINNED: Mapping[str, str] = {
    "OPENBLAS_CORETYPE": "Prescott",  # the oldest x86-64 kernel OpenBLAS ships: runs on every x86-64 CPU
    "OPENBLAS_NUM_THREADS": "1",  # a fixed split of every sum
    "OMP_NUM_THREADS": "1",  # scikit-learn's OpenMP loss and gradient loops
    "MKL_NUM_THREADS": "1",
    "NPY_ENABLE_CPU_FEATURES": "X86_V2",  # NumPy's baseline: no AVX2 / AVX-512 dispatch
    "ARROW_USER_SIMD_LEVEL": "NONE",
    "PYTHONHASHSEED": "0",
}
"""What :func:`pin` sets on x86-64 Linux, besides glibc's FMA mask in ``GLIBC_TUNABLES``."""


def _applies() -> bool:
    return sys.platform.startswith("linux") and platform.machine() in ("x86_64", "AMD64")


def pinned_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """A copy of ``environ`` (default: this process's) with the pinned settings applied.

    An existing ``GLIBC_TUNABLES`` keeps its other tunables; the FMA mask is added.
    Off x86-64 Linux, or when ``CLINVAL_NUMERIC_ENV=native``, the copy is unchanged.
    """
    env = dict(os.environ if environ is None else environ)
    if env.get(OPT_OUT) == "native" or not _applies():
        return env
    env.update(PINNED)
    tunables = [t for t in env.get("GLIBC_TUNABLES", "").split(":") if t and not t.startswith("glibc.cpu.hwcaps=")]
    env["GLIBC_TUNABLES"] = ":".join([*tunables, _GLIBC_MASK])
    return env


def is_pinned(environ: Mapping[str, str] | None = None) -> bool:
    """True if ``environ`` already is what :func:`pinned_environment` would make it."""
    env = dict(os.environ if environ is None else environ)
    return pinned_environment(env) == env


def pin(argv: Sequence[str] | None = None, *, environ: MutableMapping[str, str] | None = None) -> None:
    """Make sure this process runs in the pinned environment, re-executing it if needed.

    Call it first thing in a command's entry point, before numpy is imported. If the
    environment is already pinned (or pinning does not apply) it returns at once;
    otherwise it replaces the process with ``python -m clinval <argv>`` under the pinned
    environment (glibc reads its tunables only at process start).
    """
    env = os.environ if environ is None else environ
    if is_pinned(env):
        return
    if "numpy" in sys.modules:  # too late to re-execute safely from inside a library user's process
        return
    args = list(sys.argv[1:] if argv is None else argv)
    new_env = pinned_environment(env)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "clinval", *args], new_env)
