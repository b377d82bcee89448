"""Damaged and hostile captures never crash, hang or lose records silently.

Hypothesis mutates the sample captures (truncations, byte flips in headers, lying
record lengths, shuffled pcapng blocks) and runs each through the reader and the full
diagnosis in-process. Only the tool's documented CaptureError may escape; the run
ends within a time proportional to the input; record accounting always adds up.
Failures found are kept in tests/fuzz_corpus/ and replayed as regression tests.
"""
from __future__ import annotations

import io
import random
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mutate
from capanalyze.errors import CaptureError
from capanalyze.pipeline import Settings, analyze
from capanalyze.report import build, render
from helpers import SAMPLES

SEEDS = sorted((SAMPLES / "crafted").glob("*.pcap"))
CORPUS = Path(__file__).parent / "fuzz_corpus"
SECONDS_PER_MB = 20.0   # generous: compiled code reads ~100 MB/s; this catches hangs


def pcapng_samples() -> list[Path]:
    return sorted(SAMPLES.rglob("*.pcapng")) + sorted((Path(__file__).parent / "data").rglob("*.pcapng"))


@pytest.fixture(scope="module", autouse=True)
def compiled_kernels():
    """Compile (or load from numba's cache) the pcap and pcapng kernels once, untimed:
    on a fresh clone that takes seconds, which the time limit in check() is not about."""
    for path in SEEDS[:1] + pcapng_samples()[:1]:
        analyze(io.BytesIO(path.read_bytes()), Settings(keep_packets=True))


def check(data: bytes):
    """Analyse damaged bytes; return the analysis or None for a CaptureError."""
    start = time.monotonic()
    try:
        result = analyze(io.BytesIO(data), Settings(keep_packets=True))
    except CaptureError as exc:
        assert "\n" not in str(exc)
        result = None
    elapsed = time.monotonic() - start
    assert elapsed < 5 + SECONDS_PER_MB * len(data) / 1e6, f"took {elapsed:.1f} s"
    if result is not None:
        info = result.info
        assert info.tcp_packets + sum(info.skipped.values()) == info.records
        assert len(result.packets) == info.tcp_packets
        assert result.packets["frame"].is_monotonic_increasing
        report = build([result])
        for fmt in ("text", "md", "json"):
            assert render(report, fmt)
    return result


def seed_bytes(index: int) -> bytes:
    return SEEDS[index % len(SEEDS)].read_bytes()


fuzz_settings = settings(max_examples=60, deadline=None,
                         suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@fuzz_settings
@given(st.integers(0, 100), st.integers(0, 1 << 20))
def test_truncation_anywhere(seed, at):
    check(mutate.truncate(seed_bytes(seed), at))


@fuzz_settings
@given(st.integers(0, 100), st.lists(st.tuples(st.integers(0, 255), st.integers(0, 255)), min_size=1, max_size=8))
def test_byte_flips_in_headers(seed, flips):
    data = seed_bytes(seed)
    for offset, value in flips:
        data = mutate.flip(data, offset, value)   # the file and first record headers
    check(data)


@fuzz_settings
@given(st.integers(0, 100), st.integers(0, 1 << 30), st.integers(0, 255))
def test_byte_flips_anywhere(seed, offset, value):
    check(mutate.flip(seed_bytes(seed), offset, value))


@fuzz_settings
@given(st.integers(0, 100), st.integers(0, 1 << 16),
       st.sampled_from([0, 1, 15, 65536, 262145, 1 << 24, 0x7FFFFFFF, 0xFFFFFFFF]))
def test_lying_record_lengths(seed, record, value):
    check(mutate.lie_about_length(seed_bytes(seed), record, value))


@fuzz_settings
@given(st.integers(0, 1 << 30))
def test_shuffled_pcapng_blocks(seed):
    pcapng = pcapng_samples()
    if not pcapng:
        pytest.skip("no pcapng sample yet")
    data = pcapng[seed % len(pcapng)].read_bytes()
    check(mutate.shuffle_blocks(data, seed))


def test_random_soak_of_200_mutations():
    rng = random.Random(20261121)
    for i in range(200):
        kind, data = mutate.mutate(seed_bytes(i), rng)
        try:
            check(data)
        except Exception:
            (CORPUS / f"soak_{i}_{kind}.pcap").write_bytes(data)
            raise


@pytest.mark.parametrize("path", sorted(CORPUS.glob("*")), ids=lambda p: p.name)
def test_regression_corpus(path):
    check(path.read_bytes())
