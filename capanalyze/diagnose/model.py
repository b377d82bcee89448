"""The diagnosis's shared model: options, the Stall record, the tables it reads,
and fast row access to them."""
from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..jit import kernel

SEVERITY = ["silent_middlebox_eviction", "missing_keepalive", "middlebox_cut",
            "peer_unreachable", "app_slowness"]
EVICTION_MIN_IDLE_S = 15.0   # shorter quiet spells before a black hole are "unreachable"
STEADY_MAX_GAP_S = 5.0       # heartbeat cadence that counts as steady traffic
ROUND_AGE_TOL_S = 0.010    # a proxy timer at whole seconds lands within this (+ 2 RTTs)
HEARTBEAT_MAX_BYTES = 300  # mean server payload per packet of a heartbeat stream


class Rows:
    """Row k of a table as an object with attribute access, from numpy columns:
    microseconds per row where pandas' .loc/.iloc take a millisecond. Columns are
    converted on first use: most rules read a handful of a table's columns."""

    def __init__(self, table: pd.DataFrame):
        self._table, self._columns = table, {}

    def column(self, name: str) -> np.ndarray:
        if name not in self._columns:
            self._columns[name] = self._table[name].to_numpy()
        return self._columns[name]

    def __getitem__(self, k: int) -> Row:
        return Row(self, k)


class Row:
    __slots__ = ("_k", "_rows")

    def __init__(self, rows: Rows, k: int):
        self._rows, self._k = rows, k

    def __getattr__(self, name: str):
        try:
            return self._rows.column(name)[self._k]
        except KeyError:
            raise AttributeError(name) from None


LOOKUP_WINDOW_S = 1.0   # without a gap ending at the packet, one ending this long before it
LOOKUP_EPS_S = 1e-6


class GapIndex:
    """Find the idle gap that ended at a packet, without a pandas query per lookup.
    Plain lists: a connection has a few gaps, and numpy's per-call cost was most of
    the ~1600 lookups of a 5M-packet diagnosis (13 ms)."""

    def __init__(self, gaps: pd.DataFrame):
        self.rows = Rows(gaps)
        self.flow = gaps["flow_id"].to_numpy().tolist()   # sorted: gaps_table's order
        self.end_ts = gaps["end_ts"].to_numpy().tolist()
        self.end_frame = gaps["end_frame"].fillna(0).to_numpy(dtype=np.int64).tolist()

    def before(self, flow_id: int, ts: float, frame: int | None):
        """The last of the connection's gaps that ended at `frame`, else the last that
        ended within LOOKUP_WINDOW_S before `ts`."""
        lo, hi = bisect_left(self.flow, flow_id), bisect_left(self.flow, flow_id + 1)
        latest_first = range(hi - 1, lo - 1, -1)
        if frame is not None:
            for k in latest_first:
                if self.end_frame[k] == frame:
                    return self.row(k)
        for k in latest_first:
            if ts - LOOKUP_WINDOW_S <= self.end_ts[k] <= ts + LOOKUP_EPS_S:
                return self.row(k)
        return None

    def row(self, k: int):
        return self.rows[k]


