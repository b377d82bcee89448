"""The compiled kernels give exactly what the interpreted reference gives.

Every per-packet kernel (record walk, decode, connections, TCP rules) is one Python
source run two ways (capanalyze/jit.py): interpreted, as the reference and for small
captures, and compiled by numba for large ones. Both must produce the same report
byte for byte: the same flags, flows and stalls.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from helpers import ROOT, SAMPLES, shared_pcaps

CORPUS = ROOT / "tests" / "fuzz_corpus"
CAPTURES = sorted((SAMPLES / "crafted").glob("*.pcap")) + sorted((SAMPLES / "lab").glob("mixed.*.pcap")) \
    + sorted((SAMPLES / "lab").glob("zero_window.*.pcap"))


def report(path, jit: str) -> bytes:
    env = dict(os.environ, CAPANALYZE_JIT=jit)
    proc = subprocess.run([sys.executable, "-m", "capanalyze", "diagnose", str(path), "-f", "json",
                           "--idle-timeout", "20"], capture_output=True, env=env, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("path", CAPTURES + shared_pcaps()[:8], ids=lambda p: p.name)
def test_compiled_equals_interpreted(path):
    assert report(path, "1") == report(path, "0")


@pytest.mark.parametrize("path", sorted(CORPUS.glob("*")), ids=lambda p: p.name)
def test_compiled_equals_interpreted_on_damaged_captures(path):
    """Damage reaches numbers no real packet carries (a 3 GiB frame, a window shift of
    149): where those overflowed a column, the interpreted run stopped with an internal
    error and the compiled one went on with a wrapped number. Found by
    `soak.py --kernels ... --digests`; the captures are in tests/fuzz_corpus."""
    assert report(path, "1") == report(path, "0")


def test_packet_tables_match_in_process():
    """In one process: interpreted first, then compiled, on the busiest sample."""
    code = (
        "import capanalyze.jit as j, pandas as pd\n"
        "from capanalyze.pipeline import analyze, Settings\n"
        f"p = {str(SAMPLES / 'lab' / 'mixed.client.pcap')!r}\n"
        "a = analyze(p, Settings(keep_packets=True)).packets\n"
        "assert not j.is_compiled()\n"
        "j.compile_all()\n"
        "b = analyze(p, Settings(keep_packets=True)).packets\n"
        "pd.testing.assert_frame_equal(a, b)\n"
        "print(len(a))\n")
    env = dict(os.environ, CAPANALYZE_JIT="")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout) > 1000


def test_300_damaged_captures_give_the_same_reports_both_ways(tmp_path):
    """benchmarks/soak.py's differential run, small: each mutation's outcome and JSON
    report, interpreted then compiled. Anything that differs is saved to
    tests/fuzz_corpus/, where the test above replays it."""
    soak = [sys.executable, str(ROOT / "benchmarks" / "soak.py"), "--count", "300", "--seed", "11"]
    digests, report_md = tmp_path / "interpreted.txt", tmp_path / "compiled.md"
    for extra in (["--kernels", "interpreted", "--digests", str(digests), "--out", str(tmp_path / "i.md")],
                  ["--kernels", "compiled", "--compare", str(digests), "--out", str(report_md)]):
        subprocess.run(soak + extra, capture_output=True, cwd=ROOT, timeout=900, check=True)
    text = report_md.read_text()
    assert "| exception |" not in text and "| hang |" not in text
    assert "each mutation compared with" in text and ": 300 equal, 0 different." in text
    assert len(digests.read_text().splitlines()) == 301


@pytest.mark.parametrize("jit", ["0", "1"])
def test_a_damaged_time_is_as_silent_interpreted_as_compiled(jit):
    """A pcapng timestamp far out of range overflows the tick arithmetic. Compiled, it
    wraps around silently; interpreted, numpy warned on stderr ("RuntimeWarning: overflow
    encountered in scalar multiply"): a user would take that line for a crash."""
    path = ROOT / "tests" / "fuzz_corpus" / "shuffled_pcapng_time_out_of_calendar.pcapng"
    env = dict(os.environ, CAPANALYZE_JIT=jit)
    for command, says in (("info", "TCP packets: 7"), ("diagnose", "7 TCP packets analysed")):
        proc = subprocess.run([sys.executable, "-m", "capanalyze", command, str(path)],
                              capture_output=True, text=True, env=env, cwd=ROOT, timeout=600,
                              check=False)
        assert proc.returncode == 0
        assert proc.stderr == ""
        assert says in proc.stdout
