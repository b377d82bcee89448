"""Stage 2: packet table -> connections (`flow_id`, `dir` on every packet).

One connection per TCP conversation, keyed by the canonical 4-tuple. A SYN (without ACK)
whose ISN differs from the one its sender used before, or that follows a FIN/RST on a
4-tuple its sender had not used, starts a new connection (port reuse), as Wireshark's
tcp.stream does; so `flow_id` is 0-based in order of first appearance and usually equals
Wireshark's `tcp.stream`. A connection is never split because it was idle.

Roles are fixed at a connection's first packet so `dir` is final at once (streaming):
  1. SYN without ACK: its sender is the client; SYN+ACK: its sender is the server.
  2. Otherwise (capture started mid-stream) the role is inferred, `role_inferred` set:
     a port below 1024 on one side only is the server's; else a port in the ephemeral
     range (>= 32768) on one side only is the client's; else the lower port is the
     server's; equal ports: the first sender is the client.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from . import spill
from .jit import kernel
from .schema import ACK, FIN, RST, SYN, epoch_seconds
from .spill import MappedTable
from .tcplayout import T_SRV_IV_SQ, T_SRV_IV_SUM, T_SRV_N

# Per-connection columns of FlowKeys.table (int64).
F_EP_A, F_EP_B, F_CLIENT_SIDE, F_ROLE_INFERRED, F_CLOSED = 0, 1, 2, 3, 4
F_BASE_SET_A, F_BASE_A, F_BASE_SET_B, F_BASE_B, F_SRC_CODE, F_DST_CODE = 5, 6, 7, 8, 9, 10
F_SPORT, F_DPORT = 11, 12
N_FLOW_FIELDS = 13

class FlowKeys:
    """Connection-assignment state carried from one chunk to the next.

    `slots` is an open-addressing hash table (canonical 4-tuple key -> flow_id of its
    latest connection) in numpy arrays: numba's typed Dict would be recompiled at every
    start (its constructor is not cacheable), costing ~0.7 s per run.
    """

    def __init__(self, capacity: int = 1024):
        self.slot_keys = np.zeros((2 * capacity, 2), dtype=np.int64)
        self.slot_flow = np.full(2 * capacity, -1, dtype=np.int64)
        self._table = MappedTable(capacity, N_FLOW_FIELDS)   # the old rows leave RAM
        self.count = np.zeros(1, dtype=np.int64)

    @property
    def table(self) -> np.ndarray:
        return self._table.array

    def forget_old(self) -> None:
        self._table.forget_old(int(self.count[0]), spill.HOT_CONNECTIONS)

    def grow(self):
        """A larger flow table and a hash table big enough to stay at most half full
        (a power of two)."""
        self._table.resize(len(self.table) + 1)
        slots = len(self.slot_flow)
        while slots < 2 * len(self.table):
            slots *= 2
        if slots == len(self.slot_flow):
            return
        keys = np.zeros((slots, 2), dtype=np.int64)
        flow = np.full(slots, -1, dtype=np.int64)
        _rehash(self.slot_keys, self.slot_flow, keys, flow)
        self.slot_keys, self.slot_flow = keys, flow


@kernel
def _slot(keys, flow, a, b):
    """Index of key (a, b) in the hash table, or of the empty slot where it belongs."""
    mask = len(flow) - 1
    # Products stay below 2**63, so compiled and interpreted runs hash alike.
    h = ((a & 0xFFFFFFFF) * 0x9E3779B1 + (b & 0xFFFFFFFF) * 0x85EBCA77
         + (a >> 32) * 0x27D4EB2F + (b >> 32) * 0x165667B1)
    i = (h ^ (h >> 29)) & mask
    while flow[i] >= 0 and (keys[i, 0] != a or keys[i, 1] != b):
        i = (i + 1) & mask
    return i


@kernel
def _rehash(old_keys, old_flow, keys, flow):
    for i in range(len(old_flow)):
        if old_flow[i] >= 0:
            j = _slot(keys, flow, old_keys[i, 0], old_keys[i, 1])
            keys[j, 0], keys[j, 1] = old_keys[i, 0], old_keys[i, 1]
            flow[j] = old_flow[i]


@kernel
def _server_is_b(port_a, port_b):
    """Which canonical side serves, for a connection whose handshake we did not see."""
    if (port_a < 1024) != (port_b < 1024):
        return port_b < 1024
    if (port_a >= 32768) != (port_b >= 32768):
        return port_a >= 32768
    return port_b < port_a


@kernel
def _is_new_connection(row, side, flags, seq):
    """Port reuse: a SYN with another ISN than this side used, or the first packet
    of this side after the connection closed. A SYN repeated with the same ISN is the
    same connect() retrying (Windows retries after a RST), as in Wireshark."""
    if not (flags & SYN) or (flags & ACK):
        return False
    base_set = row[F_BASE_SET_A] if side == 0 else row[F_BASE_SET_B]
    base = row[F_BASE_A] if side == 0 else row[F_BASE_B]
    if base_set:
        return base != seq
    return row[F_CLOSED] == 1


@kernel
def _open_flow(table, fid, ep_a, ep_b, side, flags, port_a, port_b, src, dst, sport, dport):
    row = table[fid]
    row[:] = 0
    row[F_EP_A] = ep_a
    row[F_EP_B] = ep_b
    row[F_SRC_CODE] = src
    row[F_DST_CODE] = dst
    row[F_SPORT] = sport
    row[F_DPORT] = dport
    if flags & SYN:
        sender_is_client = not (flags & ACK)
        row[F_CLIENT_SIDE] = side if sender_is_client else 1 - side
    else:
        row[F_ROLE_INFERRED] = 1
        if port_a == port_b:
            row[F_CLIENT_SIDE] = side
        else:
            row[F_CLIENT_SIDE] = 0 if _server_is_b(port_a, port_b) else 1


@kernel
def _assign_kernel(src, dst, sport, dport, flags, seq, slot_keys, slot_flow, table, count,
                   start, out_flow, out_dir):
    """Fill out_flow/out_dir from `start`; return where it stopped (table full). The
    columns come as decoded (int32 codes, uint16 ports ...): each value is widened here,
    not the chunk copied to int64 first (six copies: 0.04 s of the main thread per 5M)."""
    n = len(src)
    for i in range(start, n):
        sp, dp, fl, sq = np.int64(sport[i]), np.int64(dport[i]), np.int64(flags[i]), np.int64(seq[i])
        s_code, d_code = np.int64(src[i]), np.int64(dst[i])
        ep_s = (s_code << 16) | sp
        ep_d = (d_code << 16) | dp
        side = 0 if ep_s <= ep_d else 1
        a, b = (ep_s, ep_d) if side == 0 else (ep_d, ep_s)
        slot = _slot(slot_keys, slot_flow, a, b)
        fid = slot_flow[slot]
        if fid < 0 or _is_new_connection(table[fid], side, fl, sq):
            if count[0] >= len(table):
                return i
            fid = count[0]
            count[0] += 1
            port_a = sp if side == 0 else dp
            port_b = dp if side == 0 else sp
            _open_flow(table, fid, a, b, side, fl, port_a, port_b, s_code, d_code, sp, dp)
            slot_keys[slot, 0], slot_keys[slot, 1] = a, b
            slot_flow[slot] = fid
        row = table[fid]
        if side == 0 and row[F_BASE_SET_A] == 0:
            row[F_BASE_SET_A] = 1
            row[F_BASE_A] = sq
        elif side == 1 and row[F_BASE_SET_B] == 0:
            row[F_BASE_SET_B] = 1
            row[F_BASE_B] = sq
        if fl & (FIN | RST):
            row[F_CLOSED] = 1
        out_flow[i] = fid
        out_dir[i] = 0 if side == row[F_CLIENT_SIDE] else 1
    return n


def assign_flows(packets, keys: FlowKeys):
    """Add `flow_id` and `dir` to a packet-table chunk (DataFrame or dict of arrays)."""
    ports = [np.asarray(packets[name]) for name in ("sport", "dport", "tcp_flags", "seq")]
    src, dst = address_codes(packets, "src"), address_codes(packets, "dst")
    n = len(src)
    flow = np.empty(n, dtype=np.int64)
    direction = np.empty(n, dtype=np.int8)
    pos = 0
    while pos < n:
        pos = _assign_kernel(src, dst, *ports, keys.slot_keys, keys.slot_flow, keys.table,
                             keys.count, pos, flow, direction)
        if pos < n:
            keys.grow()
    keys.forget_old()
    packets["flow_id"] = flow
    packets["dir"] = direction
    return packets


def address_codes(packets, name: str) -> np.ndarray:
    """Interned address codes (int32) of a column chunk or a DataFrame chunk (categorical)."""
    if f"{name}_code" in packets:
        return np.asarray(packets[f"{name}_code"], dtype=np.int32)
    return packets[name].cat.codes.to_numpy().astype(np.int32)


def flows_table(keys: FlowKeys, summary, addresses, capture_end_ns: int) -> pd.DataFrame:
    """One row per connection: endpoints, roles, counts, how it ended, longest idle.
    `summary`: the per-connection state the TCP rules left (events.FlowSummary)."""
    from . import tcpstate as ts

    n = int(keys.count[0])
    K, t, d = keys.table[:n], summary.t, summary.d
    first_side = np.where((K[:, F_SRC_CODE] << 16 | K[:, F_SPORT]) == K[:, F_EP_A], 0, 1)
    first_is_client = first_side == K[:, F_CLIENT_SIDE]
    names = np.asarray(addresses, dtype=object)
    c_code = np.where(first_is_client, K[:, F_SRC_CODE], K[:, F_DST_CODE])
    s_code = np.where(first_is_client, K[:, F_DST_CODE], K[:, F_SRC_CODE])
    c_port = np.where(first_is_client, K[:, F_SPORT], K[:, F_DPORT])
    s_port = np.where(first_is_client, K[:, F_DPORT], K[:, F_SPORT])
    flows = pd.DataFrame({
        "flow_id": np.arange(n, dtype=np.int64),
        "client": _endpoints(names, c_code, c_port),
        "server": _endpoints(names, s_code, s_port),
        "client_ip": names[c_code] if n else [], "client_port": c_port,
        "server_ip": names[s_code] if n else [], "server_port": s_port,
        "role_inferred": K[:, F_ROLE_INFERRED].astype(bool),
        "first_frame": t(ts.T_FIRST_FRAME), "last_frame": t(ts.T_LAST_FRAME),
        "start_ts": epoch_seconds(t(ts.T_FIRST_TS)), "end_ts": epoch_seconds(t(ts.T_LAST_TS)),
        "packets_c2s": d(ts.D_PKTS, 0), "packets_s2c": d(ts.D_PKTS, 1),
        "bytes_c2s": d(ts.D_BYTES, 0), "bytes_s2c": d(ts.D_BYTES, 1),
        "handshake": t(ts.T_HANDSHAKE) == (ts.HS_SYN | ts.HS_SYNACK | ts.HS_ACK),
        "syn_seen": (t(ts.T_HANDSHAKE) & ts.HS_SYN) != 0,
        "fin_from": _sides(t(ts.T_FIN_FROM)), "rst_from": _sides(t(ts.T_RST_FROM)),
        "max_idle_s": t(ts.T_MAX_IDLE) / 1e9,
        "first_rtt_s": t(ts.T_FIRST_RTT) / 1e9,
    })
    for name, field in (("keepalives", ts.D_N_KA), ("retransmissions", ts.D_N_RETX),
                        ("zero_windows", ts.D_N_ZW), ("rsts", ts.D_N_RST),
                        ("dup_acks", ts.D_N_DUPACK), ("zero_window_probes", ts.D_N_ZWP)):
        flows[name] = d(field, 0) + d(field, 1)
    flows["packets"] = flows["packets_c2s"] + flows["packets_s2c"]
    flows["bytes"] = flows["bytes_c2s"] + flows["bytes_s2c"]
    flows["duration_s"] = (t(ts.T_LAST_TS) - t(ts.T_FIRST_TS)) / 1e9
    flows["state"] = _states(t(ts.T_FIN_FROM), t(ts.T_RST_FROM))
    flows["idle_at_end_s"] = _idle_at_end(t(ts.T_FIN_FROM), t(ts.T_RST_FROM), t(ts.T_LAST_TS),
                                          capture_end_ns)
    flows["server_data_interval_s"], flows["server_data_cv"] = _cadence(t)
    return flows


def _idle_at_end(fin_bits, rst_bits, last_ts_ns, capture_end_ns: int) -> np.ndarray:
    """Silence from each connection's last packet to the capture's, when nothing closed
    it (the states _states calls open or half-closed): `max_idle_s` counts gaps between
    packets only, and a connection that hangs until the capture is stopped has none."""
    still_open = (fin_bits != 3) & (rst_bits == 0)
    silence = np.maximum(capture_end_ns - last_ts_ns, 0) / 1e9
    return np.where(still_open, silence, 0.0)


def _cadence(t):
    """Mean and coefficient of variation of the server's data intervals (NaN: < 3 sends)."""
    n = t(T_SRV_N) - 1
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.where(n >= 2, t(T_SRV_IV_SUM) / np.maximum(n, 1), np.nan)
        var = np.where(n >= 2, t(T_SRV_IV_SQ) / np.maximum(n, 1) - mean ** 2, np.nan)
        cv = np.where(mean > 0, np.sqrt(np.maximum(var, 0)) / mean, np.nan)
    return mean / 1000.0, cv


def _endpoints(names, codes, ports) -> list[str]:
    """"ip:port" ("[ip]:port" for IPv6) of each row, from address codes into `names`:
    each address is formatted once, not once per connection."""
    prefix = [f"[{ip}]:" if ":" in ip else f"{ip}:" for ip in names]
    return [prefix[code] + str(port) for code, port in zip(codes.tolist(), ports.tolist())]


_SIDE_NAMES = np.array(["", "client", "server", "both"], dtype=object)


def _sides(bits):
    return _SIDE_NAMES[bits & 3]


def _states(fin_bits, rst_bits):
    out = np.full(len(fin_bits), "open", dtype=object)
    out[fin_bits & 1 != 0] = "half-closed by client"
    out[fin_bits & 2 != 0] = "half-closed by server"
    out[fin_bits == 3] = "closed"
    out[rst_bits & 1 != 0] = "reset by client"
    out[rst_bits & 2 != 0] = "reset by server"
    out[rst_bits == 3] = "reset by both"
    return out
