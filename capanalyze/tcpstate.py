"""Stage 3: the per-direction TCP rules, in ONE place -> event columns on the packet table.

The rules follow Wireshark's tcp_analyze_sequence_number() (packet-tcp.c) so our flags
can be checked against tshark, with these deliberate corrections (each leaves a bit in
`events` so a disagreement with tshark can be explained packet by packet):

* A 0/1-byte segment at next_seq - 1 sent while the peer advertises a zero window is a
  zero-window probe (Linux sends them in exactly a keepalive's shape), not a keepalive.
* The segment right after our own FIN, at the FIN's sequence number, is not a keepalive.
* A keepalive needs its direction to have been silent for KEEPALIVE_MIN_SILENCE first.
* The same packet captured twice (`tcpdump -i any` on bridges/veth) is a
  `duplicate_capture`, not a retransmission, and does not move any state.

Sequence and ACK numbers are unwrapped to 64-bit relative values per direction, so
32-bit wrap-around never confuses a comparison.

The kernel also cuts each connection's idle gaps (no packet other than keepalives for
longer than the threshold) and records every RST with what is needed to judge whether
it was forged; timeline.py turns those records into tables.
"""
# ruff: noqa: F405
from __future__ import annotations

from .jit import kernel
from .schema import ACK, FIN, RST, SYN
from .tcplayout import *  # noqa: F401,F403  (kernels read the layout as globals)
from .tcplayout import _load_packet, _store_outputs  # noqa: F401
from .tcprecords import _close_open_gaps, _emit_rst, _track_activity  # noqa: F401

# ---- tunables (ns) ----
KEEPALIVE_MIN_SILENCE_NS = 500_000_000   # below any stack's keepalive interval (>= 1 s)
DUP_CAPTURE_NS = 2_000_000               # `-i any` copies arrive microseconds apart;
# Windows resends a SYN with the same IP ID, 5 ms later in nowebaccess3.pcapng
FAST_RETRANS_NS = 20_000_000             # Wireshark: within 20 ms of the last dup ACK
LINUX_RTO_MIN_NS = 200_000_000           # earlier resends of the tail are loss probes
DEFAULT_OOO_NS = 3_000_000               # Wireshark's out-of-order window without RTT
MAX_WSCALE = 14                          # RFC 7323 2.3: a larger shift is used as 14


@kernel(inline="always")
def _unwrap(value, base, near):
    """Relative 32-bit value (value - base) placed in 64 bits closest to `near`."""
    rel = (value - base) & MASK32
    delta = (rel - (near & MASK32)) & MASK32
    if delta >= 0x80000000:
        delta -= 0x100000000
    return near + delta


@kernel(inline="always")
def _remember_segment(d, seq, frame, ts):
    pos = d[D_RING_POS] % RING
    d[D_RING + 3 * pos] = seq
    d[D_RING + 3 * pos + 1] = frame
    d[D_RING + 3 * pos + 2] = ts
    d[D_RING_POS] += 1


@kernel(inline="always")
def _original(d, seq, o):
    """Frame and time that first carried `seq`, among the last few new segments."""
    for k in range(RING):
        if d[D_RING + 3 * k + 1] > 0 and d[D_RING + 3 * k] == seq:
            o[O_ORIG_FRAME] = d[D_RING + 3 * k + 1]
            o[O_ORIG_TS] = d[D_RING + 3 * k + 2]


@kernel(inline="always")
def _is_duplicate_capture(d, p):
    if d[D_LAST_FRAME] == 0 or p[P_TS] - d[D_LAST_TS] > DUP_CAPTURE_NS:
        return False
    if (d[D_LAST_SEQ] != p[P_SEQ] or d[D_LAST_ACK] != p[P_ACK]
            or d[D_LAST_LEN] != p[P_LEN] or d[D_LAST_FLAGS] != p[P_FLAGS]):
        return False
    if p[P_IPID] > 0:
        return d[D_LAST_IPID] == p[P_IPID]
    # No usable IP ID (IPv6, or 0 with DF): only the TCP timestamp can tell a copy.
    return p[P_TSVAL] >= 0 and p[P_TSVAL] == d[D_LAST_TSVAL] and p[P_TS] - d[D_LAST_TS] < 1_000_000


