#!/usr/bin/env python3
"""Where the time of one `capanalyze diagnose FILE --format json` goes, stage by stage.

    python benchmarks/stages.py benchmarks/.cache/gen_5M_seed1_mixed.pcap [-o FILE.md]

Runs the real CLI in this process with wall-clock marks around the pipeline's stages
(imports, numba start, first chunk, the two-thread chunk loop, the per-connection
tables, the diagnosis, the report) and prints them; with -o, writes them as Markdown.
The chunk loop's two threads are also timed: how long the main thread (connections +
TCP rules) waited for the reader thread (read, walk, decode). For a profile by
function, run the same command under `py-spy record -- capanalyze diagnose ...`.
"""
from __future__ import annotations

import argparse
import sys
import time

T0 = time.perf_counter()
MARKS: list[tuple[str, float]] = []
WAIT = [0.0]
# what runs between two timed stages, named
BEFORE = {"numba start": "CLI: commands, arguments, opening the capture",
          "connection state read back, open gaps closed":
              "chunk loop (reader thread: read, walk, decode; main: connections, TCP rules)"}


def mark(name: str) -> None:
    MARKS.append((name, time.perf_counter() - T0, *rss_mib()))


def rss_mib() -> tuple[float, float]:
    """Resident memory now and its peak so far (MiB), from the kernel's own counters."""
    try:
        with open("/proc/self/status") as f:
            kb = dict(line.split(":", 1) for line in f if line.startswith(("VmRSS", "VmHWM")))
        return int(kb["VmRSS"].split()[0]) / 1024, int(kb["VmHWM"].split()[0]) / 1024
    except OSError:   # not Linux: times only
        return float("nan"), float("nan")


def timed(module, name: str, label: str):
    """Mark the start and end of module.name (rebinding it where the pipeline calls it)."""
    original = getattr(module, name)

    def wrapper(*args, **kwargs):
        mark(BEFORE.get(label, f"before {label}"))
        out = original(*args, **kwargs)
        mark(label)
        return out
    setattr(module, name, wrapper)


def instrument():
    import capanalyze.cli
    capanalyze.cli._pandas_without_pyarrow([])   # as cli.main does, before pandas is imported
    from capanalyze import diagnose, events, jit, pipeline, timeline
    mark("imports")

    timed(jit, "compile_all", "numba start")
    timed(events.TcpState, "finish", "connection state read back, open gaps closed")
    timed(pipeline, "flows_table", "flows table")
    timed(pipeline, "packet_table", "notable table")
    for module, name, label in [(pipeline, "_gaps", "idle gaps (facts of all, table of those read)"),
                                (timeline, "rst_table", "RSTs"),
                                (timeline, "backoff_chains", "backoff chains"),
                                (diagnose, "zero_window_episodes", "zero windows"),
                                (diagnose, "diagnose", "diagnosis")]:
        timed(module, name, label)
    run, first = events.run, [True]

    def first_chunk(*args):
        if first[0]:
            mark("first chunk read (numba loads the kernels)")
            first[0] = False
        return run(*args)
    events.run = first_chunk
    prefetch = pipeline._prefetch

    def waiting(chunks, depth=2):
        it = prefetch(chunks, depth)
        while True:
            start = time.perf_counter()
            item = next(it, None)
            WAIT[0] += time.perf_counter() - start
            if item is None:
                return
            yield item
    pipeline._prefetch = waiting
    return capanalyze.cli


def report(path: str) -> str:
    lines = [f"# Stages of `capanalyze diagnose {path} --format json`", "",
             "| stage | from (s) | to (s) | wall (s) | RSS after (MiB) | peak RSS (MiB) |",
             "|---|---:|---:|---:|---:|---:|"]
    last = 0.0
    for name, t, rss, peak in MARKS:
        if t - last >= 0.0005:
            lines.append(f"| {name} | {last:.3f} | {t:.3f} | {t - last:.3f} | {rss:.0f} | {peak:.0f} |")
        last = t
    lines += ["", f"In the chunk loop the main thread waited {WAIT[0]:.3f} s for the reader thread."]
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("capture")
    ap.add_argument("-o", "--output", help="also write the table here (Markdown)")
    args = ap.parse_args()
    cli = instrument()
    exit_now = cli._exit_now

    def finish(code):
        mark("report written")
        text = report(args.capture)
        print(text, file=sys.stderr)
        if args.output:
            with open(args.output, "w") as f:
                f.write(text)
        exit_now(code)
    cli._exit_now = finish
    sys.argv = ["capanalyze", "diagnose", args.capture, "--format", "json", "-o", "/dev/null"]
    cli.main()


if __name__ == "__main__":
    main()
