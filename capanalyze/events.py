"""Stage 3 driver: run the TCP rules (tcpstate.py) over packet-table chunks.

`TcpState` carries every connection's per-direction state from one chunk to the next,
so a capture of any size is analysed in bounded memory; `annotate` adds the event
columns to a chunk and collects the idle-gap and RST records the kernel emits.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from . import tcpstate as ts

RETRANS_KINDS = ["", "rto", "fast", "spurious", "tail_probe"]


class TcpState:
    """Per-connection TCP state plus the gap/RST records found so far."""

    def __init__(self, gap_s: float = 1.0, capacity: int = 1024):
        self.gap_ns = int(round(gap_s * 1e9))
        self.D = np.zeros((2 * capacity, ts.N_D), dtype=np.int64)
        self.T = np.zeros((capacity, ts.N_T), dtype=np.int64)
        self.gap_chunks: list[np.ndarray] = []
        self.rst_chunks: list[np.ndarray] = []

    def ensure_flows(self, n_flows: int):
        if n_flows <= len(self.T):
            return
        cap = max(n_flows, 2 * len(self.T))
        self.T = _grown(self.T, cap)
        self.D = _grown(self.D, 2 * cap)

    def close(self, n_flows: int, capture_end_ns: int):
        """Emit the gaps still open at the capture's end."""
        G = np.zeros((max(n_flows, 1), ts.N_G), dtype=np.int64)
        ng = ts._close_open_gaps(self.T, G, self.D, n_flows, capture_end_ns, self.gap_ns)
        self.gap_chunks.append(G[:ng])

    def gap_records(self) -> np.ndarray:
        return _stack(self.gap_chunks, ts.N_G)

    def rst_records(self) -> np.ndarray:
        return _stack(self.rst_chunks, ts.N_R)


def _grown(a: np.ndarray, rows: int) -> np.ndarray:
    out = np.zeros((rows, a.shape[1]), dtype=a.dtype)
    out[: len(a)] = a
    return out


def _stack(chunks, width):
    return np.concatenate(chunks) if chunks else np.zeros((0, width), dtype=np.int64)


def _packet_matrix(packets: pd.DataFrame) -> np.ndarray:
    P = np.empty((len(packets), ts.N_P), dtype=np.int64)
    for col, name in ((ts.P_FRAME, "frame"), (ts.P_TS, "ts_ns"), (ts.P_FLOW, "flow_id"),
                      (ts.P_DIR, "dir"), (ts.P_FLAGS, "tcp_flags"), (ts.P_SEQ, "seq"),
                      (ts.P_ACK, "ack"), (ts.P_WIN, "window"), (ts.P_LEN, "payload_len"),
                      (ts.P_WSCALE, "wscale"), (ts.P_TTL, "ttl"), (ts.P_IPID, "ip_id"),
                      (ts.P_TSVAL, "tsval")):
        P[:, col] = packets[name].to_numpy()
    return P


def annotate(packets: pd.DataFrame, state: TcpState, n_flows: int) -> pd.DataFrame:
    """Add event columns to a chunk that already has flow_id/dir; returns it."""
    state.ensure_flows(n_flows)
    P = _packet_matrix(packets)
    O = np.zeros((len(P), ts.N_O), dtype=np.int64)
    O[:, ts.O_ORIG_FRAME] = -1
    pos = 0
    while pos < len(P):
        room = max(1024, (len(P) - pos) // 4)
        G = np.zeros((room, ts.N_G), dtype=np.int64)
        R = np.zeros((room, ts.N_R), dtype=np.int64)
        pos, ng, nr = ts._annotate_kernel(P, O, state.D, state.T, G, R, pos, state.gap_ns)
        state.gap_chunks.append(G[:ng])
        state.rst_chunks.append(R[:nr])
    _add_event_columns(packets, O)
    return packets


def _add_event_columns(packets: pd.DataFrame, O: np.ndarray):
    ev = O[:, ts.O_EVENTS]
    packets["events"] = ev.astype(np.uint32)
    for name, bit in ts.EVENT_BITS.items():
        packets[name] = (ev & bit) != 0
    packets["retrans_kind"] = retrans_kind(ev)
    packets["rel_seq"] = O[:, ts.O_REL_SEQ]
    packets["rel_ack"] = O[:, ts.O_REL_ACK]
    packets["win"] = O[:, ts.O_WIN]
    packets["orig_frame"] = O[:, ts.O_ORIG_FRAME]
    packets["orig_ts"] = O[:, ts.O_ORIG_TS] / 1e9


def retrans_kind(ev: np.ndarray) -> pd.Categorical:
    code = np.zeros(len(ev), dtype=np.int8)
    retrans = (ev & ts.EV_RETRANS) != 0
    code[retrans] = 1
    code[retrans & ((ev & ts.EV_TAIL_PROBE) != 0)] = 4
    code[(ev & ts.EV_FAST) != 0] = 2
    code[(ev & ts.EV_SPURIOUS) != 0] = 3
    return pd.Categorical.from_codes(code, categories=RETRANS_KINDS)


def notable(packets: pd.DataFrame) -> pd.DataFrame:
    """The rows a diagnosis needs when the full packet table is not kept."""
    return packets[(packets["events"].to_numpy() & ts.EV_NOTABLE) != 0]