@kernel(inline="always")
def _init_direction(d, r, p):
    """First packet of a direction: base sequence as Wireshark sets it."""
    d[D_SEEN] = 1
    d[D_BASE] = p[P_SEQ] if p[P_FLAGS] & SYN else (p[P_SEQ] - 1) & MASK32
    d[D_WS_OFFER] = -1
    d[D_WSCALE] = -1
    if not r[D_SEEN] and p[P_FLAGS] & ACK:
        r[D_SEEN] = 1
        r[D_BASE] = (p[P_ACK] - 1) & MASK32
        r[D_WS_OFFER] = -1
        r[D_WSCALE] = -1


@kernel(inline="always")
def _rebase_on_syn(d, r, p):
    """A direction's SYN after other packets of it (the RST refusing a first SYN, then
    the SYN-ACK of a retry on the same 4-tuple): sequence space starts again at the ISN,
    so the retry's data is not taken for retransmissions of the RST's sequence space."""
    d[D_BASE] = p[P_SEQ]
    for k in (D_NEXT_SET, D_NEXT, D_MAXSEQ, D_HIGHACK, D_RETX_END, D_FIN_SET, D_RING_POS):
        d[k] = 0
    d[D_RING:] = 0
    r[D_LASTACK_SET] = 0
    r[D_DUPACKS] = 0


@kernel(inline="always")
def _window_scale(d, r, p):
    """Scaled window; the scale is known once both SYNs were seen. A shift over 14 is
    taken as 14 (RFC 7323 2.3, as Linux and Wireshark do)."""
    flags = p[P_FLAGS]
    if flags & SYN:
        offer = min(p[P_WSCALE], MAX_WSCALE)
        d[D_WS_OFFER] = offer
        if flags & ACK and r[D_WS_OFFER] != -1:
            both = offer >= 0 and r[D_WS_OFFER] >= 0
            d[D_WSCALE] = offer if both else 0
            r[D_WSCALE] = r[D_WS_OFFER] if both else 0
        return p[P_WIN]
    if d[D_WSCALE] > 0:
        return p[P_WIN] << d[D_WSCALE]
    return p[P_WIN]


@kernel(inline="always")
def _classify_window_and_probes(d, r, p, seq, ack, seglen, win, ev):
    flags = p[P_FLAGS]
    nosfr = (flags & (SYN | FIN | RST)) == 0
    if seglen == 1 and d[D_NEXT_SET] and seq == d[D_NEXT] and r[D_WIN_SET] and r[D_WINDOW] == 0:
        return ev | EV_ZWP, True
    if win == 0 and nosfr:
        ev |= EV_ZERO_WINDOW
    if d[D_NEXT_SET] and seq > d[D_NEXT] and not (flags & RST):
        ev |= EV_LOST_SEGMENT
    if seglen <= 1 and d[D_NEXT_SET] and seq == d[D_NEXT] - 1 and nosfr:
        ev |= EV_WS_KEEPALIVE
        if r[D_WIN_SET] and r[D_WINDOW] == 0:
            ev |= EV_ZWP
        elif d[D_FIN_SET] and seq == d[D_FIN_SEQ]:
            ev |= EV_KA_AFTER_FIN
        elif p[P_TS] - d[D_LAST_TS] < KEEPALIVE_MIN_SILENCE_NS:
            ev |= EV_KA_NOT_SILENT
        else:
            ev |= EV_KEEPALIVE
    same_ack = d[D_LASTACK_SET] and ack == d[D_LASTACK]
    if (seglen == 0 and win != 0 and d[D_WIN_SET] and win != d[D_WINDOW]
            and d[D_NEXT_SET] and seq == d[D_NEXT] and same_ack and nosfr):
        ev |= EV_WINDOW_UPDATE
    if (seglen > 0 and r[D_WSCALE] != -1 and r[D_LASTACK_SET] and r[D_WIN_SET]
            and seq + seglen == r[D_LASTACK] + r[D_WINDOW] and nosfr):
        ev |= EV_WINDOW_FULL
    repeats = (seglen == 0 and d[D_WIN_SET] and win == d[D_WINDOW] and d[D_NEXT_SET]
               and seq == d[D_NEXT] and same_ack and nosfr)
    if repeats and win != 0 and r[D_LASTSEGFLAGS] & EV_KEEPALIVE:
        return ev | EV_KEEPALIVE_ACK, True
    if repeats and win == 0 and r[D_LASTSEGFLAGS] & EV_ZWP:
        return ev | EV_ZWP_ACK, True
    if repeats and win != 0:
        d[D_DUPACKS] += 1
        ev |= EV_DUP_ACK
    return ev, False


