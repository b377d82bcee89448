"""Soak run: thousands of damaged captures through the reader and the full diagnosis.

    python benchmarks/soak.py [--count 10000] [--seed 1] [--out benchmarks/soak_results.md]
                              [--kernels compiled|interpreted] [--digests FILE]

Each mutation (truncation, byte flips, lying lengths, shuffled blocks; tests/mutate.py)
of a sample capture is analysed in-process. Counted: clean runs, the tool's own
CaptureError (a one-line message), unexpected exceptions (bugs), hangs (runs over the
time bound), and, for every mutated file Wireshark reads without error (capinfos exit 0),
whether our record count equals Wireshark's. Unexpected cases are saved to
tests/fuzz_corpus/ so the test suite replays them.

The kernels run compiled (as on any capture over 1 MiB) unless `--kernels interpreted`
(as on small captures). `--digests FILE` writes one line per mutation: its number, kind,
outcome and a digest of its JSON report. The two ways must agree to the byte:

    python benchmarks/soak.py --kernels interpreted --digests /tmp/i.txt --out /tmp/i.md
    python benchmarks/soak.py --kernels compiled --compare /tmp/i.txt

(`--compare FILE` counts the mutations whose outcome or report differs from FILE's and
saves them to tests/fuzz_corpus/; the two runs can go side by side on two cores.)
"""
from __future__ import annotations

import argparse
import hashlib
import io
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import mutate  # noqa: E402

from capanalyze.errors import CaptureError  # noqa: E402
from capanalyze.pipeline import Settings, analyze  # noqa: E402
from capanalyze.report import jsonout  # noqa: E402

CORPUS = ROOT / "tests" / "fuzz_corpus"


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang()


def wireshark_count(data: bytes) -> int | None:
    """Records Wireshark reads, or None when it reports the file damaged or does not
    read it as a capture at all (it falls back to showing any file as one 'MIME' frame)."""
    with tempfile.NamedTemporaryFile(suffix=".pcap") as f:
        f.write(data)
        f.flush()
        proc = subprocess.run(["capinfos", "-t", "-c", "-M", "-T", "-r", f.name],
                              capture_output=True, text=True, timeout=60)
    fields = proc.stdout.strip().split("\t")
    if proc.returncode != 0 or len(fields) < 3 or not fields[1].startswith("pcap"):
        return None
    try:
        return int(fields[-1])
    except ValueError:
        return None


def one(data: bytes, bound_s: float):
    """(outcome, CaptureInfo or None, what the run gave: its JSON report or the error)."""
    signal.alarm(int(bound_s) + 1)
    try:
        result = analyze(io.BytesIO(data), Settings())
        return "ok", result.info, jsonout.to_json(jsonout.build([result]), as_bytes=True)
    except CaptureError as exc:
        return "capture_error", None, str(exc).encode()
    except Hang:
        return "hang", None, b""
    except Exception:
        last = traceback.format_exc(limit=3).strip().splitlines()[-1]
        return "exception:" + last, None, last.encode()
    finally:
        signal.alarm(0)


