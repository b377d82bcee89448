"""Command line: `capanalyze COMMAND CAPTURE`. Each command is a small function.

Errors the user can fix (unreadable capture ...) are CaptureError: printed as one line
`capanalyze: error: ...` on stderr, exit status 2, never a traceback.
"""
from __future__ import annotations

import functools
import gc
import json
import os
import sys
from enum import Enum
from pathlib import Path

import typer

from .errors import CaptureError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Explain stalled TCP connections from a packet capture.")


class OutputFormat(str, Enum):
    text = "text"
    json = "json"


def user_errors(command):
    """Turn CaptureError into the one-line message and exit status 2."""
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except CaptureError as exc:
            print(f"capanalyze: error: {exc}", file=sys.stderr)
            raise typer.Exit(2) from None
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except Exception as exc:  # a bug of ours: one line, the traceback on request
            if os.environ.get("CAPANALYZE_DEBUG"):
                raise
            print(f"capanalyze: internal error: {type(exc).__name__}: {exc} "
                  "(set CAPANALYZE_DEBUG=1 for the traceback, and please report it)", file=sys.stderr)
            raise typer.Exit(3) from None
    return wrapper


@app.callback()
def _root() -> None:
    """Explain stalled TCP connections from a packet capture."""


@app.command()
@user_errors
def info(capture: str = typer.Argument(..., help="pcap/pcapng file (may be gzipped), or - for stdin"),
         format: OutputFormat = typer.Option(OutputFormat.text, "--format", "-f",
                                             help="text or json")) -> None:
    """What is in a capture: format, link types, time span, records by outcome."""
    from . import jit
    from .reader import open_capture

    reader = open_capture(capture)
    jit.choose(reader.info.bytes_total)   # interpreted, 5M packets would take minutes
    for _columns in reader.columns():     # the record accounting; no table is needed
        pass
    if format is OutputFormat.json:
        write_output(json.dumps(reader.info.as_dict(), indent=2) + "\n")
    else:
        write_output(render_info(reader.info) + "\n")


def write_output(text, output: Path | None = None) -> None:
    """Write a text, bytes, or pieces of either in turn, to `output` or stdout."""
    parts = [text] if isinstance(text, (str, bytes, memoryview)) else text
    if output is None:
        try:
            _write_parts(parts, sys.stdout)
        except BrokenPipeError:   # the reader has gone (`| head`): the rest is not wanted
            pass
        except OSError as exc:    # e.g. redirected to a full disk
            raise CaptureError(f"cannot write to standard output: {exc.strerror}") from None
        return
    try:
        with open(output, "w", encoding="utf-8") as out:
            _write_parts(parts, out)
    except OSError as exc:
        raise CaptureError(f"cannot write {output}: {exc.strerror}") from None
    print(f"capanalyze: wrote {output}", file=sys.stderr)


def _write_parts(parts, out) -> None:
    for part in parts:
        if isinstance(part, str):
            out.write(part)
        else:   # bytes, or a memoryview of them
            out.flush()
            out.buffer.write(part)
    out.flush()


def render_info(info) -> str:
    from .evidence import counted
    from .reader.info import iso_utc

    lines = [f"capture:     {info.path}", f"format:      {info.format}"]
    if len(info.interfaces) > 1:
        lines.append("interfaces:")
        for itf in info.interfaces:
            name = f" {itf['name']}" if itf.get("name") else ""
            lines.append(f"  {itf['id']}:{name} {itf['linktype']}, snaplen {itf['snaplen']}")
    else:
        lines.append(f"link type:   {', '.join(info.linktypes) or '-'}")
    lines.append(f"snaplen:     {info.snaplen if info.snaplen else 'unlimited'}")
    if info.first_ts_ns is not None:
        lines.append(f"first:       {iso_utc(info.first_ts_ns)}")
        lines.append(f"last:        {iso_utc(info.last_ts_ns)}")
        lines.append(f"duration:    {info.duration:.6f} s")
    if info.out_of_order_ts:
        lines.append(f"out of order: {counted(info.out_of_order_ts, 'record')} earlier than the one before")
    lines.append(f"records:     {info.records}")
    lines.append(f"  TCP packets: {info.tcp_packets}")
    for reason, count in sorted(info.skipped.items(), key=lambda kv: (-kv[1], kv[0])):
        lines.append(f"  {reason}: {count}")
    for warning in info.warnings:
        lines.append(f"warning: {warning}")
    return "\n".join(lines)


def main() -> None:
    _one_blas_thread()
    _pandas_without_pyarrow(sys.argv[1:])
    from . import commands  # noqa: F401  registers diagnose, flows, packets, plot

    _no_cycle_collection()
    try:
        app()
    except SystemExit as done:
        _exit_now(done.code)
    _exit_now(0)


def _one_blas_thread() -> None:
    """numpy's OpenBLAS starts a thread per core when numpy is imported, and that thread
    spins ~0.1 s waiting for work: on two cores, the core the start-up and the reader
    thread could use. This process does no linear algebra, so OpenBLAS gets one thread
    (set before numpy is imported; a user's own setting wins). Measured with alternating
    runs: 5M mixed packets, median 1.71 s against 1.75; 1M, 0.70 s against 0.72."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def _pandas_without_pyarrow(args: list[str]) -> None:
    """pandas imports pyarrow whenever it is installed and then stores every string
    column in it: 0.06 s of start-up and ~0.03 s of a 5M-packet diagnosis, for output
    that is the same to the byte. Only the parquet export needs it, so this process
    hides it from pandas unless that is asked for (before pandas is imported; a
    Jupyter session's pandas is left as it is)."""
    if "pyarrow" not in sys.modules and not any("parquet" in arg for arg in args):
        sys.modules["pyarrow"] = None   # `import pyarrow` now raises ImportError


def _no_cycle_collection() -> None:
    """The cycle collector rescans every live object (pandas' and numba's alone are
    ~300k) each time enough new ones pile up: 0.3 s of a 2 s run on a 5M-packet capture.
    This process makes few cycles and ends in seconds; reference counting still frees
    everything else (peak memory measured unchanged), so the collector is switched off
    once the modules are loaded."""
    if os.environ.get("CAPANALYZE_GC") != "1":
        gc.freeze()
        gc.disable()


def _exit_now(code) -> None:
    """Leave without tearing down the interpreter: freeing a multi-GB capture's tables
    object by object takes 0.2 s, and the report is already written."""
    if isinstance(code, str):
        print(code, file=sys.stderr)
        code = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):   # a closed pipe (`| head`): nothing left to say
            pass
    os._exit(code or 0)