@kernel(inline="always")
def _classify_retransmission(d, r, p, seq, seglen, ev, first_rtt):
    """Retransmission / fast / spurious / out-of-order, as Wireshark decides them."""
    flags = p[P_FLAGS]
    if not (seglen > 0 or flags & (SYN | FIN)) or ev & EV_WS_KEEPALIVE:
        return ev
    not_advanced = d[D_NEXT_SET] and seq < d[D_NEXT]
    if seglen > 1 and d[D_NEXT_SET] and d[D_NEXT] - 1 == seq:
        not_advanced = False
    if seglen > 0 and r[D_LASTACK_SET] and seq + seglen <= r[D_LASTACK]:
        return ev | EV_RETRANS | EV_SPURIOUS
    if (not_advanced and r[D_DUPACKS] >= 2 and r[D_LASTACK] == seq
            and p[P_TS] - r[D_LASTACK_TS] < FAST_RETRANS_NS):
        return ev | EV_RETRANS | EV_FAST
    ooo_ns = first_rtt if first_rtt > 0 else DEFAULT_OOO_NS
    end = seq + seglen + (1 if flags & (SYN | FIN) else 0)
    if not_advanced and p[P_TS] - d[D_NEXT_TS] < ooo_ns and d[D_NEXT] != end:
        return ev | EV_OUT_OF_ORDER
    if not_advanced:
        ev |= EV_RETRANS
        is_tail = end == d[D_NEXT]
        if is_tail and p[P_TS] - d[D_NEXT_TS] < LINUX_RTO_MIN_NS and not (flags & SYN):
            ev |= EV_TAIL_PROBE
    return ev


@kernel(inline="always")
def _advance_sequence(d, p, seq, seglen, ev):
    flags = p[P_FLAGS]
    nxt = seq + seglen + (1 if flags & (SYN | FIN) else 0)
    if (nxt > d[D_NEXT] or not d[D_NEXT_SET]) and not ev & EV_ZWP:
        if seglen > 0 or flags & (SYN | FIN):
            _remember_segment(d, seq, p[P_FRAME], p[P_TS])
        d[D_NEXT] = nxt
        d[D_NEXT_SET] = 1
        d[D_NEXT_FRAME] = p[P_FRAME]
        d[D_NEXT_TS] = p[P_TS]
    if (seq == d[D_MAXSEQ] or d[D_MAXSEQ] == 0) and not (ev & EV_ZWP):
        d[D_MAXSEQ] = d[D_NEXT]
    if flags & FIN and not d[D_FIN_SET]:
        d[D_FIN_SET] = 1
        d[D_FIN_SEQ] = seq + seglen
    if ev & EV_RETRANS and seq + seglen > d[D_RETX_END]:
        d[D_RETX_END] = seq + seglen + (1 if flags & (SYN | FIN) else 0)


@kernel(inline="always")
def _record_ack(d, r, p, ack, ev):
    """Bookkeeping of this packet's ACK field against the reverse direction's data."""
    if not (p[P_FLAGS] & ACK):
        return ev
    if r[D_MAXSEQ] != 0 and ack > r[D_MAXSEQ]:
        ev |= EV_ACK_UNSEEN
        r[D_MAXSEQ] = r[D_NEXT] if r[D_MAXSEQ] > r[D_NEXT] else r[D_MAXSEQ]
    if ack > r[D_HIGHACK]:
        r[D_HIGHACK] = ack
    if r[D_RETX_END] > 0 and ack >= r[D_RETX_END]:
        r[D_RETX_END] = 0
        ev |= EV_ACKS_RETRANS
    return ev