def load_kernels(blobs: list[bytes]) -> None:
    """Analyse each seed capture once, untimed, so that the kernels their paths call are
    compiled (or loaded from numba's cache) before any run is timed: on a fresh clone
    compiling takes a minute, and a run cut short by the time bound while numba compiles
    starts compiling again in the next (each mutation a "hang")."""
    for blob in blobs:
        analyze(io.BytesIO(blob), Settings())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "soak_results.md")
    ap.add_argument("--kernels", choices=("compiled", "interpreted"), default="compiled")
    ap.add_argument("--digests", type=Path, help="one line per mutation: outcome, report digest")
    ap.add_argument("--compare", type=Path, help="digests of another run of the same seed")
    args = ap.parse_args()
    os.environ["CAPANALYZE_JIT"] = "1" if args.kernels == "compiled" else "0"
    digests = args.digests.open("w") if args.digests else None
    if digests:
        print(f"# {run_command(args)}", file=digests)
    other_run, other_command = read_digests(args.compare) if args.compare else (None, None)
    differing = []
    seeds = sorted((ROOT / "sample_pcaps").rglob("*.pcap")) + sorted((ROOT / "sample_pcaps").rglob("*.pcapng"))
    seeds += sorted((ROOT / "tests" / "data").rglob("*.pcap*"))
    blobs = [p.read_bytes() for p in seeds if p.suffix in (".pcap", ".pcapng")]
    if args.kernels == "compiled":
        load_kernels(blobs)
    signal.signal(signal.SIGALRM, _alarm)
    use_ws = shutil.which("capinfos") is not None
    rng = random.Random(args.seed)
    outcomes, kinds, compared, mismatched = Counter(), Counter(), 0, 0
    start = time.monotonic()
    for i in range(args.count):
        kind, data = mutate.mutate(blobs[i % len(blobs)], rng)
        kinds[kind] += 1
        outcome, info, output = one(data, 5 + 20 * len(data) / 1e6)
        line = f"{i} {kind} {outcome.split(':')[0]} {hashlib.sha1(output).hexdigest()[:16]}"
        if digests:
            print(line, file=digests)
        if other_run is not None and (i >= len(other_run) or other_run[i] != line):
            differing.append(i)
            (CORPUS / f"soak_{args.seed}_{i}_{kind}_{args.kernels}_differs.pcap").write_bytes(data)
            print(f"#{i} {kind}: {line} differs from {args.compare}", file=sys.stderr)
        if outcome == "ok" and info.tcp_packets + sum(info.skipped.values()) != info.records:
            outcome = "accounting_mismatch"
        outcomes[outcome.split(":")[0]] += 1
        if outcome not in ("ok", "capture_error"):
            CORPUS.mkdir(exist_ok=True)
            (CORPUS / f"soak_{args.seed}_{i}_{kind}.pcap").write_bytes(data)
            print(f"#{i} {kind}: {outcome}", file=sys.stderr)
        if use_ws and outcome == "ok":
            theirs = wireshark_count(data)
            if theirs is not None:
                compared += 1
                if theirs != info.records:
                    mismatched += 1
                    (CORPUS / f"soak_{args.seed}_{i}_{kind}_count.pcap").write_bytes(data)
                    print(f"#{i} {kind}: records {info.records} != wireshark {theirs}", file=sys.stderr)
        if (i + 1) % 1000 == 0:
            print(f"{i + 1} done in {time.monotonic() - start:.0f} s: {dict(outcomes)}", file=sys.stderr)
    if digests:
        digests.close()
    report(args, outcomes, kinds, compared, mismatched, time.monotonic() - start, len(blobs),
           differing, other_command)


def run_command(args) -> str:
    return f"python benchmarks/soak.py --count {args.count} --seed {args.seed} --kernels {args.kernels}"


def read_digests(path: Path) -> tuple[list[str], str]:
    """A --digests file's lines, one per mutation, and the command that wrote them."""
    lines = path.read_text().splitlines()
    if lines and lines[0].startswith("# "):
        return lines[1:], lines[0][2:]
    return lines, f"the run that wrote {path.name}"


def report(args, outcomes, kinds, compared, mismatched, elapsed, n_seeds, differing,
           other_command):
    lines = [
        "# Soak run: damaged captures", "",
        f"`{run_command(args)}`, {elapsed:.0f} s, {n_seeds} seed captures.", "",
        "| outcome | count |", "|---|---|",
        *[f"| {k} | {v} |" for k, v in sorted(outcomes.items())],
        "", "| mutation | count |", "|---|---|",
        *[f"| {k} | {v} |" for k, v in sorted(kinds.items())],
        "", f"Record counts compared with Wireshark (capinfos) on the {compared} mutated files "
            f"it reads without error: {compared - mismatched} equal, {mismatched} different.", "",
    ]
    if args.compare:
        lines += [(f"Outcome and JSON report of each mutation compared with `{other_command}`: "
                   f"{args.count - len(differing)} equal, {len(differing)} different."), ""]
    text = "\n".join(lines)
    print(text)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
