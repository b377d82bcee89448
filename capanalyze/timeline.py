"""Stage 4: TCP events -> derived tables: idle gaps, backoff chains, RSTs.

Inputs are what the TCP-state stage produced: the notable packets (any packet with an
event bit; the whole table works too), the gap and RST records the kernel emitted, the
flows table and the final per-direction state. Everything here is per connection or
per event (thousands of rows, not millions), so it is plain pandas; what ended each gap
is one compiled pass (tcprecords.gap_endings), as a 20M-packet capture has ~1M gaps.
"""
from __future__ import annotations

import statistics
from itertools import pairwise

import numpy as np
import pandas as pd

from . import retries
from . import tcpstate as ts
from .schema import epoch_seconds
from .tcprecords import GAP_ENDINGS, gap_endings

SIDE = np.array(["client", "server"], dtype=object)
INITIAL_TTLS = (32, 64, 128, 255)
# A chain whose next retransmission was due this long before the capture ended was
# given up on (Linux RTO timers fire within milliseconds of their time).
GIVE_UP_MARGIN_S = 0.25
GIVE_UP_MARGIN_FRACTION = 0.002


# ---------------------------------------------------------------- idle gaps
def gaps_table(records: np.ndarray, high_ack: np.ndarray,
               columns: tuple[str, ...] | None = None, ordered: bool = True) -> pd.DataFrame:
    """Every interval longer than the threshold with no packet but keepalives, ordered
    by connection, then time (the diagnosis looks gaps up by connection). `high_ack` is
    the highest ACK each direction saw (TcpState.high_ack). `columns` builds only those;
    `ordered=False` keeps the records' own order."""
    build = _gap_columns(records, high_ack)
    order = np.lexsort((records[:, ts.G_START_TS], records[:, ts.G_FLOW])) if ordered else None
    cols = {}
    for name in columns or build:   # one column at a time: a 1M-gap table is not held twice
        column = build[name]()
        cols[name] = column if order is None else column[order]
    return pd.DataFrame(cols, copy=False)


def _gap_columns(g: np.ndarray, high_ack: np.ndarray) -> dict:
    """Column name -> how to build it from the kernel's gap records."""
    def start_ts():
        return epoch_seconds(g[:, ts.G_START_TS])

    def end_ts():
        return epoch_seconds(g[:, ts.G_END_TS])

    return {
        "flow_id": lambda: g[:, ts.G_FLOW],
        "start_frame": lambda: g[:, ts.G_START_FRAME],
        "end_frame": lambda: _end_frame(g[:, ts.G_END_FRAME]),
        "start_ts": start_ts,
        "end_ts": end_ts,
        "duration_s": lambda: (g[:, ts.G_END_TS] - g[:, ts.G_START_TS]) / 1e9,
        "silence_s": lambda: _silence(g),
        "keepalives": lambda: g[:, ts.G_KA],
        "keepalive_acks": lambda: g[:, ts.G_KA_ACK],
        "keepalive_from": lambda: _side_bits(g[:, ts.G_KA_DIRS]),
        "keepalive_interval_s": lambda: _keepalive_interval(g),
        "unacked_client_bytes": lambda: g[:, ts.G_UNACKED_C],
        "unacked_server_bytes": lambda: g[:, ts.G_UNACKED_S],
        "last_data_from": lambda: _side_or_none(g[:, ts.G_LAST_DATA_DIR]),
        "ended_by": lambda: _ended_by(g, high_ack),
        "end_from": lambda: _side_or_none(g[:, ts.G_END_DIR]),
        "fin_before": lambda: _side_bits(g[:, ts.G_CLOSED] & 3),
        "rst_before": lambda: (g[:, ts.G_CLOSED] >> 2) != 0,
    }


def _end_frame(frames: np.ndarray):
    """The frame that ended the gap; missing when the capture ended it."""
    return pd.arrays.IntegerArray(frames, frames < 0)


