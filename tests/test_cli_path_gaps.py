"""The CLI path keeps only the idle gaps the diagnosis reads (a large capture has
100k+ gaps, almost all think time between requests). It must reach exactly the same
verdicts as the path that keeps every gap, on every real capture we have."""
from __future__ import annotations

import pandas as pd
import pytest

from capanalyze.pipeline import Settings, analyze
from helpers import sample_pcaps, shared_pcaps

CAPTURES = sample_pcaps() + shared_pcaps()
OPTIONS = [{}, {"idle_timeout": 2.0, "min_stall": 1.0}]   # short waits: short gaps matter


@pytest.mark.parametrize("options", OPTIONS, ids=["defaults", "short_timeouts"])
@pytest.mark.parametrize("path", CAPTURES, ids=[p.name for p in CAPTURES])
def test_fewer_gaps_same_diagnosis(path, options):
    every = analyze(path, Settings(keep_packets=True, **options))
    read = analyze(path, Settings(**options))

    pd.testing.assert_frame_equal(every.stalls, read.stalls)
    assert every.bracket == read.bracket
    for name in ("flows", "backoffs", "rsts", "zero_windows"):
        pd.testing.assert_frame_equal(getattr(every, name), getattr(read, name), obj=name)
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
