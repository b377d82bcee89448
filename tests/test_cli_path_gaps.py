"""The CLI path keeps only the idle gaps the diagnosis reads (a large capture has
100k+ gaps, almost all think time between requests), and of the notable packets only
the columns it reads. It must reach exactly the same verdicts as the path that keeps
every gap and column, on every real capture we have."""
from __future__ import annotations

import tempfile

import pandas as pd
import pytest

from capanalyze import events
from capanalyze.pipeline import Settings, analyze
from helpers import sample_pcaps, shared_pcaps

CAPTURES = sample_pcaps() + shared_pcaps()
OPTIONS = [{}, {"idle_timeout": 2.0, "min_stall": 1.0}]   # short waits: short gaps matter


@pytest.mark.parametrize("options", OPTIONS, ids=["defaults", "short_timeouts"])
@pytest.mark.parametrize("path", CAPTURES, ids=[p.name for p in CAPTURES])
def test_fewer_gaps_same_diagnosis(path, options):
    every = analyze(path, Settings(keep_packets=True, **options))
    read = analyze(path, Settings(slim_notable=True, **options))   # as `diagnose` runs it

    pd.testing.assert_frame_equal(every.stalls, read.stalls)
    assert every.bracket == read.bracket
    for name in ("flows", "backoffs", "rsts", "zero_windows"):
        pd.testing.assert_frame_equal(getattr(every, name), getattr(read, name), obj=name)
    # the notable packets keep only the columns the tables read, with the same values
    assert len(read.notable.columns) < len(every.notable.columns)
    pd.testing.assert_frame_equal(every.notable[read.notable.columns], read.notable)
    # the gaps kept are rows of the full table, whole and in the same order
    kept = every.gaps.merge(read.gaps, how="inner")
    pd.testing.assert_frame_equal(kept, read.gaps.reset_index(drop=True))


def test_the_cli_path_drops_gaps_nobody_reads():
    """Think time between requests on a pooled connection is not a stall and is not
    looked up: the mixed lab capture keeps a fraction of its gaps."""
    path = next(p for p in CAPTURES if p.name == "mixed.client.pcap")
    every, read = analyze(path, Settings(keep_packets=True)), analyze(path)
    assert len(every.stalls) > 0
    assert len(read.gaps) < len(every.gaps)


def _one_gap_per_block(monkeypatch, in_memory: int = 0) -> list[int]:
    """Blocks of one record each, all but the first `in_memory` spilled; returns the
    sizes of the blocks spilled."""
    spilled = []
    original = events.RecordBuffer._spilled

    def counted(self, block):
        spilled.append(len(block))
        return original(self, block)
    monkeypatch.setattr(events.RecordBuffer, "BLOCK_ROWS", 1)
    monkeypatch.setattr(events.RecordBuffer, "MEMORY_BYTES", in_memory * 8 * events.ts.N_G)
    monkeypatch.setattr(events, "MIN_ROOM", 1)
    monkeypatch.setattr(events.RecordBuffer, "_spilled", counted)
    return spilled


SPILL_CAPTURES = [p for p in CAPTURES if p.name in (
    "nat_gateway_350s.server.pcap", "redis_retries2_924s.pcap", "mixed.client.pcap",
    "sse_proxy_cut_15s.pcap")]


@pytest.mark.parametrize("path", SPILL_CAPTURES, ids=[p.name for p in SPILL_CAPTURES])
def test_gap_records_spilled_to_disk_give_the_same_diagnosis(path, monkeypatch):
    """Past a memory budget, gap records wait in a temporary file in blocks on the CLI
    path (a 20M-packet capture has 1.3M of them); read back block by block, in order
    with the blocks kept in memory, they give the same answer."""
    every, in_memory = analyze(path, Settings(keep_packets=True)), analyze(path)
    spilled = _one_gap_per_block(monkeypatch)
    all_spilled = analyze(path)
    n_spilled = len(spilled)
    spilled_past_3 = _one_gap_per_block(monkeypatch, in_memory=3)
    three_kept = analyze(path)

    assert n_spilled >= len(all_spilled.gaps) > 0
    assert len(spilled_past_3) == n_spilled - 3
    for read in (all_spilled, three_kept):
        pd.testing.assert_frame_equal(in_memory.gaps, read.gaps)
        pd.testing.assert_frame_equal(every.stalls, read.stalls)
        assert every.bracket == read.bracket


def test_without_a_usable_temp_dir_the_blocks_stay_in_memory(tmp_path, monkeypatch):
    path = next(p for p in CAPTURES if p.name == "nlb_350s.pcap")
    expected = analyze(path)
    _one_gap_per_block(monkeypatch)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no-such-dir"))
    got = analyze(path)

    pd.testing.assert_frame_equal(expected.stalls, got.stalls)
    pd.testing.assert_frame_equal(expected.gaps, got.gaps)
    assert expected.bracket == got.bracket
