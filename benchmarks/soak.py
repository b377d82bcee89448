"""Soak run: thousands of damaged captures through the reader and the full diagnosis.

    python benchmarks/soak.py [--count 10000] [--seed 1] [--out benchmarks/soak_results.md]

Each mutation (truncation, byte flips, lying lengths, shuffled blocks; tests/mutate.py)
of a sample capture is analysed in-process. Counted: clean runs, the tool's own
CaptureError (a one-line message), unexpected exceptions (bugs), hangs (runs over the
time bound), and, for every mutated file Wireshark reads without error (capinfos exit 0),
whether our record count equals Wireshark's. Unexpected cases are saved to
tests/fuzz_corpus/ so the test suite replays them.
"""
from __future__ import annotations

import argparse
import io
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
    signal.alarm(int(bound_s) + 1)
    try:
        result = analyze(io.BytesIO(data), Settings())
        return "ok", result.info
    except CaptureError:
        return "capture_error", None
    except Hang:
        return "hang", None
    except Exception:
        return "exception:" + traceback.format_exc(limit=3).strip().splitlines()[-1], None
    finally:
        signal.alarm(0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "soak_results.md")
    args = ap.parse_args()
    seeds = sorted((ROOT / "sample_pcaps").rglob("*.pcap")) + sorted((ROOT / "sample_pcaps").rglob("*.pcapng"))
    seeds += sorted((ROOT / "tests" / "data").rglob("*.pcap*"))
    blobs = [p.read_bytes() for p in seeds if p.suffix in (".pcap", ".pcapng")]
    signal.signal(signal.SIGALRM, _alarm)
    use_ws = shutil.which("capinfos") is not None
    rng = random.Random(args.seed)
    outcomes, kinds, compared, mismatched = Counter(), Counter(), 0, 0
    start = time.monotonic()
    for i in range(args.count):
        kind, data = mutate.mutate(blobs[i % len(blobs)], rng)
        kinds[kind] += 1
        outcome, info = one(data, 5 + 20 * len(data) / 1e6)
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
    report(args, outcomes, kinds, compared, mismatched, time.monotonic() - start, len(blobs))


def report(args, outcomes, kinds, compared, mismatched, elapsed, n_seeds):
    lines = [
        "# Soak run: damaged captures", "",
        f"`python benchmarks/soak.py --count {args.count} --seed {args.seed}`, "
        f"{elapsed:.0f} s, {n_seeds} seed captures.", "",
        "| outcome | count |", "|---|---|",
        *[f"| {k} | {v} |" for k, v in sorted(outcomes.items())],
        "", "| mutation | count |", "|---|---|",
        *[f"| {k} | {v} |" for k, v in sorted(kinds.items())],
        "", f"Record counts compared with Wireshark (capinfos) on the {compared} mutated files "
            f"it reads without error: {compared - mismatched} equal, {mismatched} different.", "",
    ]
    text = "\n".join(lines)
    print(text)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
