"""Compiled or interpreted: one source for every per-packet kernel, two ways to run it.

Kernels are plain Python functions over numpy arrays, written in the subset numba
compiles. Small captures run them interpreted: importing numba and loading the kernels
from its cache takes ~0.15 s, more than a small capture takes to analyse. Larger inputs
call `compile_all()` first: each kernel becomes a numba function (cache=True,
nogil=True) and module globals are rebound so compiled kernels call compiled kernels.

Kernels call no numpy array functions (np.searchsorted, np.sort ...), only scalar casts:
loading such a kernel from the cache imports numba's array-math modules, whose linalg
part probes for BLAS by importing scipy where it is installed (0.05-0.17 s per run).

The interpreted run is also the reference the compiled one is checked against
(tests/test_jit.py): same code, so the same flags, flows and stalls.
CAPANALYZE_JIT=0 forces interpretation, CAPANALYZE_JIT=1 compilation.
"""
from __future__ import annotations

import os
import sys

import numpy as np

COMPILE_ABOVE_BYTES = 1 << 20   # interpreted kernels do ~30k packets/s: < 1 s here

_registry: list[Kernel] = []
_compiled = False
_interpreting = False   # inside an interpreted kernel (they run on one thread)


class Kernel:
    """A kernel: calls the compiled version once there is one, else the Python one."""

    def __init__(self, fn, options):
        self.py_func, self.options, self.dispatcher = fn, options, None
        self.__name__, self.__doc__, self.__wrapped__ = fn.__name__, fn.__doc__, fn

    def __call__(self, *args):
        if self.dispatcher is not None:
            return self.dispatcher(*args)
        global _interpreting
        if _interpreting:      # called by another kernel
            return self.py_func(*args)
        # Compiled integer arithmetic wraps around silently; numpy's scalars wrap too but
        # warn on stderr (a damaged timestamp times 1000). Interpreted, the same silence.
        _interpreting = True
        try:
            with np.errstate(all="ignore"):
                return self.py_func(*args)
        finally:
            _interpreting = False


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
    from numba import njit

    for k in _registry:
        k.dispatcher = njit(cache=True, nogil=True, _nrt=False, **k.options)(k.py_func)
        _load_without_refresh(k.dispatcher)
    # Compiled callers must see dispatchers, not Kernel objects, wherever a kernel was
    # imported (`from .records import rd32` binds it in the importer too).
    for name, module in list(sys.modules.items()):
        if name == "capanalyze" or name.startswith("capanalyze."):
            for attr, value in list(vars(module).items()):
                if isinstance(value, Kernel) and value.dispatcher is not None:
                    setattr(module, attr, value.dispatcher)
    _compiled = True


def _load_without_refresh(dispatcher) -> None:
    """numba refreshes its typing and lowering contexts before loading a cached kernel:
    installing ~2000 registrations that only compiling reads, 0.085 s of every compiled
    run (half of its kernel loading). Loaded machine code needs none of them, and numba
    refreshes before any compilation anyway (CompilerBase.__init__), so our kernels
    load without it. Only where numba has the internals this relies on."""
    cache = getattr(dispatcher, "_cache", None)
    load = getattr(cache, "_load_overload", None)
    guard = getattr(cache, "_guard_against_spurious_io_errors", None)
    if load is None or guard is None:
        return

    def load_overload(sig, target_context):
        with guard():
            return load(sig, target_context)
        return None   # the guard swallowed an I/O error: numba compiles instead
    cache.load_overload = load_overload


def is_compiled() -> bool:
    return _compiled


def choose(input_bytes: int | None) -> None:
    """Compile when the input is large or of unknown size (stdin), unless told."""
    forced = os.environ.get("CAPANALYZE_JIT")
    if forced == "0":
        return
    if forced == "1" or input_bytes is None or input_bytes > COMPILE_ABOVE_BYTES:
        compile_all()
