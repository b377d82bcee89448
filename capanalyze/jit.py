"""Compiled or interpreted: one source for every per-packet kernel, two ways to run it.

Kernels are plain Python functions over numpy arrays, written in the subset numba
compiles. Small captures run them interpreted: numba's runtime needs ~0.8 s to start
even from its cache, more than a small capture takes to analyse. Larger inputs call
`compile_all()` first: each kernel becomes a numba function (cache=True, nogil=True)
and module globals are rebound so compiled kernels call compiled kernels.

The interpreted run is also the reference the compiled one is checked against
(tests/test_jit.py): same code, so the same flags, flows and stalls.
CAPANALYZE_JIT=0 forces interpretation, CAPANALYZE_JIT=1 compilation.
"""
from __future__ import annotations

import os
import sys
COMPILE_ABOVE_BYTES = 1 << 20   # interpreted kernels do ~30k packets/s: < 1 s here

_registry: list[Kernel] = []
_compiled = False
# Set by the CLI: the process is ours, so numba's BLAS probe may be skipped (see below).
cli_process = False


class Kernel:
    """A kernel: calls the compiled version once there is one, else the Python one."""

    def __init__(self, fn, options):
        self.py_func, self.options, self.dispatcher = fn, options, None
        self.__name__, self.__doc__, self.__wrapped__ = fn.__name__, fn.__doc__, fn

    def __call__(self, *args):
        if self.dispatcher is not None:
            return self.dispatcher(*args)
        return self.py_func(*args)


def kernel(fn=None, **options):
    """Decorator: `@kernel` or `@kernel(inline="always")` (numba options)."""
    def register(f):
        k = Kernel(f, options)
        _registry.append(k)
        return k
    return register(fn) if fn is not None else register


def compile_all() -> None:
    global _compiled
    if _compiled:
        return
    if cli_process:
        _skip_blas_probe()
    from numba import njit

    for k in _registry:
        k.dispatcher = njit(cache=True, nogil=True, _nrt=False, **k.options)(k.py_func)
    # Compiled callers must see dispatchers, not Kernel objects, wherever a kernel was
    # imported (`from .records import rd32` binds it in the importer too).
    for name, module in list(sys.modules.items()):
        if name == "capanalyze" or name.startswith("capanalyze."):
            for attr, value in list(vars(module).items()):
                if isinstance(value, Kernel) and value.dispatcher is not None:
                    setattr(module, attr, value.dispatcher)
    _compiled = True


def _skip_blas_probe() -> None:
    """numba probes for BLAS by importing scipy.linalg when its typing context first
    loads: 0.27 s of start-up wherever scipy is installed. No kernel here does linear
    algebra; a notebook may, so only the CLI's own process skips the probe."""
    from numba.np import linalg

    def no_blas():
        raise ImportError("BLAS probe skipped by the capanalyze CLI")
    linalg.ensure_blas = no_blas


def is_compiled() -> bool:
    return _compiled


def choose(input_bytes: int | None) -> None:
    """Compile when the input is large or of unknown size (stdin), unless told."""
    forced = os.environ.get("CAPANALYZE_JIT")
    if forced == "0":
        return
    if forced == "1" or input_bytes is None or input_bytes > COMPILE_ABOVE_BYTES:
        compile_all()
