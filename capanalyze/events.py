"""Stage 3 driver: run the TCP rules (tcpstate.py) over packet-table chunks.

`TcpState` carries every connection's per-direction state from one chunk to the next,
so a capture of any size is analysed in bounded memory; `annotate` adds the event
columns to a chunk and collects the idle-gap and RST records the kernel emits.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from . import spill
from . import tcpstate as ts
from .schema import epoch_seconds
from .spill import MappedTable, RecordBuffer

RETRANS_KINDS = ["", "rto", "fast", "spurious", "tail_probe"]
MIN_ROOM = 1024   # free gap/RST rows the kernel gets at least per call (it stops when
                  # they run out and is called again with a fresh block)


class TcpState:
    """Per-connection TCP state plus the gap/RST records found so far. With
    `spill_gaps`, full blocks of gap records wait in a temporary file (see RecordBuffer).

    D (per direction, row 2 * flow + dir) and T (per connection) are MappedTables: the
    rows of connections first seen more than spill.HOT_CONNECTIONS ago are forgotten
    as the loop goes (most have ended; a late packet maps its rows back in), and after
    the loop they are read once, a block at a time, by `finish`."""

    INITIAL_FLOWS = 1024

    def __init__(self, gap_s: float = 1.0, spill_gaps: bool = False):
        self.gap_ns = int(round(gap_s * 1e9))
        capacity = self.INITIAL_FLOWS
        self._d = MappedTable(2 * capacity, ts.N_D)
        self._t = MappedTable(capacity, ts.N_T)
        self.gaps = RecordBuffer(ts.N_G, spill=spill_gaps)
        self.rsts = RecordBuffer(ts.N_R)

    @property
    def D(self) -> np.ndarray:
        return self._d.array

    @property
    def T(self) -> np.ndarray:
        return self._t.array

    def ensure_flows(self, n_flows: int):
        if n_flows > len(self.T):
            self._t.resize(n_flows)
            self._d.resize(2 * len(self.T))

    def forget_old(self, n_flows: int) -> None:
        hot = spill.HOT_CONNECTIONS
        self._t.forget_old(n_flows, hot)
        self._d.forget_old(2 * n_flows, 2 * hot)

    def finish(self, n_flows: int, capture_end_ns: int) -> FlowSummary:
        """After the last chunk: emit the gaps still open at the capture's end, and keep
        of the per-connection state only what the tables read (FlowSummary, `last_ts`
        and `high_ack` per direction). A block of connections at a time, each forgotten
        once read, so the state is never all in memory again; then it is closed."""
        summary = FlowSummary(n_flows)
        self.last_ts = np.empty(2 * n_flows, np.int64)
        self.high_ack = np.empty(2 * n_flows, np.int64)
        block = spill.HOT_CONNECTIONS
        for lo in range(0, max(n_flows, 1), block):
            hi = min(lo + block, n_flows)
            G = self.gaps.room(max(hi - lo, 1))
            self.gaps.added(ts._close_open_gaps(self.T, G, self.D, lo, hi, capture_end_ns,
                                                self.gap_ns))
            summary.take(self.T, self.D, lo, hi)
            self.last_ts[2 * lo:2 * hi] = self.D[2 * lo:2 * hi, ts.D_LAST_TS]
            self.high_ack[2 * lo:2 * hi] = self.D[2 * lo:2 * hi, ts.D_HIGHACK]
            self._forget(lo, hi)
        self._d.close()
        self._t.close()
        return summary

    def _forget(self, lo: int, hi: int) -> None:
        self._t.forget(lo, hi)
        self._d.forget(2 * lo, 2 * hi)

    def release(self) -> None:
        """Drop the records once the tables are built."""
        self.last_ts = self.high_ack = None
        for records in (self.gaps, self.rsts):
            if records is not None:
                records.close()
        self.gaps = self.rsts = None

    def gap_records(self) -> np.ndarray:
        return self.gaps.array()

    def rst_records(self) -> np.ndarray:
        return self.rsts.array()


class FlowSummary:
    """The per-connection state the flows table reads: a few columns of T (per
    connection) and of D (per direction, row 2 * flow + dir), for every connection."""

    T_FIELDS = (ts.T_FIRST_FRAME, ts.T_LAST_FRAME, ts.T_FIRST_TS, ts.T_LAST_TS,
                ts.T_HANDSHAKE, ts.T_FIN_FROM, ts.T_RST_FROM, ts.T_MAX_IDLE, ts.T_FIRST_RTT,
                ts.T_SRV_N, ts.T_SRV_IV_SUM, ts.T_SRV_IV_SQ)
    D_FIELDS = (ts.D_PKTS, ts.D_BYTES, ts.D_N_KA, ts.D_N_RETX, ts.D_N_ZW, ts.D_N_RST,
                ts.D_N_DUPACK, ts.D_N_ZWP)

    def __init__(self, n_flows: int):
        self._t = np.zeros((n_flows, len(self.T_FIELDS)), np.int64)
        self._d = np.zeros((2 * n_flows, len(self.D_FIELDS)), np.int64)

    def take(self, T: np.ndarray, D: np.ndarray, lo: int, hi: int) -> None:
        self._t[lo:hi] = T[lo:hi][:, self.T_FIELDS]
        self._d[2 * lo:2 * hi] = D[2 * lo:2 * hi][:, self.D_FIELDS]

    def t(self, field: int) -> np.ndarray:
        """Column `field` of T (a tcplayout T_ index), one value per connection."""
        return self._t[:, self.T_FIELDS.index(field)]

    def d(self, field: int, direction: int) -> np.ndarray:
        """Column `field` of D (a D_ index) for one direction (0: client to server)."""
        return self._d[direction::2, self.D_FIELDS.index(field)]


PACKET_COLUMNS = ("frame", "ts_ns", "flow_id", "dir", "tcp_flags", "seq", "ack", "window",
                  "payload_len", "wscale", "ttl", "ip_id", "tsval")
EVENT_COLUMNS = {"events": np.uint32, "rel_seq": np.int64, "rel_ack": np.int64,
                 "win": np.int64, "orig_frame": np.int64, "orig_ts_ns": np.int64}


def annotate(packets: pd.DataFrame, state: TcpState, n_flows: int) -> pd.DataFrame:
    """Add event columns to a DataFrame chunk that already has flow_id/dir."""
    add_event_columns(packets, run(packets, state, n_flows))
    return packets


def run(packets, state: TcpState, n_flows: int) -> dict[str, np.ndarray]:
    """The TCP rules over one chunk's columns -> its event columns (EVENT_COLUMNS)."""
    state.ensure_flows(n_flows)
    cols = [np.asarray(packets[name]) for name in PACKET_COLUMNS]
    n = len(cols[0])
    out = {name: np.empty(n, dtype) for name, dtype in EVENT_COLUMNS.items()}
    scratch = np.empty(ts.N_P, np.int64), np.empty(ts.N_O, np.int64)
    pos = 0
    while pos < n:   # the kernel stops early when a record buffer is full
        G, R = state.gaps.room(MIN_ROOM), state.rsts.room(MIN_ROOM)
        pos, ng, nr = ts._annotate_kernel(*cols, *out.values(), *scratch, state.D, state.T,
                                          G, R, pos, state.gap_ns)
        state.gaps.added(ng)
        state.rsts.added(nr)
    state.forget_old(n_flows)
    return out