@kernel(inline="always")
def _remember_last(d, p, ack, win, ev):
    if not (d[D_LASTACK_SET] and ack == d[D_LASTACK]):
        d[D_DUPACKS] = 0
    d[D_WINDOW] = win
    d[D_WIN_SET] = 1
    if p[P_FLAGS] & ACK:
        d[D_LASTACK] = ack
        d[D_LASTACK_SET] = 1
        d[D_LASTACK_TS] = p[P_TS]
    d[D_LASTSEGFLAGS] = ev
    _remember_raw(d, p)


@kernel(inline="always")
def _remember_raw(d, p):
    d[D_LAST_TS] = p[P_TS]
    d[D_LAST_FRAME] = p[P_FRAME]
    d[D_LAST_IPID] = p[P_IPID]
    d[D_LAST_TTL] = p[P_TTL]
    d[D_LAST_SEQ] = p[P_SEQ]
    d[D_LAST_ACK] = p[P_ACK]
    d[D_LAST_LEN] = p[P_LEN]
    d[D_LAST_FLAGS] = p[P_FLAGS]
    d[D_LAST_TSVAL] = p[P_TSVAL]


@kernel(inline="always")
def _count(d, p, ev):
    d[D_PKTS] += 1
    d[D_BYTES] += p[P_LEN]
    d[D_N_KA] += (ev & EV_KEEPALIVE) != 0
    d[D_N_RETX] += (ev & EV_RETRANS) != 0
    d[D_N_ZW] += (ev & EV_ZERO_WINDOW) != 0
    d[D_N_RST] += (ev & EV_RST) != 0
    d[D_N_DUPACK] += (ev & EV_DUP_ACK) != 0
    d[D_N_ZWP] += (ev & EV_ZWP) != 0


@kernel(inline="always")
def _handshake(t, p, ev):
    flags = p[P_FLAGS]
    if flags & SYN and not flags & ACK:
        t[T_HANDSHAKE] |= HS_SYN
        t[T_SYN_TS] = p[P_TS]
    elif flags & SYN:
        t[T_HANDSHAKE] |= HS_SYNACK
        t[T_RST_FROM] = 0  # accepted: a RST that refused an earlier try is history
    elif flags & ACK and t[T_HANDSHAKE] == HS_SYN | HS_SYNACK and p[P_DIR] == 0:
        t[T_HANDSHAKE] |= HS_ACK
        if t[T_FIRST_RTT] == 0:
            t[T_FIRST_RTT] = p[P_TS] - t[T_SYN_TS]


@kernel(inline="always")
def _open_flow(t, p):
    t[T_SEEN] = 1
    t[T_FIRST_FRAME] = p[P_FRAME]
    t[T_FIRST_TS] = p[P_TS]
    t[T_ACT_TS] = p[P_TS]
    t[T_ACT_FRAME] = p[P_FRAME]
    t[T_LAST_DATA_DIR] = -1


@kernel(inline="always")
def _server_cadence(t, ts):
    """Heartbeat streams (SSE, pings) send at a steady pace; a proxy that cuts them does
    so mid-cadence. Intervals in ms keep the sum of squares far from overflow."""
    if t[T_SRV_N] > 0:
        iv = (ts - t[T_SRV_LAST]) // 1_000_000
        t[T_SRV_IV_SUM] += iv
        t[T_SRV_IV_SQ] += iv * iv
    t[T_SRV_N] += 1
    t[T_SRV_LAST] = ts


@kernel(inline="always")
def _finish_flow_packet(t, p, ev):
    flags = p[P_FLAGS]
    if p[P_LEN] > 0 and not ev & (EV_KEEPALIVE | EV_ZWP):
        t[T_LAST_DATA_DIR] = p[P_DIR]
        t[T_DATA_TS] = p[P_TS]
        if p[P_DIR] == 1 and not ev & EV_RETRANS:
            _server_cadence(t, p[P_TS])
    if flags & FIN:
        t[T_FIN_FROM] |= 1 << p[P_DIR]
    if flags & RST:
        t[T_RST_FROM] |= 1 << p[P_DIR]
    if p[P_FRAME] != t[T_PREV_FRAME]:
        t[T_PREV_IDLE] = p[P_TS] - t[T_PREV_TS] if t[T_PREV_FRAME] > 0 else 0
    t[T_PREV_FRAME] = p[P_FRAME]
    t[T_PREV_TS] = p[P_TS]
    t[T_PREV_DIR] = p[P_DIR]
    t[T_LAST_FRAME] = p[P_FRAME]
    t[T_LAST_TS] = p[P_TS]


