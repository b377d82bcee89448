"""Layouts the TCP-state kernel shares with its callers: the event bits of the
`events` column and the column indices of the int64 rows it reads and writes (one
packet P and its outputs O, per-direction state D, per-connection state T, idle-gap
records G, RST records R), and the two kernels that move one packet between a chunk's
columns and the P and O rows. Data, not rules: the rules are in tcpstate.py."""
from __future__ import annotations

from .jit import kernel

# ---- event bits (the `events` column; booleans are expanded from it) ----
EV_SYN, EV_FIN, EV_RST = 1 << 0, 1 << 1, 1 << 2
EV_KEEPALIVE, EV_KEEPALIVE_ACK = 1 << 3, 1 << 4
EV_RETRANS, EV_FAST, EV_SPURIOUS, EV_TAIL_PROBE = 1 << 5, 1 << 6, 1 << 7, 1 << 8
EV_DUP_ACK, EV_ZERO_WINDOW, EV_ZWP, EV_ZWP_ACK = 1 << 9, 1 << 10, 1 << 11, 1 << 12
EV_WINDOW_FULL, EV_DUP_CAPTURE, EV_OUT_OF_ORDER = 1 << 13, 1 << 14, 1 << 15
EV_LOST_SEGMENT, EV_ACK_UNSEEN, EV_WINDOW_UPDATE = 1 << 16, 1 << 17, 1 << 18
EV_WS_KEEPALIVE = 1 << 19     # Wireshark's keep-alive rule fired (ours may disagree)
EV_KA_NOT_SILENT = 1 << 20    # ... rejected: the direction was not silent before it
EV_KA_AFTER_FIN = 1 << 21     # ... rejected: it sits on our own FIN's sequence number
EV_ACKS_RETRANS = 1 << 22     # acknowledges a segment that had been retransmitted
EV_GAP_END = 1 << 23          # first activity after an idle gap
EV_DATA = 1 << 24             # carries payload

EVENT_BITS = {
    "syn": EV_SYN, "fin": EV_FIN, "rst": EV_RST, "keepalive": EV_KEEPALIVE,
    "keepalive_ack": EV_KEEPALIVE_ACK, "retransmission": EV_RETRANS,
    "dup_ack": EV_DUP_ACK, "zero_window": EV_ZERO_WINDOW, "zero_window_probe": EV_ZWP,
    "zero_window_probe_ack": EV_ZWP_ACK, "window_full": EV_WINDOW_FULL,
    "duplicate_capture": EV_DUP_CAPTURE, "out_of_order": EV_OUT_OF_ORDER,
    "lost_segment": EV_LOST_SEGMENT, "ack_unseen": EV_ACK_UNSEEN,
    "window_update": EV_WINDOW_UPDATE,
}
# Packets worth keeping when the CLI streams a capture without the full packet table.
EV_NOTABLE = (EV_SYN | EV_FIN | EV_RST | EV_KEEPALIVE | EV_KEEPALIVE_ACK | EV_RETRANS
              | EV_ZERO_WINDOW | EV_ZWP | EV_ZWP_ACK | EV_DUP_CAPTURE | EV_ACKS_RETRANS
              | EV_WINDOW_UPDATE)   # gap ends live in the gap records, not as rows

# ---- one packet as the rules read it (a row loaded from the chunk's columns) ----
P_FRAME, P_TS, P_FLOW, P_DIR, P_FLAGS, P_SEQ, P_ACK, P_WIN, P_LEN = range(9)
P_WSCALE, P_TTL, P_IPID, P_TSVAL = 9, 10, 11, 12
N_P = 13
# ---- one packet's outputs (stored into the event columns) ----
O_EVENTS, O_REL_SEQ, O_REL_ACK, O_WIN, O_ORIG_FRAME, O_ORIG_TS = range(6)
N_O = 6