def no_events() -> dict[str, np.ndarray]:
    return {name: np.zeros(0, dtype) for name, dtype in EVENT_COLUMNS.items()}


def add_event_columns(table: pd.DataFrame, arrays: dict[str, np.ndarray]):
    """Expand the event bits into the documented boolean columns of the packet table."""
    ev = np.asarray(arrays["events"])
    table["events"] = ev
    for name, bit in ts.EVENT_BITS.items():
        table[name] = (ev & bit) != 0
    table["retrans_kind"] = retrans_kind(ev)
    for name in ("rel_seq", "rel_ack", "win", "orig_frame"):
        table[name] = arrays[name]
    table["orig_ts"] = epoch_seconds(arrays["orig_ts_ns"])


def retrans_kind(ev: np.ndarray) -> pd.Categorical:
    code = np.zeros(len(ev), dtype=np.int8)
    retrans = (ev & ts.EV_RETRANS) != 0
    code[retrans] = 1
    code[retrans & ((ev & ts.EV_TAIL_PROBE) != 0)] = 4
    code[(ev & ts.EV_FAST) != 0] = 2
    code[(ev & ts.EV_SPURIOUS) != 0] = 3
    return pd.Categorical.from_codes(code, categories=RETRANS_KINDS)


def notable_mask(events: np.ndarray) -> np.ndarray:
    """The rows a diagnosis needs when the full packet table is not kept."""
    return (np.asarray(events) & ts.EV_NOTABLE) != 0