class Lookups:
    """(connection, time) of every lookup a rule may make: at any notable packet (RSTs,
    closes), a RST's trigger, a backoff chain's original. Sorted once; `found()` then
    tells which of a batch of gaps GapIndex.before() may return for them."""

    def __init__(self, notable: pd.DataFrame, rsts: pd.DataFrame, backoffs: pd.DataFrame):
        trigger = rsts["trigger_delay_s"].notna().to_numpy()
        flows = [notable["flow_id"].to_numpy(), rsts["flow_id"].to_numpy()[trigger],
                 backoffs["flow_id"].to_numpy(np.int64)]
        times = [notable["ts"].to_numpy(),
                 (rsts["ts"] - rsts["trigger_delay_s"]).to_numpy()[trigger],
                 backoffs["original_ts"].to_numpy(np.float64)]
        flows, times = np.concatenate(flows).astype(np.int64), np.concatenate(times)
        order = np.lexsort((times, flows))
        self.times = times[order]
        # where each connection's times start: first[f]..first[f + 1]
        self.first = np.searchsorted(flows[order], np.arange(flows.max(initial=-1) + 2))

    def found(self, gap_flow: np.ndarray, gap_end: np.ndarray) -> np.ndarray:
        """Every gap ending in a lookup's window, widened by a millisecond so no rounding
        decides. Keeping all of them gives every lookup the same candidates, so the
        same answer."""
        found = np.zeros(len(gap_flow), dtype=np.bool_)
        slack = 1e-3
        _ends_near(gap_flow, gap_end, self.first, self.times, LOOKUP_EPS_S + slack,
                   LOOKUP_WINDOW_S + slack, found)
        return found


@kernel
def _ends_near(gap_flow, gap_end, first, ts, before, after, found):
    """found[i]: a time of gap i's connection lies in [end - before, end + after]
    (`ts` sorted by connection, then time; `first[f]` where connection f starts)."""
    for i in range(len(gap_flow)):
        if gap_flow[i] + 1 >= len(first):   # a connection past the last one looked up
            continue
        start, stop = first[gap_flow[i]], first[gap_flow[i] + 1]
        k = _first_not_before(ts, start, stop, gap_end[i] - before)
        found[i] = k < stop and ts[k] <= gap_end[i] + after


@kernel(inline="always")
def _first_not_before(ts, lo, hi, t):
    """np.searchsorted(ts[lo:hi], t) + lo, by hand: numba's searchsorted pulls in its
    array-math module when a cached kernel is loaded (0.05 s of start-up)."""
    while lo < hi:
        mid = (lo + hi) // 2
        if ts[mid] < t:
            lo = mid + 1
        else:
            hi = mid
    return lo


@dataclass
class Options:
    idle_timeout: float | None = None   # the user's known middlebox idle timeout
    min_stall: float = 5.0              # shorter waits are not stalls


@dataclass
class Stall:
    flow_id: int
    cls: str
    start_ts: float
    end_ts: float
    idle_before_s: float | None
    frames: list[int]
    evidence: list[str]
    factors: list[str] = field(default_factory=list)
    confidence: float = 0.5
    backoff: dict | None = None
    culprits: list[dict] = field(default_factory=list)
    remedy: str = ""
    waiting: str | None = None


@dataclass
class Tables:
    flows: pd.DataFrame
    gaps: pd.DataFrame
    backoffs: pd.DataFrame
    rsts: pd.DataFrame
    notable: pd.DataFrame
    capture_end: float
    zero_windows: pd.DataFrame
    survived_idle_s: np.ndarray   # sorted (culprits.survived_idles): `gaps` may be a subset

    def __post_init__(self):
        self.gap_index = GapIndex(self.gaps)
        self.flow_rows = Rows(self.flows)   # flows are indexed by flow_id = position


class Covered:
    """Whether a stall already found explains a moment of a connection: it covers from a
    second before it starts to a second after it ends. Indexed by connection: scanning
    every stall per lookup took 2.1 s with 10k stalls (5M packets, 254k connections)."""

    def __init__(self, stalls: list[Stall]):
        self._spans: dict[int, list[tuple[float, float]]] = {}
        for s in stalls:
            self._spans.setdefault(s.flow_id, []).append((s.start_ts, s.end_ts))

    def __call__(self, flow_id: int, ts: float) -> bool:
        return any(start - 1 <= ts <= end + 1 for start, end in self._spans.get(flow_id, ()))


def _int(v):
    return None if pd.isna(v) else int(v)


def _frames(gap, *frames) -> list[int]:
    out = [int(gap.start_frame)] if gap is not None else []
    return out + [f for f in frames if f and f > 0]