@kernel(inline="always")
def _analyze_packet(p, o, D, T, G, ng, R, nr, gap_ns):
    flow, direction = p[P_FLOW], p[P_DIR]
    d, r, t = D[2 * flow + direction], D[2 * flow + 1 - direction], T[flow]
    if not t[T_SEEN]:
        _open_flow(t, p)
    if d[D_SEEN] and _is_duplicate_capture(d, p):
        o[O_EVENTS] = EV_DUP_CAPTURE
        o[O_ORIG_FRAME] = d[D_LAST_FRAME]
        return ng, nr
    if not d[D_SEEN]:
        _init_direction(d, r, p)
    elif p[P_FLAGS] & SYN and not d[D_SYN_SEEN]:
        _rebase_on_syn(d, r, p)
    if p[P_FLAGS] & SYN:
        d[D_SYN_SEEN] = 1
    flags, seglen = p[P_FLAGS], p[P_LEN]
    near = d[D_NEXT] if d[D_NEXT_SET] else 1
    seq = _unwrap(p[P_SEQ], d[D_BASE], near)
    ack = _unwrap(p[P_ACK], r[D_BASE], r[D_NEXT] if r[D_NEXT_SET] else 1)
    win = _window_scale(d, r, p)
    ev = (EV_SYN if flags & SYN else 0) | (EV_FIN if flags & FIN else 0)
    ev |= (EV_RST if flags & RST else 0) | (EV_DATA if seglen > 0 else 0)
    _handshake(t, p, ev)
    ev, done = _classify_window_and_probes(d, r, p, seq, ack, seglen, win, ev)
    if not done:
        ev = _classify_retransmission(d, r, p, seq, seglen, ev, t[T_FIRST_RTT])
    if ev & EV_RETRANS:
        _original(d, seq, o)
    if flags & RST:
        _emit_rst(R, nr, d, t, p, seq, ack, r)
        nr += 1
    # before this packet moves any state: a gap's unacked bytes are those at its start
    ng, ev = _track_activity(t, p, ev, seq + seglen, G, ng, D, gap_ns)
    _advance_sequence(d, p, seq, seglen, ev)
    ev = _record_ack(d, r, p, ack, ev)
    _remember_last(d, p, ack, win, ev)
    _count(d, p, ev)
    _finish_flow_packet(t, p, ev)
    o[O_EVENTS] = ev
    o[O_REL_SEQ] = seq
    o[O_REL_ACK] = ack if flags & ACK else 0
    o[O_WIN] = win
    return ng, nr


@kernel
def _annotate_kernel(frame, ts_ns, flow, direction, flags, seq, ack, window, length, wscale,
                     ttl, ip_id, tsval, events, rel_seq, rel_ack, win, orig_frame, orig_ts,
                     p, o, D, T, G, R, start, gap_ns):
    """Analyse the chunk's packets (columns in, event columns out) from `start`; stop
    early when G/R or the flow tables are full. `p` and `o` are one row of scratch."""
    ng, nr = 0, 0
    for i in range(start, len(frame)):
        if flow[i] >= len(T) or ng >= len(G) or nr >= len(R):
            return i, ng, nr
        _load_packet(p, i, frame, ts_ns, flow, direction, flags, seq, ack, window, length,
                     wscale, ttl, ip_id, tsval)
        for k in range(N_O):
            o[k] = 0
        o[O_ORIG_FRAME] = -1
        ng, nr = _analyze_packet(p, o, D, T, G, ng, R, nr, gap_ns)
        _store_outputs(o, i, events, rel_seq, rel_ack, win, orig_frame, orig_ts)
    return len(frame), ng, nr
