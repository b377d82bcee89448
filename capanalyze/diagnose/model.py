"""The diagnosis's shared model: options, the Stall record, the tables it reads,
and fast row access to them."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

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


class GapIndex:
    """Find the idle gap that ended at a packet, without a pandas query per lookup."""

    def __init__(self, gaps: pd.DataFrame):
        self.rows = Rows(gaps)
        self.flow = gaps["flow_id"].to_numpy()
        self.end_ts = gaps["end_ts"].to_numpy()
        self.end_frame = gaps["end_frame"].fillna(0).to_numpy(dtype=np.int64)

    def before(self, flow_id: int, ts: float, frame: int | None):
        lo, hi = np.searchsorted(self.flow, [flow_id, flow_id + 1])
        ends = self.end_ts[lo:hi]
        if frame is not None:
            exact = np.flatnonzero(self.end_frame[lo:hi] == frame)
            if len(exact):
                return self.row(lo + exact[-1])
        near = np.flatnonzero((ends <= ts + 1e-6) & (ends >= ts - 1.0))
        return self.row(lo + near[-1]) if len(near) else None

    def row(self, k: int):
        return self.rows[k]


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

    def __post_init__(self):
        self.gap_index = GapIndex(self.gaps)
        self.flow_rows = Rows(self.flows)   # flows are indexed by flow_id = position


def _covered(stalls: list[Stall], flow_id: int, ts: float) -> bool:
    return any(s.flow_id == flow_id and s.start_ts - 1 <= ts <= s.end_ts + 1 for s in stalls)


def _int(v):
    return None if pd.isna(v) else int(v)


def _frames(gap, *frames) -> list[int]:
    out = [int(gap.start_frame)] if gap is not None else []
    return out + [f for f in frames if f and f > 0]