# ---- per-direction state (row = 2 * flow_id + dir) ----
(D_SEEN, D_BASE, D_NEXT_SET, D_NEXT, D_NEXT_FRAME, D_NEXT_TS, D_MAXSEQ, D_LASTACK_SET,
 D_LASTACK, D_LASTACK_TS, D_WIN_SET, D_WINDOW, D_WS_OFFER, D_WSCALE, D_LASTSEGFLAGS,
 D_DUPACKS, D_LAST_TS, D_LAST_FRAME, D_LAST_IPID, D_LAST_TTL, D_LAST_SEQ, D_LAST_ACK,
 D_LAST_LEN, D_LAST_FLAGS, D_LAST_TSVAL, D_FIN_SET, D_FIN_SEQ, D_HIGHACK, D_RETX_END,
 D_PKTS, D_BYTES, D_N_KA, D_N_RETX, D_N_ZW, D_N_RST, D_N_DUPACK, D_N_ZWP,
 D_RING_POS, D_SYN_SEEN) = range(39)
D_RING = 39            # 4 recent new segments: (rel seq, frame, ts) each
RING = 4
N_D = D_RING + 3 * RING

# ---- per-flow state ----
(T_SEEN, T_FIRST_FRAME, T_LAST_FRAME, T_FIRST_TS, T_LAST_TS, T_ACT_TS, T_ACT_FRAME,
 T_MAX_IDLE, T_GAP_KA, T_GAP_KA_ACK, T_GAP_KA_FIRST, T_GAP_KA_LAST, T_GAP_KA_DIRS,
 T_SYN_TS, T_FIRST_RTT, T_HANDSHAKE, T_LAST_DATA_DIR, T_FIN_FROM, T_RST_FROM,
 T_PREV_FRAME, T_PREV_TS, T_PREV_DIR, T_PREV_IDLE, T_DATA_TS,
 # the server's data cadence (ms): count, last, sum and sum of squares of the intervals
 T_SRV_N, T_SRV_LAST, T_SRV_IV_SUM, T_SRV_IV_SQ) = range(28)
N_T = 28
HS_SYN, HS_SYNACK, HS_ACK = 1, 2, 4

# ---- idle-gap records ----
(G_FLOW, G_START_FRAME, G_END_FRAME, G_START_TS, G_END_TS, G_KA, G_KA_ACK, G_KA_FIRST,
 G_KA_LAST, G_KA_DIRS, G_UNACKED_C, G_UNACKED_S, G_LAST_DATA_DIR, G_END_DIR,
 G_END_FLAGS, G_END_LEN, G_END_EVENTS, G_END_SEQ_END, G_CLOSED) = range(19)
N_G = 19

# ---- RST records ----
(R_FLOW, R_FRAME, R_TS, R_DIR, R_TTL, R_EXP_TTL, R_IPID, R_LAST_IPID, R_SEQ_OFF,
 R_ACK_OFF, R_HAS_ACK, R_TRIGGER_FRAME, R_TRIGGER_DT, R_TRIGGER_IDLE, R_FIRST_RTT,
 R_SENDER_PKTS) = range(16)
N_R = 16

MASK32 = 0xFFFFFFFF


@kernel(inline="always")
def _load_packet(p, i, frame, ts_ns, flow, direction, flags, seq, ack, window, length, wscale,
                 ttl, ip_id, tsval):
    """Packet i of the chunk's columns into the row `p` the rules read (kept in L1: a
    row-major copy of the whole chunk cost the main thread 0.08-0.13 s per 5M packets)."""
    p[P_FRAME], p[P_TS], p[P_FLOW], p[P_DIR] = frame[i], ts_ns[i], flow[i], direction[i]
    p[P_FLAGS], p[P_SEQ], p[P_ACK], p[P_WIN] = flags[i], seq[i], ack[i], window[i]
    p[P_LEN], p[P_WSCALE], p[P_TTL] = length[i], wscale[i], ttl[i]
    p[P_IPID], p[P_TSVAL] = ip_id[i], tsval[i]


@kernel(inline="always")
def _store_outputs(o, i, events, rel_seq, rel_ack, win, orig_frame, orig_ts):
    events[i], rel_seq[i], rel_ack[i] = o[O_EVENTS], o[O_REL_SEQ], o[O_REL_ACK]
    win[i], orig_frame[i], orig_ts[i] = o[O_WIN], o[O_ORIG_FRAME], o[O_ORIG_TS]
