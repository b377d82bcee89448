"""What the TCP-state kernel records for the timeline as it walks the packets: idle
gaps (no packet but keepalives for longer than the threshold) and every RST, with
the state needed later to judge them (unacked bytes, last data sender, TTL/IP ID
history, the packet that triggered a RST)."""
# ruff: noqa: F405
from __future__ import annotations

from .jit import kernel
from .schema import ACK, FIN, RST, SYN
from .tcplayout import *  # noqa: F401,F403  (kernels read the layout as globals)


@kernel(inline="always")
def _unacked(D, flow, direction):
    d = D[2 * flow + direction]
    if not d[D_NEXT_SET]:
        return 0
    una = d[D_HIGHACK] if d[D_HIGHACK] > 0 else 1
    return max(d[D_NEXT] - una, 0)


@kernel(inline="always")
def _emit_gap(G, ng, D, t, flow, end_frame, end_ts, end_dir, end_flags, end_len, end_ev,
              end_seq_end):
    g = G[ng]
    g[G_FLOW] = flow
    g[G_START_FRAME] = t[T_ACT_FRAME]
    g[G_END_FRAME] = end_frame
    g[G_START_TS] = t[T_ACT_TS]
    g[G_END_TS] = end_ts
    g[G_KA] = t[T_GAP_KA]
    g[G_KA_ACK] = t[T_GAP_KA_ACK]
    g[G_KA_FIRST] = t[T_GAP_KA_FIRST]
    g[G_KA_LAST] = t[T_GAP_KA_LAST]
    g[G_KA_DIRS] = t[T_GAP_KA_DIRS]
    g[G_UNACKED_C] = _unacked(D, flow, 0)
    g[G_UNACKED_S] = _unacked(D, flow, 1)
    g[G_LAST_DATA_DIR] = t[T_LAST_DATA_DIR]
    g[G_END_DIR] = end_dir
    g[G_END_FLAGS] = end_flags
    g[G_END_LEN] = end_len
    g[G_END_EVENTS] = end_ev
    g[G_END_SEQ_END] = end_seq_end
    g[G_CLOSED] = t[T_FIN_FROM] | (t[T_RST_FROM] << 2)


@kernel(inline="always")
def _emit_rst(R, nr, d, t, p, seq, ack, r):
    rec = R[nr]
    rec[R_FLOW] = p[P_FLOW]
    rec[R_FRAME] = p[P_FRAME]
    rec[R_TS] = p[P_TS]
    rec[R_DIR] = p[P_DIR]
    rec[R_TTL] = p[P_TTL]
    rec[R_EXP_TTL] = d[D_LAST_TTL] if d[D_PKTS] > 0 else -1
    rec[R_IPID] = p[P_IPID]
    rec[R_LAST_IPID] = d[D_LAST_IPID] if d[D_PKTS] > 0 else -1
    rec[R_SEQ_OFF] = seq - d[D_NEXT] if d[D_NEXT_SET] else 0
    rec[R_HAS_ACK] = (p[P_FLAGS] & ACK) != 0
    rec[R_ACK_OFF] = ack - r[D_NEXT] if rec[R_HAS_ACK] and r[D_NEXT_SET] else 0
    from_peer = t[T_PREV_FRAME] > 0 and t[T_PREV_DIR] != p[P_DIR]
    rec[R_TRIGGER_FRAME] = t[T_PREV_FRAME] if from_peer else -1
    rec[R_TRIGGER_DT] = p[P_TS] - t[T_PREV_TS] if from_peer else -1
    rec[R_TRIGGER_IDLE] = t[T_PREV_IDLE] if from_peer else -1
    rec[R_FIRST_RTT] = t[T_FIRST_RTT]
    rec[R_SENDER_PKTS] = d[D_PKTS]


@kernel(inline="always")
def _track_activity(t, p, ev, seq_end, G, ng, D, gap_ns):
    """Idle bookkeeping: keepalives do not end a gap; anything else does."""
    ts = p[P_TS]
    if ev & (EV_KEEPALIVE | EV_KEEPALIVE_ACK):
        if ev & EV_KEEPALIVE:
            t[T_GAP_KA] += 1
            t[T_GAP_KA_DIRS] |= 1 << p[P_DIR]
            if t[T_GAP_KA_FIRST] == 0:
                t[T_GAP_KA_FIRST] = ts
            t[T_GAP_KA_LAST] = ts
        else:
            t[T_GAP_KA_ACK] += 1
        return ng, ev
    idle = ts - t[T_ACT_TS]
    if idle > t[T_MAX_IDLE]:
        t[T_MAX_IDLE] = idle
    if idle > gap_ns:
        ev |= EV_GAP_END
        _emit_gap(G, ng, D, t, p[P_FLOW], p[P_FRAME], ts, p[P_DIR], p[P_FLAGS], p[P_LEN],
                  ev, seq_end)
        ng += 1
    t[T_ACT_TS] = ts
    t[T_ACT_FRAME] = p[P_FRAME]
    t[T_GAP_KA] = 0
    t[T_GAP_KA_ACK] = 0
    t[T_GAP_KA_FIRST] = 0
    t[T_GAP_KA_LAST] = 0
    t[T_GAP_KA_DIRS] = 0
    return ng, ev


@kernel
def _close_open_gaps(T, G, D, first, last, capture_end, gap_ns):
    """Gaps still open when the capture ended (the 'client hangs forever' case), for
    connections first..last-1."""
    ng = 0
    for flow in range(first, last):
        t = T[flow]
        if t[T_SEEN] and capture_end - t[T_ACT_TS] > gap_ns:
            _emit_gap(G, ng, D, t, flow, -1, capture_end, -1, 0, 0, 0, 0)
            ng += 1
    return ng


# What ended a gap (the gap table's `ended_by`), in the order gap_endings applies them:
# a later one wins.
GAP_ENDINGS = ("ack", "data_acked", "data_unacked", "syn", "fin", "rst", "capture_end")
(END_ACK, END_DATA_ACKED, END_DATA_UNACKED, END_SYN, END_FIN, END_RST,
 END_CAPTURE) = range(len(GAP_ENDINGS))


@kernel
def gap_endings(g, high_ack, code):
    """What ended each gap, as a code into GAP_ENDINGS. Data is acked when the
    receiver's highest ACK (`high_ack`, per direction) covers it. One pass: the same
    tests as numpy masks read each record's columns ~10 times (20 ms of 5M packets)."""
    last = len(high_ack) - 1
    for i in range(g.shape[0]):
        c = END_ACK
        if g[i, G_END_LEN] > 0:
            row = min(max(2 * g[i, G_FLOW] + max(g[i, G_END_DIR], 0), 0), max(last, 0))
            c = END_DATA_ACKED if last >= 0 and high_ack[row] >= g[i, G_END_SEQ_END] else END_DATA_UNACKED
        flags = g[i, G_END_FLAGS]
        if flags & SYN:
            c = END_SYN
        if flags & FIN:
            c = END_FIN
        if flags & RST:
            c = END_RST
        if g[i, G_END_FRAME] < 0:
            c = END_CAPTURE
        code[i] = c