def _silence(g):
    """Seconds from the gap's last packet to its end: its duration, or the time since
    its last keepalive probe, which a middlebox's idle timer counts as traffic."""
    last = np.where(g[:, ts.G_KA] > 0, g[:, ts.G_KA_LAST], g[:, ts.G_START_TS])
    return (g[:, ts.G_END_TS] - last) / 1e9


def _keepalive_interval(g):
    n = g[:, ts.G_KA]
    span = (g[:, ts.G_KA_LAST] - g[:, ts.G_KA_FIRST]) / 1e9
    per_dir = np.where(g[:, ts.G_KA_DIRS] == 3, 2, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(n > per_dir, span / (n / per_dir - 1), np.nan)


def _ended_by(g, high_ack):
    """What ended each gap, as a categorical: text columns of 100k+ gaps are slow to
    build as strings and take 8x the memory."""
    code = np.empty(len(g), dtype=np.int8)
    gap_endings(np.ascontiguousarray(g), high_ack, code)
    return pd.Categorical.from_codes(code, categories=list(GAP_ENDINGS))


def _side_bits(bits):
    return pd.Categorical.from_codes(bits & 3, categories=["", "client", "server", "both"])


def _side_or_none(dirs):
    return pd.Categorical.from_codes(np.where(dirs < 0, -1, np.clip(dirs, 0, 1)),
                                     categories=["client", "server"])


# ---------------------------------------------------------------- backoff chains
def backoff_chains(notable: pd.DataFrame, capture_end: float) -> pd.DataFrame:
    """Each segment retransmitted more than once by RTO backoff, with the model fit."""
    cols = _Columns(notable)
    is_retx = cols.retx & np.isin(cols.kind, [RTO_CODE, TLP_CODE])
    idx = np.flatnonzero(is_retx)
    order = idx[np.lexsort((cols.frame[idx], cols.rel_seq[idx], cols.dir[idx], cols.flow[idx]))]
    key = np.stack([cols.flow[order], cols.dir[order], cols.rel_seq[order]], axis=1)
    starts = np.flatnonzero(np.r_[True, (key[1:] != key[:-1]).any(axis=1)]) if len(order) else []
    bounds = list(zip(starts, list(starts[1:]) + [len(order)]))
    times = cols.ts[order].tolist()   # a chain's few times as floats: numpy per chain is slow
    rows = [_chain(order[a:b], times[a:b], cols, capture_end) for a, b in bounds if b - a >= 2]
    chains = pd.DataFrame(rows, columns=CHAIN_COLUMNS)
    # a count, or None when no Linux schedule fits: as a float column (NaN for None) the
    # evidence read "tcp_retries2 15.0" and the JSON 15.0
    chains["retries2"] = pd.Series([r["retries2"] for r in rows], index=chains.index, dtype=object)
    return chains


RTO_CODE, TLP_CODE = 1, 4  # events.RETRANS_KINDS codes


class _Columns:
    """The notable rows as plain arrays, ordered by connection, for fast lookups."""

    def __init__(self, n: pd.DataFrame):
        self.flow = n["flow_id"].to_numpy()
        self.dir = n["dir"].to_numpy()
        self.rel_seq = n["rel_seq"].to_numpy()
        self.frame = n["frame"].to_numpy()
        self.ts = n["ts"].to_numpy()
        self.seq = n["seq"].to_numpy()
        self.syn = n["syn"].to_numpy()
        self.retx = n["retransmission"].to_numpy()
        self.kind = n["retrans_kind"].cat.codes.to_numpy()
        self.orig_frame = n["orig_frame"].to_numpy()
        self.orig_ts = n["orig_ts"].to_numpy()
        ev = n["events"].to_numpy()
        self.ends = ((ev & (ts.EV_ACKS_RETRANS | ts.EV_RST | ts.EV_FIN)) != 0)
        self.events = ev
        self.by_flow = np.argsort(self.flow, kind="stable")
        self.flow_sorted = self.flow[self.by_flow]

    def after(self, flow_id: int, t: float) -> np.ndarray:
        """Rows of this connection later than t that can end a chain, in file order."""
        lo, hi = np.searchsorted(self.flow_sorted, [flow_id, flow_id + 1])
        rows = self.by_flow[lo:hi]
        return rows[(self.ts[rows] > t) & self.ends[rows]]


CHAIN_COLUMNS = [
    "flow_id", "sender", "rel_seq", "seq_raw", "syn", "original_frame", "original_ts", "frames",
    "times_s", "intervals_s", "retransmissions", "first_rto_s", "growth", "capped",
    "ended_by", "end_frame", "end_ts", "model", "retries2", "retries2_at_least",
    "give_up_s", "give_up_ts", "model_error_s",
]


def _chain(rows: np.ndarray, retx_ts: list[float], c: _Columns, capture_end: float) -> dict:
    """One chain: its rows in the notable table and their times, in order."""
    first = rows[0]
    known = c.orig_frame[first] > 0
    # Without the original, assume the first interval was half the second (doubling).
    orig_ts = float(c.orig_ts[first]) if known else retx_ts[0] - (retx_ts[1] - retx_ts[0]) / 2
    times = [t - orig_ts for t in retx_ts]
    intervals = [times[0]] + [b - a for a, b in pairwise(retx_ts)]
    ended_by, end_frame, end_ts = _chain_end(rows, retx_ts, c, capture_end)
    syn = bool(c.syn[first])
    fit = retries.fit_chain(times, syn, ended_by == "gave_up")
    return {
        "flow_id": int(c.flow[first]), "sender": SIDE[int(c.dir[first])],
        "rel_seq": int(c.rel_seq[first]), "seq_raw": int(c.seq[first]), "syn": syn,
        "original_frame": int(c.orig_frame[first]) if known else None,
        "original_ts": orig_ts, "frames": c.frame[rows].tolist(),
        "times_s": [round(t, 6) for t in times],
        "intervals_s": [round(x, 6) for x in intervals],
        "retransmissions": len(rows), "first_rto_s": round(intervals[0], 6),
        "growth": _growth(intervals), "capped": max(intervals) >= retries.RTO_MAX * 0.95,
        "ended_by": ended_by, "end_frame": end_frame, "end_ts": end_ts,
        "model": fit.model, "retries2": fit.retries2, "retries2_at_least": fit.at_least,
        "give_up_s": fit.give_up_s,
        "give_up_ts": orig_ts + fit.give_up_s if fit.give_up_s is not None else None,
        "model_error_s": fit.max_error_s,
    }


def _growth(intervals: list[float]) -> float:
    """Median ratio of successive intervals below the 120 s cap (2.0 for RTO backoff)."""
    usable = [x for x in intervals if x < retries.RTO_MAX * 0.95]
    if len(usable) < 2:
        return float("nan")
    return statistics.median([b / max(a, 1e-9) for a, b in pairwise(usable)])


def _chain_end(rows: np.ndarray, retx_ts: list[float], c: _Columns, capture_end: float):
    """ACKed / RST / FIN / sender gave up / capture ended, after the last retransmission."""
    last_ts = retx_ts[-1]
    after = c.after(int(c.flow[rows[0]]), last_ts)
    for kind, bit in (("acked", ts.EV_ACKS_RETRANS), ("rst", ts.EV_RST), ("fin", ts.EV_FIN)):
        hit = after[(c.events[after] & bit) != 0]
        if len(hit):
            return kind, int(c.frame[hit[0]]), float(c.ts[hit[0]])
    next_due = last_ts + min(2 * (last_ts - retx_ts[-2]), retries.RTO_MAX)   # a chain has 2+
    margin = GIVE_UP_MARGIN_S + GIVE_UP_MARGIN_FRACTION * (next_due - last_ts)
    if capture_end > next_due + margin:
        return "gave_up", None, float(next_due)
    return "capture_end", None, float(capture_end)


# ---------------------------------------------------------------- RSTs
def rst_table(records: np.ndarray, last_ts: np.ndarray) -> pd.DataFrame:
    """Every RST: who sent it, was it heeded, and does it look forged by a middlebox.
    `last_ts`: each direction's last packet (TcpState.last_ts)."""
    r = records
    flow, direction = r[:, ts.R_FLOW], r[:, ts.R_DIR]
    rst_ts = r[:, ts.R_TS]
    peer_last = last_ts[2 * flow + 1 - direction] if len(r) else np.zeros(0)
    rsts = pd.DataFrame({
        "flow_id": flow, "frame": r[:, ts.R_FRAME], "ts": epoch_seconds(rst_ts),
        "sender": SIDE[direction] if len(r) else [],
        "ttl": r[:, ts.R_TTL], "expected_ttl": r[:, ts.R_EXP_TTL],
        "ip_id": r[:, ts.R_IPID], "previous_ip_id": r[:, ts.R_LAST_IPID],
        "seq_offset": r[:, ts.R_SEQ_OFF], "has_ack": r[:, ts.R_HAS_ACK].astype(bool),
        "trigger_frame": pd.array(np.where(r[:, ts.R_TRIGGER_FRAME] > 0, r[:, ts.R_TRIGGER_FRAME], 0), dtype="Int64"),
        "trigger_delay_s": np.where(r[:, ts.R_TRIGGER_DT] >= 0, r[:, ts.R_TRIGGER_DT] / 1e9, np.nan),
        "trigger_idle_s": np.where(r[:, ts.R_TRIGGER_IDLE] >= 0, r[:, ts.R_TRIGGER_IDLE] / 1e9, np.nan),
        "rtt_s": np.where(r[:, ts.R_FIRST_RTT] > 0, r[:, ts.R_FIRST_RTT] / 1e9, np.nan),
        "sender_packets_before": r[:, ts.R_SENDER_PKTS],
        "peer_kept_sending": peer_last > rst_ts,
    })
    rsts.loc[rsts["trigger_frame"] == 0, "trigger_frame"] = pd.NA
    rsts["ttl_mismatch"] = (rsts["expected_ttl"] >= 0) & (rsts["ttl"] != rsts["expected_ttl"])
    rsts["ip_id_jump"] = _ip_id_jump(rsts)
    # Only a sender seen through routers (TTL below its initial value) can be told apart
    # by timing: a local host answers its own packets at once.
    remote = ~rsts["expected_ttl"].isin(INITIAL_TTLS) & (rsts["expected_ttl"] >= 0)
    rsts["faster_than_rtt"] = remote & (rsts["trigger_delay_s"] < 0.5 * rsts["rtt_s"])
    rsts["forged_reasons"] = _forged_reasons(rsts)
    # An IP ID jump alone proves nothing (many hosts share one counter across all their
    # connections): it is reported as a hint, and only TTL or timing make a RST forged.
    rsts["forged"] = rsts["ttl_mismatch"] | rsts["faster_than_rtt"]
    return rsts


def _ip_id_jump(rsts):
    """An IP ID far from the sender's own sequence (0 is common for RSTs: not counted)."""
    known = (rsts["previous_ip_id"] > 0) & (rsts["ip_id"] > 0)
    delta = (rsts["ip_id"] - rsts["previous_ip_id"]) % 65536
    return known & (delta > 1024) & (delta < 65536 - 1024)


def _forged_reasons(rsts):
    reasons = []
    for row in rsts.itertuples(index=False):
        why = []
        if row.ttl_mismatch:
            why.append(f"TTL {row.ttl}, but the {row.sender}'s packets arrived with TTL {row.expected_ttl}")
        if row.ip_id_jump and (row.ttl_mismatch or row.faster_than_rtt):
            why.append(f"IP ID {row.ip_id} does not follow the {row.sender}'s {row.previous_ip_id}")
        if row.faster_than_rtt:
            why.append(f"came {row.trigger_delay_s * 1000:.1f} ms after frame {row.trigger_frame}, "
                       f"faster than the {row.rtt_s * 1000:.1f} ms round trip to the {row.sender}")
        reasons.append(why)
    return reasons
