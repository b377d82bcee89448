#!/usr/bin/env python3
"""Generate large, realistic Ethernet/IPv4 captures for benchmarking capanalyze.

    python benchmarks/gen_capture.py --packets 5M --seed 1 -o /tmp/5M.pcap
    python benchmarks/gen_capture.py --packets 5M --profile bulk -o /tmp/5M_bulk.pcap
    python benchmarks/gen_capture.py --packets 100k --snaplen 128 --format pcapng --nanosecond -o x.pcapng
    python benchmarks/gen_capture.py --packets 20M --connections 20k -o /tmp/20M_c20k.pcap

Traffic model (vantage point: a tap on the client side, e.g. a NAT gateway)
--------------------------------------------------------------------------
Two profiles share everything below except the sizes marked [mixed | bulk]:
  --profile mixed (default): API-style traffic with application payloads, shaped like the
    reference capture of the performance issue (4.93 M packets, 1.89 GB, 20k connections):
    5M packets make a 1.92 GB file (~384 bytes/packet) with ~20.7k connections.
  --profile bulk: the earlier model, dominated by big downloads, with zero payloads: 5M
    packets make 4.47 GB (~894 bytes/packet) with ~24k connections. Its bytes for a given
    seed are exactly those of the generator before profiles existed.
* Hosts: ~N/2500 client IPs in 10.0.0.0/8 (80% Linux: TTL 64, TCP timestamps; 20% Windows:
  TTL 128, no timestamps, 1-byte keepalives) and ~N/25000 servers in the RFC 5737/1918
  ranges (TTL 64/128/255 minus 3..20 hops). Linux senders number IP IDs per connection,
  Windows senders per host (one counter across all their connections).
* Connections (in 5M packets ~20.7k [mixed] | ~24k [bulk]; in 1M ~5.8k | ~6.5k) open
  uniformly from up to an hour before the capture starts until the end of its span
  (default max(600 s, packets/1000 s)) and interleave in time order; those already open at
  the start are seen mid-stream (no handshake, maybe a keepalive as their first packet).
  Their number grows with --packets; --connections N plans N instead and scales the
  exchanges of the long ones to fill the packets (5M and 20M packets with --connections
  20k --duration 20000: 16.1k and 17.2k connections seen, the rest outside the capture).
  Each has a per-connection RTT (lognormal, median 15 ms), downstream bandwidth (median
  50 Mbit/s) that paces received segments, random ISNs and TCP timestamp offsets.
* A connection is a sequence of episodes, each starting after a gap:
  - handshake: SYN / SYN-ACK with MSS, SACK-permitted, TS, WS options (Linux order) or
    MSS, WS, SACK-permitted (Windows); 1.5% lose the SYN 1..3 times (1 s, 2 s, 4 s);
  - request/response exchanges, per connection [mixed: 30% have 1 + geometric(0.25), the
    others lognormal median 45 (~60 on average) | bulk: half 1 + geometric(0.4), half
    median 12 (~15 on average)]. Sizes (lognormal medians, clipped):
      [mixed] requests 250 B (to 16 KB), 0.2% uploads of 30 KB (to 1 MB); responses
              300 B (to 64 KB), 0.2% downloads of 60 KB (to 2 MB);
      [bulk]  requests 400 B (to 60 KB), 1.5% uploads of 200 KB (to 2 MB); responses
              1.5 KB with a heavy tail up to 8 MB.
    Split at the MSS; receivers ACK every second segment and delay the odd last ACK by
    40 ms; server think time median 5 ms; client think time median 0.3 s, and
    [mixed 0.7% | bulk 4%] of the gaps are idle periods of 30..900 s (about one idle
    period per two connections in both);
  - keepalive periods (8% of connections, 80% probed by the client): probes after a
    15..300 s idle, Linux 0 bytes seq=nxt-1, Windows 1 garbage byte; each answered;
  - loss with fast retransmit (3% of connections): a burst of 8..20 segments loses one,
    the receiver sends dup ACKs with SACK blocks, the sender retransmits after the third
    dup ACK; uploads (lost segment seen then re-sent) and downloads (hole, then repair);
  - RTO backoff chains (1.5%): a segment retransmitted 1..7 times at doubling intervals
    from 200 ms + RTT, capped at 120 s, then acknowledged;
  - zero window (1%): the client stops reading, its advertised window shrinks to 0, the
    server sends zero-window probes at doubling intervals (Linux 0 bytes seq=una-1, or
    1 byte at seq=nxt), each answered with win=0, then a window update;
* Closes: client FIN 45%, server FIN 25%, RST/ACK by client 5% or server 4%, still open
  17%; stall endings: middlebox eviction (idle > 360 s, next segment answered by a bare
  RST) 2%, dead peer under keepalive (9 Linux probes at 75 s / 10 Windows at 1 s, then
  RST) 1%, silent black hole (15 RTO retransmissions over ~15 min, 5 on Windows; no RST) 1%.
* Port reuse: 2.5% of connections reuse the 4-tuple of an earlier closed one 1..120 s
  after it ended, with a new ISN.
* Server ports: TLS on 443, 8443, 6443, 9200 and HTTP on 80, 8080, 3000, 8000.
* Noise (~1.5% of packets): DNS A queries/answers over UDP, ICMP echo request/reply,
  ARP who-has/is-at.
Payload bytes (--payload; default app for mixed, zeros for bulk):
  zeros: all payload bytes are 0 (Wireshark's TLS/HTTP dissectors find nothing to do).
  app:   every data segment carries the bytes of its message at its offset (retransmissions
    repeat them). Each message (a request, a response, an upload burst, an RTO'd or
    evicted segment) on a TLS port is a run of TLS 1.2 application_data records
    (17 03 03 + length; 16408-byte bodies, a shorter last one; the bodies are
    pseudo-random "ciphertext") that Wireshark reassembles across segments. On an HTTP
    port a request is `GET /api/v1/items/NNNNNN HTTP/1.1` with Host, User-Agent, Accept
    and a bearer token padding it to its size, or, from 1200 bytes, a POST with a JSON
    body; a response is `HTTP/1.1 200 OK` with Content-Type: application/json and a
    Content-Length equal to its body: a JSON array of items padded with spaces.
    Messages too short for their headers are grown at planning time (TLS >= 22 B, HTTP
    GET >= 153 B, response >= 87 B). 1-byte zero-window probes carry the next message's
    first byte; keepalive bytes stay 0. No handshake records (no ClientHello). Client
    ports Wireshark binds a dissector to (IRC on 57000, ...) move to 61000-61006, since
    tshark tries the client port when the server port (9200, 3000, ...) has none.
    The only frames tshark flags malformed or as expert errors are reassembly errors "New
    fragment overlaps old data (retransmission?)" on fast retransmissions of uploads whose
    original the tap saw: Wireshark's reaction to a retransmission into a PDU it already
    reassembled, as on real captures (6 in 100k packets, 66 in 1M, seed 1).
Lengths and IP/TCP/UDP/ICMP checksums are right (TCP ones over the whole payload, also
with --snaplen). Frames received by the client side are padded to the Ethernet minimum of
60 bytes. The capture stops at exactly --packets packets, so the last connections are cut
like a real capture.

How: connection and episode plans are small numpy tables; packets are built per time
window (~--batch packets) from the episodes overlapping the window, sorted by time and
encoded into one byte buffer with vectorised numpy; small numba loops copy the headers
into the file buffer and write the payload bytes. Memory stays flat with the packet count.
"""
from __future__ import annotations

import argparse
import struct
import sys
import time
from dataclasses import dataclass, replace

import numpy as np
from numba import njit

EPOCH = 1710234000  # 2024-03-12 09:00:00 UTC: capture start
EPS = 30e-6  # local stack turnaround (a receiver's immediate ACK)
DELACK = 0.040  # Linux delayed-ACK timer
RTO_CAP = 120.0  # TCP_RTO_MAX

# episode types
HS, EX, KA, FAST_UP, FAST_DOWN, RTO, ZW = 0, 1, 2, 3, 4, 5, 6
FIN_C, FIN_S, RST_C, RST_S, EVICT, KA_DEAD, RTO_DEAD, OPEN = 7, 8, 9, 10, 11, 12, 13, 14
CLOSES = np.array([FIN_C, FIN_S, RST_C, RST_S, EVICT, KA_DEAD, RTO_DEAD, OPEN])
CLOSE_P = np.array([0.45, 0.25, 0.05, 0.04, 0.02, 0.01, 0.01, 0.17])

# row tags (for the summary only; they never reach the file)
(T_DATA, T_ACK, T_SYN, T_RETX_SYN, T_RETX_FAST, T_RETX_RTO, T_DUPACK, T_KA, T_KA_ACK,
 T_ZW, T_ZWP, T_WINUPD, T_FIN, T_RST) = range(14)
# row option kinds, resolved per connection (with/without timestamps) when encoding
O_PLAIN, O_SACK, O_SYN, O_NONE = 0, 1, 2, 3
OPT_CODE = np.array([[0, 3, 5, 0], [1, 2, 4, 0]])  # [use_ts][row kind] -> layout
OPT_LEN = np.array([0, 12, 24, 12, 20, 12])  # none, TS, TS+SACK, SACK, SYN+TS, SYN
# TCP flags
F_FIN, F_SYN, F_RST, F_PSH, F_ACK = 0x01, 0x02, 0x04, 0x08, 0x10

GW_MAC = bytes.fromhex("0242ac110001")
HDR_W = 112  # widest header we build (ICMP echo incl. its 56-byte payload: 98)
ROW_COLS = ("ep", "t", "sub", "dir", "flags", "seq", "ack", "plen", "win", "opt", "sl", "sr", "tag",
            "m0", "ml")
DNS_NAMES = ["api.example.com", "db.internal.example", "cdn.example.net",
             "auth.example.org", "metrics.example.com", "s3.example.net"]


# ----------------------------------------------------------------------------- helpers
def parse_count(text: str) -> int:
    text = text.strip().lower().replace("_", "")
    mult = {"k": 10**3, "m": 10**6, "g": 10**9}.get(text[-1:], 1)
    return int(float(text[:-1] if mult > 1 else text) * mult)


def expand(counts):
    """Per-item repeat index and 0-based position within the item, for ragged rows."""
    counts = np.asarray(counts, dtype=np.int64)
    rep = np.repeat(np.arange(len(counts)), counts)
    starts = np.cumsum(counts) - counts
    return rep, np.arange(len(rep), dtype=np.int64) - starts[rep]


def grouped_exclusive_cumsum(values, group_first):
    """Exclusive cumsum restarting at each group (rows sorted by group)."""
    cs = np.cumsum(values)
    excl = cs - values
    return excl - excl[group_first]


def backoff_time(f, k):
    """Time of the k-th (0-based) retransmission after the original: doubling from f, each
    interval capped at RTO_CAP (the Linux tcp_retries2 model)."""
    f = np.asarray(f, dtype=np.float64)
    f = np.where(f > 0, f, 1.0)  # episodes without a timer: any finite value
    k = np.asarray(k, dtype=np.int64)
    uncapped = np.maximum(np.floor(np.log2(RTO_CAP / f)).astype(np.int64) + 1, 0)  # f*2^m < cap
    m = np.minimum(k, uncapped - 1)
    pw = np.left_shift(np.int64(1), m + 1).astype(np.float64)
    return np.where(m >= 0, f * (pw - 1), 0.0) + np.maximum(k - uncapped + 1, 0) * RTO_CAP


def lognorm(rng, median, sigma, n, lo, hi):
    return np.clip(rng.lognormal(np.log(median), sigma, n), lo, hi)


class Rows:
    """Column blocks of packet rows, concatenated once at the end."""

    def __init__(self):
        self.blocks = []

    def add(self, ep, t, dir, flags, seq, ack, plen, win, tag, opt=O_PLAIN, sl=0, sr=0, msg=(0, 0)):
        """msg: (sequence offset where the segment's message starts, message length) of
        data segments; application bytes are a function of the offset within it."""
        n = len(ep)
        if n == 0:
            return
        sub = len(self.blocks)
        vals = (ep, t, sub, dir, flags, seq, ack, plen, win, opt, sl, sr, tag, msg[0], msg[1])
        self.blocks.append([np.broadcast_to(v, n) for v in vals])

    def table(self):
        dtypes = (np.int64, np.float64, np.int32, np.int8, np.uint8, np.int64, np.int64,
                  np.int32, np.int32, np.int8, np.int64, np.int64, np.int8, np.int64, np.int64)
        if not self.blocks:
            return {c: np.zeros(0, d) for c, d in zip(ROW_COLS, dtypes)}
        return {c: np.concatenate([b[i] for b in self.blocks]).astype(d, copy=False)
                for i, (c, d) in enumerate(zip(ROW_COLS, dtypes))}


# ----------------------------------------------------------------------------- profiles
@dataclass(frozen=True)
class Profile:
    """Size and count distributions of one traffic shape (lognormal median, sigma, clip)."""
    name: str
    short_p: float  # share of connections with only a few exchanges
    short_geo: float  # geometric p of their extra exchanges
    long_ex: tuple  # exchanges per long connection
    upload_p: float  # share of requests that are uploads
    upload: tuple  # upload request bytes
    request: tuple  # other request bytes
    response: tuple  # response bytes
    idle_p: float  # share of client think gaps that are 30..900 s idle periods
    payload: str  # default --payload: "zeros" or "app"
    download_p: float = 0.0  # share of responses drawn from `download` instead
    download: tuple = ()
    pkts_per_conn: float = 250.0  # first guess of the planner's search


PROFILES = {
    # big downloads: ~890 bytes/packet, ~24k connections per 5M packets
    "bulk": Profile("bulk", 0.5, 0.4, (12, 1.2, 2, 2000), 0.015, (200e3, 1.0, 2e3, 2e6),
                    (400, 1.0, 20, 60e3), (1500, 1.8, 1, 8e6), 0.04, "zeros"),
    # API-style traffic: many small request/response exchanges per connection, rare
    # uploads/downloads of up to 1-2 MB; ~380 bytes/packet, ~20k connections per 5M packets
    "mixed": Profile("mixed", 0.3, 0.25, (45, 1.3, 2, 3000), 0.002, (30e3, 1.0, 2e3, 1e6),
                     (250, 0.6, 20, 16e3), (300, 1.0, 2, 64e3), 0.007, "app",
                     download_p=0.002, download=(60e3, 1.0, 16e3, 2e6)),
}


# ----------------------------------------------------------------------------- planning
@dataclass
class Plan:
    conn: dict  # per-connection arrays
    ep: dict  # per-episode arrays (sorted by connection, then order)
    hosts: dict  # per-host arrays (clients first, then servers)
    span: float


def plan_hosts(rng, n_conn):
    n_cli = max(50, n_conn // 10)
    n_srv = max(20, n_conn // 100)
    cli_ip = (10 << 24) + rng.choice(1 << 22, n_cli, replace=False) + (1 << 22)
    srv_nets = np.array([(172 << 24) | (16 << 16), (198 << 24) | (51 << 16) | (100 << 8),
                         (203 << 24) | (113 << 8), (172 << 24) | (20 << 16)], dtype=np.int64)
    srv_net = rng.integers(0, 4, n_srv)
    host_part = np.where(srv_net % 2 == 0, rng.integers(2, 65000, n_srv), rng.integers(2, 250, n_srv))
    srv_ip = srv_nets[srv_net] + host_part
    srv_ip = np.unique(srv_ip)  # a duplicate IP would merge two servers
    n_srv = len(srv_ip)
    rng.shuffle(srv_ip)
    cli_win = rng.random(n_cli) < 0.20
    srv_init_ttl = rng.choice([64, 128, 255], n_srv, p=[0.8, 0.1, 0.1])
    srv_win = srv_init_ttl == 128
    ttl = np.concatenate([np.where(cli_win, 128, 64), srv_init_ttl - rng.integers(3, 21, n_srv)])
    return {"ip": np.concatenate([cli_ip, srv_ip]).astype(np.int64),
            "windows": np.concatenate([cli_win, srv_win]),
            "ttl": ttl.astype(np.int64), "n_cli": n_cli, "n": n_cli + n_srv}


def plan_connections(rng, n_conn, hosts):
    c = {}
    n_cli = hosts["n_cli"]
    c["ch"] = rng.integers(0, n_cli, n_conn)
    c["sh"] = n_cli + rng.zipf(1.3, n_conn) % (hosts["n"] - n_cli)  # a few busy servers
    c["sport"] = rng.choice([443, 80, 8080, 8443, 3000, 8000, 6443, 9200], n_conn,
                            p=[0.55, 0.12, 0.08, 0.05, 0.06, 0.06, 0.04, 0.04])
    c["close"] = rng.choice(CLOSES, n_conn, p=CLOSE_P)
    c["follows"] = pick_followers(rng, c)
    f = c["follows"] >= 0
    for k in ("ch", "sh", "sport"):
        c[k][f] = c[k][c["follows"][f]]
    c["win_os"] = hosts["windows"][c["ch"]]
    c["use_ts"] = ~c["win_os"] & (rng.random(n_conn) < 0.97)
    c["mss_c"] = np.where(c["use_ts"], 1448, 1460)
    c["mss_s"] = c["mss_c"].copy()
    c["rtt"] = lognorm(rng, 0.015, 1.0, n_conn, 0.0003, 0.4)
    bw = lognorm(rng, 50e6, 1.0, n_conn, 2e6, 2e9)
    c["tx_s"] = 1514 * 8 / bw
    c["tx_c"] = 3 * c["tx_s"]
    c["win_c"] = rng.integers(400, 3000, n_conn)  # window fields, scaled by 2^7 / 2^8
    c["win_s"] = rng.integers(400, 3000, n_conn)
    c["isn_c"] = rng.integers(0, 1 << 32, n_conn)
    c["isn_s"] = rng.integers(0, 1 << 32, n_conn)
    c["tsoff_c"] = rng.integers(0, 1 << 31, n_conn)
    c["tsoff_s"] = rng.integers(0, 1 << 31, n_conn)
    return c


def pick_followers(rng, c):
    """Pairs (successor j, predecessor p): j reuses p's 4-tuple after p closed."""
    n = len(c["close"])
    follows = np.full(n, -1, dtype=np.int64)
    closed = np.isin(c["close"], [FIN_C, FIN_S, RST_C, RST_S])
    cand = np.arange(n)
    n_pairs = int(0.025 * n)
    succ = rng.choice(cand, min(n_pairs, len(cand)), replace=False)
    pred_pool = np.setdiff1d(np.nonzero(closed)[0], succ)
    pred = rng.choice(pred_pool, min(len(succ), len(pred_pool)), replace=False)
    follows[succ[:len(pred)]] = pred
    return follows


def plan_episodes(rng, c, prof):
    """Episode table: one row per episode, sorted by (connection, order)."""
    n = len(c["close"])
    short = rng.random(n) < prof.short_p
    n_ex = np.where(short, 1 + rng.geometric(prof.short_geo, n),
                    np.ceil(lognorm(rng, *prof.long_ex[:2], n, *prof.long_ex[2:])))
    n_ex = n_ex.astype(np.int64)
    parts = []

    def add(conn, typ, key, **params):
        parts.append(dict(conn=conn, type=np.full(len(conn), typ), key=key, **params))

    hs = np.arange(n)
    k_syn = np.where(rng.random(len(hs)) < 0.015, rng.integers(1, 4, len(hs)), 0)
    add(hs, HS, np.full(len(hs), -1.0), a=k_syn)

    conn, idx = expand(n_ex)
    m = len(conn)
    upload = rng.random(m) < prof.upload_p
    q = np.where(upload, lognorm(rng, *prof.upload[:2], m, *prof.upload[2:]),
                 lognorm(rng, *prof.request[:2], m, *prof.request[2:]))
    p = lognorm(rng, *prof.response[:2], m, *prof.response[2:])
    if prof.download_p:  # (bulk draws nothing here: its bytes stay as they were)
        download = rng.random(m) < prof.download_p
        p = np.where(download, lognorm(rng, *prof.download[:2], m, *prof.download[2:]), p)
    gap = lognorm(rng, 0.3, 1.5, m, 0.001, 60)
    idle = rng.random(m) < prof.idle_p
    gap = np.where(idle, rng.uniform(30, 900, m), gap)
    first = idx == 0  # the request right after connect()
    gap[first] = lognorm(rng, 0.0003, 1.0, first.sum(), 20e-6, 0.005)
    add(conn, EX, idx + 1.0, a=q.astype(np.int64), b=p.astype(np.int64),
        f=lognorm(rng, 0.005, 1.5, m, 50e-6, 30), g=gap)

    def specials(prob, typ, **params):
        sel = np.nonzero(rng.random(n) < prob)[0]
        key = rng.uniform(1.5, n_ex[sel] + 0.5)
        gap = lognorm(rng, 0.2, 1.5, len(sel), 0.001, 30)
        add(sel, typ, key, g=gap, **{k: v(sel) for k, v in params.items()})

    ka_idle = lambda s: rng.choice([15.0, 30, 45, 60, 75, 120, 300], len(s))
    specials(0.08, KA, a=lambda s: rng.integers(1, 6, len(s)), b=lambda s: c["win_os"][s].astype(np.int64),
             c2=lambda s: (rng.random(len(s)) < 0.2).astype(np.int64), f=ka_idle)
    specials(0.015, FAST_UP, a=lambda s: rng.integers(8, 21, len(s)))
    specials(0.015, FAST_DOWN, a=lambda s: rng.integers(8, 21, len(s)))
    rto0 = lambda s: 0.2 + c["rtt"][s]
    specials(0.015, RTO, a=lambda s: rng.integers(1, 8, len(s)), b=lambda s: rng.integers(50, 1449, len(s)), f=rto0)
    specials(0.01, ZW, a=lambda s: 2 * rng.integers(4, 17, len(s)), b=lambda s: rng.integers(1, 9, len(s)),
             c2=lambda s: (rng.random(len(s)) < 0.5).astype(np.int64), f=rto0)

    cl = c["close"]
    ends = np.arange(n)
    win = c["win_os"]
    add(ends, 0, n_ex + 1.0, close=cl,  # type set below from the close kind
        a=np.where(cl == KA_DEAD, np.where(win, 10, 9), np.where(win, 5, 15)),
        b=np.where(np.isin(cl, [EVICT, RTO_DEAD]), rng.integers(50, 1449, n), win.astype(np.int64)),
        f=np.where(cl == KA_DEAD, rng.choice([60.0, 75, 300], n), 0.2 + c["rtt"]),
        f2=np.where(win, 1.0, 75.0),
        g=np.where(cl == EVICT, rng.uniform(360, 1800, n), lognorm(rng, 0.5, 1.5, n, 0.001, 60)))
    parts[-1]["type"] = cl

    cols = ("conn", "type", "key", "a", "b", "c2", "f", "f2", "g")
    ep = {}
    for col in cols:
        ep[col] = np.concatenate([np.broadcast_to(pt.get(col, 0), len(pt["conn"])) for pt in parts])
    ep = {k: ep[k].astype(np.float64 if k in ("key", "f", "f2", "g") else np.int64) for k in cols}
    order = np.lexsort((ep["key"], ep["conn"]))
    ep = {k: v[order] for k, v in ep.items()}
    fast = np.isin(ep["type"], [FAST_UP, FAST_DOWN])
    # lost segment index, leaving >= 4 later segments so 3 true dup ACKs follow
    ep["b"] = np.where(fast, (rng.random(len(order)) * (ep["a"] - 4)).astype(np.int64), ep["b"])
    return ep


def episode_shape(ep, c):
    """Duration, sequence space consumed per direction and packet count of each episode,
    in closed form: the same numbers the emitters produce."""
    t, conn = ep["type"], ep["conn"]
    a, b, f, f2 = ep["a"], ep["b"], ep["f"], ep["f2"]
    r = c["rtt"][conn]
    mc, ms = c["mss_c"][conn], c["mss_s"][conn]
    dur = np.zeros(len(t))
    dc = np.zeros(len(t), np.int64)
    ds = np.zeros(len(t), np.int64)
    npk = np.zeros(len(t), np.int64)

    def put(mask, d, c_, s_, n_):
        dur[mask] = np.broadcast_to(d, mask.shape)[mask]
        dc[mask] = np.broadcast_to(c_, mask.shape)[mask]
        ds[mask] = np.broadcast_to(s_, mask.shape)[mask]
        npk[mask] = np.broadcast_to(n_, mask.shape)[mask]

    put(t == HS, (np.left_shift(1, a) - 1) + r + EPS, 1, 1, a + 3)
    x = exchange_times(a, b, f, r, mc, ms, c["tx_c"][conn], c["tx_s"][conn])
    put(t == EX, x["end"], a, b, x["npk"])
    put(t == KA, a * f + np.where(ep["c2"] == 0, r, EPS), 0, 0, 2 * a)
    k3 = np.where(b % 2 == 0, b + 3, b + 4)
    txu = np.minimum(c["tx_c"][conn], r / (2 * np.maximum(a, 1)))
    n_fast = a + b // 2 + (a - 1 - b) + 2
    put(t == FAST_UP, k3 * txu + 2 * r + EPS, a * mc, 0, n_fast)
    put(t == FAST_DOWN, k3 * c["tx_s"][conn] + r + 2 * EPS, 0, a * ms, n_fast - 1)
    put(t == RTO, backoff_time(f, a - 1) + r, b, 0, a + 2)
    zw_end = (a - 1) * c["tx_s"][conn] + EPS + backoff_time(f, b - 1) + 0.5 * np.minimum(
        f * np.left_shift(1, np.minimum(b, 20)), RTO_CAP)
    put(t == ZW, zw_end, 0, a * ms, a + a // 2 + 2 * b + 1)
    put(t == FIN_C, r + EPS, 1, 1, 3)
    put(t == FIN_S, 200e-6 + r, 1, 1, 3)
    put((t == RST_C) | (t == RST_S), 0.0, 0, 0, 1)
    put(t == EVICT, 0.6 * r, b, 0, 2)
    put(t == KA_DEAD, f + a * f2, 0, 0, a + 1)
    put(t == RTO_DEAD, backoff_time(f, a - 1), 0, 0, a + 1)
    return dur, dc, ds, npk


def exchange_times(q, p, think, r, mc, ms, tx_c, tx_s):
    """Key instants of a request/response exchange, relative to its first packet."""
    nq = -(-q // mc)
    nr = -(-p // ms)
    last_q = (nq - 1) * tx_c + (nq - 1) // 10 * r  # bursts of 10, an RTT apart
    resp0 = last_q + r + think
    last_r = resp0 + (nr - 1) * tx_s
    end = last_r + np.where(nr % 2 == 1, DELACK, EPS)
    srv_delack = (nq % 2 == 1) & (think >= DELACK)
    npk = nq + nq // 2 + srv_delack + nr + nr // 2 + nr % 2
    return dict(nq=nq, nr=nr, last_q=last_q, resp0=resp0, end=end, srv_delack=srv_delack, npk=npk)


def lead_time(span):
    """How long before the capture start connections may have opened."""
    return min(span, 3600.0)


def build_plan(rng, n_packets, span, prof, app, connections=0):
    """Connections, episodes and hosts giving about 1.03 * n_packets TCP packets within
    [0, span): the capture is cut at n_packets, close to the span's end. `app`: messages
    carry application bytes, so each must be long enough for its headers. With
    `connections`, their number is fixed and the long connections' exchanges scale instead
    (to measure what grows with packets alone)."""
    n_conn = connections or max(200, int(n_packets / prof.pkts_per_conn * (1 + lead_time(span) / span)))
    want = n_packets * 1.03 * 0.985  # 1.5% of the packets are noise
    for _ in range(8):
        hosts = plan_hosts(rng, n_conn)
        c = plan_connections(rng, n_conn, hosts)
        ep = plan_episodes(rng, c, prof)
        if app:
            fit_messages(ep, c)
        dur, dc, ds, npk = episode_shape(ep, c)
        ep.update(dur=dur, dc=dc, ds=ds, npk=npk)
        place_in_time(rng, c, ep, span)
        inside = npk[(ep["start"] >= 0) & (ep["start"] < span)].sum()
        if inside >= want and inside < want * 1.15:
            break
        scale = want / max(inside, 1) * 1.03
        if connections:
            prof = longer_connections(prof, scale)
        else:
            n_conn = max(200, int(n_conn * scale))
    allocate_ports(rng, c, hosts)
    if app:
        avoid_dissector_ports(c)
    return Plan(conn=c, ep=ep, hosts=hosts, span=span)


def longer_connections(prof, scale):
    """`prof` with `scale` times the exchanges per long connection (median and cap)."""
    median, sigma, lo, hi = prof.long_ex
    return replace(prof, long_ex=(median * scale, sigma, lo, hi * scale))


def fit_messages(ep, c):
    """Grow messages too short to hold a TLS record or an HTTP head (no randomness, so
    the rest of the plan is unchanged)."""
    port = c["sport"][ep["conn"]]
    tls, http = np.isin(port, TLS_PORTS), np.isin(port, HTTP_PORTS)
    q_min = np.where(tls, TLS_MIN, np.where(http, GET_MIN, 0))
    p_min = np.where(tls, TLS_MIN, np.where(http, RESP_MIN, 0))
    ex = ep["type"] == EX
    ep["a"] = np.where(ex, np.maximum(ep["a"], q_min), ep["a"])
    ep["b"] = np.where(ex, np.maximum(ep["b"], p_min), ep["b"])
    client_data = np.isin(ep["type"], [RTO, EVICT, RTO_DEAD])
    ep["b"] = np.where(client_data, np.maximum(ep["b"], q_min), ep["b"])


def avoid_dissector_ports(c):
    """Move client ports that Wireshark 4.0 binds a dissector to (it tries a connection's
    client port when the server port has none, e.g. IRC on 57000 for a 9200 client) to
    unused ports above the Linux ephemeral range, one per bound port."""
    bound = np.array(DISSECTOR_PORTS)
    hit = np.isin(c["cport"], bound)
    c["cport"][hit] = 61000 + np.searchsorted(bound, c["cport"][hit])


def place_in_time(rng, c, ep, span):
    n = len(c["close"])
    conn = ep["conn"]
    first = np.searchsorted(conn, np.arange(n))
    step = ep["g"] + ep["dur"]
    offset = grouped_exclusive_cumsum(step, first[conn]) + ep["g"]
    life = np.add.reduceat(step, first)
    # connections opened before the capture started are seen mid-stream
    t0 = rng.uniform(-lead_time(span), span, n)
    fol = np.nonzero(c["follows"] >= 0)[0]
    pred = c["follows"][fol]
    t0[fol] = t0[pred] + life[pred] + rng.uniform(1, 120, len(fol))
    c["t0"] = t0
    c["midstream"] = t0 < 0
    ep["start"] = t0[conn] + offset
    ep["end"] = ep["start"] + ep["dur"]
    ep["c0"] = grouped_exclusive_cumsum(ep["dc"], first[conn])
    ep["s0"] = grouped_exclusive_cumsum(ep["ds"], first[conn])


def allocate_ports(rng, c, hosts):
    """Ephemeral ports handed out in turn per client host (distinct until 28232 wrap)."""
    n = len(c["ch"])
    order = np.lexsort((c["t0"], c["ch"]))
    ch_sorted = c["ch"][order]
    first = np.searchsorted(ch_sorted, ch_sorted)
    rank = np.arange(n) - first
    base = rng.integers(0, 28232, hosts["n"])
    step = rng.choice([1, 7, 13, 31, 101], hosts["n"])
    port = np.empty(n, np.int64)
    port[order] = 32768 + (base[ch_sorted] + rank * step[ch_sorted]) % 28232
    fol = c["follows"] >= 0
    port[fol] = port[c["follows"][fol]]
    c["cport"] = port


# ----------------------------------------------------------------------------- emitters
def emit_all(plan, eps):
    """Packet rows of the given episodes (global indices), unsorted."""
    rows = Rows()
    typ = plan.ep["type"][eps]
    for t, fn in ((HS, emit_handshake), (EX, emit_exchange), (KA, emit_keepalive),
                  (FAST_UP, emit_fast_up), (FAST_DOWN, emit_fast_down), (RTO, emit_rto),
                  (ZW, emit_zero_window), (FIN_C, emit_fin_client), (FIN_S, emit_fin_server),
                  (RST_C, emit_rst), (RST_S, emit_rst), (EVICT, emit_evict),
                  (KA_DEAD, emit_ka_dead), (RTO_DEAD, emit_rto_dead)):
        sel = eps[typ == t]
        if len(sel):
            fn(rows, Ctx(plan, sel))
    return rows.table()


class Ctx:
    """Episode and connection parameters gathered for a set of episodes."""

    def __init__(self, plan, e):
        ep, c = plan.ep, plan.conn
        self.e = e
        conn = ep["conn"][e]
        self.st, self.c0, self.s0 = ep["start"][e], ep["c0"][e], ep["s0"][e]
        self.a, self.b, self.c2, self.f, self.f2 = ep["a"][e], ep["b"][e], ep["c2"][e], ep["f"][e], ep["f2"][e]
        self.typ = ep["type"][e]
        for k in ("rtt", "mss_c", "mss_s", "win_c", "win_s", "tx_c", "tx_s"):
            setattr(self, k, c[k][conn])
        self.r = self.rtt


def emit_handshake(rows, x):
    k = x.a  # lost SYNs
    rep, i = expand(k + 1)
    syn_t = x.st[rep] + (np.left_shift(1, i) - 1)
    rows.add(x.e[rep], syn_t, 0, F_SYN, x.c0[rep], 0, 0, 64240,
             np.where(i == 0, T_SYN, T_RETX_SYN), O_SYN)
    t1 = x.st + (np.left_shift(1, k) - 1) + x.r
    rows.add(x.e, t1, 1, F_SYN | F_ACK, x.s0, x.c0 + 1, 0, 65160, T_SYN, O_SYN)
    rows.add(x.e, t1 + EPS, 0, F_ACK, x.c0 + 1, x.s0 + 1, 0, x.win_c, T_ACK)


def emit_exchange(rows, x):
    q, p = x.a, x.b
    tm = exchange_times(q, p, x.f, x.r, x.mss_c, x.mss_s, x.tx_c, x.tx_s)
    nq, nr = tm["nq"], tm["nr"]
    # request segments, bursts of 10 per RTT
    rep, j = expand(nq)
    tq = x.st[rep] + j * x.tx_c[rep] + j // 10 * x.r[rep]
    m = x.mss_c[rep]
    rows.add(x.e[rep], tq, 0, F_ACK | np.where(j == nq[rep] - 1, F_PSH, 0), x.c0[rep] + j * m,
             x.s0[rep], np.minimum(m, q[rep] - j * m), x.win_c[rep], T_DATA, msg=(x.c0[rep], q[rep]))
    # server ACKs every second request segment
    rep, i = expand(nq // 2)
    j = 2 * i + 1
    m = x.mss_c[rep]
    rows.add(x.e[rep], x.st[rep] + j * x.tx_c[rep] + j // 10 * x.r[rep] + x.r[rep], 1, F_ACK,
             x.s0[rep], x.c0[rep] + np.minimum((j + 1) * m, q[rep]), 0, x.win_s[rep], T_ACK)
    d = tm["srv_delack"]
    rows.add(x.e[d], x.st[d] + tm["last_q"][d] + x.r[d] + DELACK, 1, F_ACK, x.s0[d], x.c0[d] + q[d],
             0, x.win_s[d], T_ACK)
    # response segments paced by the downstream bottleneck
    rep, j = expand(nr)
    tr = x.st[rep] + tm["resp0"][rep] + j * x.tx_s[rep]
    m = x.mss_s[rep]
    rows.add(x.e[rep], tr, 1, F_ACK | np.where(j == nr[rep] - 1, F_PSH, 0), x.s0[rep] + j * m,
             x.c0[rep] + q[rep], np.minimum(m, p[rep] - j * m), x.win_s[rep], T_DATA,
             msg=(x.s0[rep], p[rep]))
    # client ACKs every second segment, delays the odd last one
    rep, i = expand(nr // 2)
    j = 2 * i + 1
    m = x.mss_s[rep]
    rows.add(x.e[rep], x.st[rep] + tm["resp0"][rep] + j * x.tx_s[rep] + EPS, 0, F_ACK,
             x.c0[rep] + q[rep], x.s0[rep] + np.minimum((j + 1) * m, p[rep]), 0, x.win_c[rep], T_ACK)
    d = nr % 2 == 1
    rows.add(x.e[d], x.st[d] + tm["end"][d], 0, F_ACK, x.c0[d] + q[d], x.s0[d] + p[d], 0,
             x.win_c[d], T_ACK)


def emit_keepalive(rows, x):
    rep, i = expand(x.a)
    pd = x.c2[rep]  # prober direction
    tp = x.st[rep] + (i + 1) * x.f[rep]
    nxt_p = np.where(pd == 0, x.c0[rep], x.s0[rep])
    nxt_a = np.where(pd == 0, x.s0[rep], x.c0[rep])
    win_p = np.where(pd == 0, x.win_c[rep], x.win_s[rep])
    win_a = np.where(pd == 0, x.win_s[rep], x.win_c[rep])
    rows.add(x.e[rep], tp, pd, F_ACK, nxt_p - 1, nxt_a, x.b[rep], win_p, T_KA)
    rows.add(x.e[rep], tp + np.where(pd == 0, x.r[rep], EPS), 1 - pd, F_ACK, nxt_a, nxt_p, 0, win_a, T_KA_ACK)


def fast_k3(lost):
    """Index of the segment whose (third true) dup ACK triggers the fast retransmit."""
    return np.where(lost % 2 == 0, lost + 3, lost + 4)


def emit_fast_up(rows, x):
    w, lost = x.a, x.b
    tx = np.minimum(x.tx_c, x.r / (2 * w))
    rep, j = expand(w)
    m = x.mss_c[rep]
    tj = x.st[rep] + j * tx[rep]
    rows.add(x.e[rep], tj, 0, F_ACK | np.where(j == w[rep] - 1, F_PSH, 0), x.c0[rep] + j * m,
             x.s0[rep], m, x.win_c[rep], T_DATA, msg=(x.c0[rep], w[rep] * m))
    fast_acks(rows, x, rep, j, tj + x.r[rep], 1, x.c0, x.s0, x.mss_c, x.win_s)
    t_retx = x.st + fast_k3(lost) * tx + x.r + EPS
    rows.add(x.e, t_retx, 0, F_ACK, x.c0 + lost * x.mss_c, x.s0, x.mss_c, x.win_c, T_RETX_FAST,
             msg=(x.c0, w * x.mss_c))
    rows.add(x.e, t_retx + x.r, 1, F_ACK, x.s0, x.c0 + w * x.mss_c, 0, x.win_s, T_ACK)


def emit_fast_down(rows, x):
    w, lost = x.a, x.b
    rep, j = expand(w)
    m = x.mss_s[rep]
    tj = x.st[rep] + j * x.tx_s[rep]
    seen = j != lost[rep]  # the lost segment never reached the tap
    rows.add(x.e[rep][seen], tj[seen], 1, F_ACK, (x.s0[rep] + j * m)[seen], x.c0[rep][seen],
             m[seen], x.win_s[rep][seen], T_DATA, msg=(x.s0[rep][seen], (w[rep] * m)[seen]))
    fast_acks(rows, x, rep, j, tj + EPS, 0, x.s0, x.c0, x.mss_s, x.win_c)
    t_retx = x.st + fast_k3(lost) * x.tx_s + EPS + x.r
    rows.add(x.e, t_retx, 1, F_ACK, x.s0 + lost * x.mss_s, x.c0, x.mss_s, x.win_s, T_RETX_FAST,
             msg=(x.s0, w * x.mss_s))
    rows.add(x.e, t_retx + EPS, 0, F_ACK, x.c0, x.s0 + w * x.mss_s, 0, x.win_c, T_ACK)


def fast_acks(rows, x, rep, j, t_ack, adir, data0, own0, mss, win):
    """Receiver ACKs of a burst with one loss: every 2nd segment before it, then one
    ACK per later segment carrying the hole's left edge and a growing SACK block."""
    lost = x.b[rep]
    m = mss[rep]
    before = (j < lost) & (j % 2 == 1)
    rows.add(x.e[rep][before], t_ack[before], adir, F_ACK, own0[rep][before],
             (data0[rep] + (j + 1) * m)[before], 0, win[rep][before], T_ACK)
    after = j > lost
    dup = after & ((lost % 2 == 0) | (j > lost + 1))  # a hole right after an odd ACK: first is new
    rows.add(x.e[rep][after], t_ack[after], adir, F_ACK, own0[rep][after],
             (data0[rep] + lost * m)[after], 0, win[rep][after], np.where(dup, T_DUPACK, T_ACK)[after],
             O_SACK, (data0[rep] + (lost + 1) * m)[after], (data0[rep] + (j + 1) * m)[after])


def emit_rto(rows, x):
    rep, k = expand(x.a)
    rows.add(x.e, x.st, 0, F_ACK | F_PSH, x.c0, x.s0, x.b, x.win_c, T_DATA, msg=(x.c0, x.b))
    rows.add(x.e[rep], x.st[rep] + backoff_time(x.f[rep], k), 0, F_ACK | F_PSH, x.c0[rep], x.s0[rep],
             x.b[rep], x.win_c[rep], T_RETX_RTO, msg=(x.c0[rep], x.b[rep]))
    rows.add(x.e, x.st + backoff_time(x.f, x.a - 1) + x.r, 1, F_ACK, x.s0, x.c0 + x.b, 0, x.win_s, T_ACK)


def emit_rto_dead(rows, x):
    rep, k = expand(x.a)
    rows.add(x.e, x.st, 0, F_ACK | F_PSH, x.c0, x.s0, x.b, x.win_c, T_DATA, msg=(x.c0, x.b))
    rows.add(x.e[rep], x.st[rep] + backoff_time(x.f[rep], k), 0, F_ACK | F_PSH, x.c0[rep], x.s0[rep],
             x.b[rep], x.win_c[rep], T_RETX_RTO, msg=(x.c0[rep], x.b[rep]))


def emit_zero_window(rows, x):
    w, n_probe = x.a, x.b
    rep, j = expand(w)
    m = x.mss_s[rep]
    tj = x.st[rep] + j * x.tx_s[rep]
    rows.add(x.e[rep], tj, 1, F_ACK, x.s0[rep] + j * m, x.c0[rep], m, x.win_s[rep], T_DATA,
             msg=(x.s0[rep], w[rep] * m))
    ack = (j % 2) == 1  # the client ACKs every second one with a shrinking window
    win = (x.win_c[rep] * (w[rep] - 1 - j) // w[rep])
    rows.add(x.e[rep][ack], tj[ack] + EPS, 0, F_ACK, x.c0[rep][ack], (x.s0[rep] + (j + 1) * m)[ack], 0,
             win[ack], np.where(win == 0, T_ZW, T_ACK)[ack])
    una = x.s0 + w * x.mss_s
    t_last = x.st + (w - 1) * x.tx_s + EPS
    rep, k = expand(n_probe)
    tp = t_last[rep] + backoff_time(x.f[rep], k)
    one = x.c2[rep] == 1  # 1 byte at una (BSD/Windows) vs Linux 0 bytes at una-1
    # a 1-byte probe carries the next byte the server has queued: its next message's first
    rows.add(x.e[rep], tp, 1, F_ACK, una[rep] - (~one), x.c0[rep], one.astype(np.int32), x.win_s[rep], T_ZWP,
             msg=(una[rep], np.int64(TLS_REC)))
    rows.add(x.e[rep], tp + EPS, 0, F_ACK, x.c0[rep], una[rep], 0, 0, T_ZW)
    t_upd = t_last + backoff_time(x.f, n_probe - 1) + 0.5 * np.minimum(
        x.f * np.left_shift(1, np.minimum(n_probe, 20)), RTO_CAP)
    rows.add(x.e, t_upd, 0, F_ACK, x.c0, una, 0, x.win_c, T_WINUPD)


def emit_fin_client(rows, x):
    rows.add(x.e, x.st, 0, F_FIN | F_ACK, x.c0, x.s0, 0, x.win_c, T_FIN)
    rows.add(x.e, x.st + x.r, 1, F_FIN | F_ACK, x.s0, x.c0 + 1, 0, x.win_s, T_FIN)
    rows.add(x.e, x.st + x.r + EPS, 0, F_ACK, x.c0 + 1, x.s0 + 1, 0, x.win_c, T_ACK)


def emit_fin_server(rows, x):
    rows.add(x.e, x.st, 1, F_FIN | F_ACK, x.s0, x.c0, 0, x.win_s, T_FIN)
    rows.add(x.e, x.st + 200e-6, 0, F_FIN | F_ACK, x.c0, x.s0 + 1, 0, x.win_c, T_FIN)
    rows.add(x.e, x.st + 200e-6 + x.r, 1, F_ACK, x.s0 + 1, x.c0 + 1, 0, x.win_s, T_ACK)


def emit_rst(rows, x):
    d = (x.typ == RST_S).astype(np.int8)
    rows.add(x.e, x.st, d, F_RST | F_ACK, np.where(d == 1, x.s0, x.c0), np.where(d == 1, x.c0, x.s0),
             0, 0, T_RST)


def emit_evict(rows, x):
    """After a long idle the next segment meets a middlebox that forgot the flow."""
    rows.add(x.e, x.st, 0, F_ACK | F_PSH, x.c0, x.s0, x.b, x.win_c, T_DATA, msg=(x.c0, x.b))
    rows.add(x.e, x.st + 0.6 * x.r, 1, F_RST, x.s0, 0, 0, 0, T_RST, O_NONE)


def emit_ka_dead(rows, x):
    rep, i = expand(x.a)
    rows.add(x.e[rep], x.st[rep] + x.f[rep] + i * x.f2[rep], 0, F_ACK, x.c0[rep] - 1, x.s0[rep],
             x.b[rep], x.win_c[rep], T_KA)
    rows.add(x.e, x.st + x.f + x.a * x.f2, 0, F_RST | F_ACK, x.c0, x.s0, 0, 0, T_RST)


# ----------------------------------------------------------------------------- noise
def plan_noise(rng, n_events, span, hosts):
    """Request/response pairs: 0 DNS, 1 ICMP echo, 2 ARP."""
    kind = rng.choice(3, n_events, p=[0.6, 0.25, 0.15])
    t = np.sort(rng.uniform(0, span, n_events))
    delay = lognorm(rng, 0.002, 1.0, n_events, 50e-6, 0.2)
    return {"t": np.concatenate([t, t + delay]),
            "kind": np.concatenate([2 * kind, 2 * kind + 1]),
            "host": np.tile(rng.integers(0, hosts["n_cli"], n_events), 2),
            "peer": np.tile(rng.integers(hosts["n_cli"], hosts["n"], n_events), 2),
            "id": np.tile(rng.integers(0, 1 << 16, n_events), 2),
            "port": np.tile(rng.integers(32768, 61000, n_events), 2),
            "name": np.tile(rng.integers(0, len(DNS_NAMES), n_events), 2)}


# ----------------------------------------------------------------------------- encoding
def put(mat, col, nbytes, values, rows=slice(None)):
    """Write big-endian integers into byte columns col..col+nbytes-1."""
    n = mat.shape[0] if isinstance(rows, slice) else len(rows)
    be = np.empty(n, ">u8")
    be[:] = np.asarray(values, dtype=np.int64) & ((1 << (8 * nbytes)) - 1)
    mat[rows, col:col + nbytes] = be.view(np.uint8).reshape(n, 8)[:, 8 - nbytes:]


def ones_sum(mat, lo, hi):
    """Ones'-complement-ready sum of the big-endian 16-bit words in columns lo..hi-1."""
    words = mat[:, lo:hi:2].astype(np.int64) * 256 + mat[:, lo + 1:hi:2]
    return words.sum(axis=1)


def fold(total):
    total = np.asarray(total, dtype=np.int64)
    for _ in range(3):
        total = (total & 0xFFFF) + (total >> 16)
    return (~total) & 0xFFFF


def mac_of(host):
    return (0x020000000000 + np.asarray(host, dtype=np.int64) * 7919) & 0xFFFFFFFFFFFF


def put_ip(mat, rows, ip_len, ip_id, ttl, proto, src, dst, df=True):
    mat[rows, 12] = 0x08
    mat[rows, 14] = 0x45
    put(mat, 16, 2, ip_len, rows)
    put(mat, 18, 2, ip_id, rows)
    mat[rows, 20] = 0x40 if df else 0
    mat[rows, 22] = ttl
    mat[rows, 23] = proto
    put(mat, 26, 4, src, rows)
    put(mat, 30, 4, dst, rows)
    put(mat, 24, 2, fold(ones_sum(mat[rows], 14, 34)), rows)


def put_eth(mat, rows, src_mac, dst_mac):
    put(mat, 0, 6, dst_mac, rows)
    put(mat, 6, 6, src_mac, rows)


def encode_tcp(plan, rw, state):
    """Header bytes (M x HDR_W) and frame lengths of time-sorted TCP rows."""
    c, h = plan.conn, plan.hosts
    conn = plan.ep["conn"][rw["ep"]]
    d = rw["dir"].astype(np.int64)
    m = len(conn)
    mat = np.zeros((m, HDR_W), np.uint8)
    cli, srv = c["ch"][conn], c["sh"][conn]
    src = np.where(d == 0, cli, srv)
    put_eth(mat, slice(None), np.where(d == 0, mac_of(cli), int.from_bytes(GW_MAC, "big")),
            np.where(d == 0, int.from_bytes(GW_MAC, "big"), mac_of(cli)))
    use_ts = c["use_ts"][conn]
    code = OPT_CODE[use_ts.astype(np.int64), rw["opt"]]
    tcp_hl = 20 + OPT_LEN[code]
    ip_len = 20 + tcp_hl + rw["plen"]
    ip_id = ip_ids(plan, conn, d, src, state)
    put_ip(mat, slice(None), ip_len, ip_id, h["ttl"][src], 6, h["ip"][src], h["ip"][np.where(d == 0, srv, cli)])
    put(mat, 34, 2, np.where(d == 0, c["cport"][conn], c["sport"][conn]))
    put(mat, 36, 2, np.where(d == 0, c["sport"][conn], c["cport"][conn]))
    isn_own = np.where(d == 0, c["isn_c"][conn], c["isn_s"][conn])
    isn_peer = np.where(d == 0, c["isn_s"][conn], c["isn_c"][conn])
    put(mat, 38, 4, (isn_own + rw["seq"]) & 0xFFFFFFFF)
    has_ack = (rw["flags"] & F_ACK) != 0
    put(mat, 42, 4, np.where(has_ack, (isn_peer + rw["ack"]) & 0xFFFFFFFF, 0))
    mat[:, 46] = (tcp_hl // 4) << 4
    mat[:, 47] = rw["flags"]
    put(mat, 48, 2, np.minimum(rw["win"], 65535))
    put_tcp_options(mat, plan, rw, conn, d, code, isn_peer, state)
    pseudo = (ones_sum(mat, 26, 34) + 6 + tcp_hl + rw["plen"])
    put(mat, 50, 2, fold(pseudo + ones_sum(mat, 34, 34 + 44)))
    frame = 14 + ip_len
    frame = np.where(d == 1, np.maximum(frame, 60), frame)  # received runts are padded
    return mat, frame, 14 + 20 + tcp_hl


def put_tcp_options(mat, plan, rw, conn, d, code, isn_peer, state):
    c = plan.conn
    tsval, tsecr = timestamps(plan, rw, conn, d, state)
    syn = rw["flags"] & F_SYN != 0
    tsecr = np.where(syn & (d == 0), 0, tsecr)
    sack_l = (isn_peer + rw["sl"]) & 0xFFFFFFFF
    sack_r = (isn_peer + rw["sr"]) & 0xFFFFFFFF
    for cd, layout in ((1, "nnT"), (2, "nnTnnS"), (3, "nnS"), (4, "MPTnW"), (5, "MnWnnP")):
        rows = np.nonzero(code == cd)[0]
        if len(rows) == 0:
            continue
        col = 54
        for item in layout:
            if item == "n":
                mat[rows, col] = 1
                col += 1
            elif item == "T":
                mat[rows, col], mat[rows, col + 1] = 8, 10
                put(mat, col + 2, 4, tsval[rows], rows)
                put(mat, col + 6, 4, tsecr[rows], rows)
                col += 10
            elif item == "S":
                mat[rows, col], mat[rows, col + 1] = 5, 10
                put(mat, col + 2, 4, sack_l[rows], rows)
                put(mat, col + 6, 4, sack_r[rows], rows)
                col += 10
            elif item == "M":
                mat[rows, col], mat[rows, col + 1] = 2, 4
                put(mat, col + 2, 2, np.full(len(rows), 1460), rows)
                col += 4
            elif item == "P":
                mat[rows, col], mat[rows, col + 1] = 4, 2
                col += 2
            elif item == "W":
                mat[rows, col], mat[rows, col + 1] = 3, 3
                mat[rows, col + 2] = np.where(c["win_os"][conn[rows]], 8, 7)
                col += 3


def timestamps(plan, rw, conn, d, state):
    """TSval: the sender's 1 kHz clock (server clocks read at send time, RTT/2 earlier);
    TSecr: the last TSval this side received from its peer in this connection."""
    c = plan.conn
    r = c["rtt"][conn]
    sent = rw["t"] - np.where(d == 1, r / 2, 0.0)
    off = np.where(d == 0, c["tsoff_c"][conn], c["tsoff_s"][conn])
    tsval = (off + (sent * 1000).astype(np.int64)) & 0xFFFFFFFF
    # forward-fill the peer's last TSval along each connection's rows (time order)
    order = np.argsort(conn, kind="stable")
    cs, ds_, vs = conn[order], d[order], tsval[order]
    m = len(order)
    if m == 0:
        return tsval, tsval.copy()
    pos = np.arange(m)
    new_conn = np.ones(m, bool)
    new_conn[1:] = cs[1:] != cs[:-1]
    conn_start = np.maximum.accumulate(np.where(new_conn, pos, 0))
    tsecr_sorted = np.zeros(m, np.int64)
    for side in (0, 1):
        last = np.maximum.accumulate(np.where(ds_ == side, pos, -1))
        prev = np.concatenate([[-1], last[:-1]])
        valid = prev >= conn_start
        carried = state["last_ts"][cs, side]
        tsecr_sorted = np.where(ds_ == 1 - side, np.where(valid, vs[np.maximum(prev, 0)], carried),
                                tsecr_sorted)
    # remember each connection's last TSval per side for the next window
    for side in (0, 1):
        sel = ds_ == side
        state["last_ts"][cs[sel], side] = vs[sel]  # later rows overwrite earlier ones
    tsecr = np.empty(m, np.int64)
    tsecr[order] = tsecr_sorted
    return tsval, tsecr


def ip_ids(plan, conn, d, src_host, state):
    """Windows: one counter per host; Linux: one counter per connection and direction."""
    win = plan.hosts["windows"][src_host]
    key = np.where(win, src_host, plan.hosts["n"] + 2 * conn + d)
    order = np.argsort(key, kind="stable")
    ks = key[order]
    first = np.searchsorted(ks, ks)
    rank = np.empty(len(key), np.int64)
    rank[order] = np.arange(len(key)) - first
    ids = (state["id_base"][key] + state["id_count"][key] + rank) & 0xFFFF
    np.add.at(state["id_count"], key, 1)
    return ids


def encode_noise(plan, nz):
    h = plan.hosts
    m = len(nz["t"])
    mat = np.zeros((m, HDR_W), np.uint8)
    frame = np.zeros(m, np.int64)
    kind, host, peer = nz["kind"], nz["host"], nz["peer"]
    gw_mac = int.from_bytes(GW_MAC, "big")
    resolver = (10 << 24) + 2
    reply = kind % 2 == 1
    # DNS over UDP to the resolver
    for name_i, name in enumerate(DNS_NAMES):
        for rep in (False, True):
            rows = np.nonzero((kind == (1 if rep else 0)) & (nz["name"] == name_i))[0]
            if len(rows) == 0:
                continue
            payload = dns_payload(name, rep)
            n_p = len(payload)
            mat[rows, 42:42 + n_p] = np.frombuffer(payload, np.uint8)
            put(mat, 42, 2, nz["id"][rows], rows)
            src = h["ip"][host[rows]] if not rep else np.full(len(rows), resolver)
            dst = np.full(len(rows), resolver) if not rep else h["ip"][host[rows]]
            udp_len = 8 + n_p
            put_eth(mat, rows, mac_of(host[rows]) if not rep else gw_mac, gw_mac if not rep else mac_of(host[rows]))
            put_ip(mat, rows, 20 + udp_len, nz["id"][rows] ^ 0x5A5A, 64 if not rep else 63, 17, src, dst, df=not rep)
            put(mat, 34, 2, nz["port"][rows] if not rep else 53, rows)
            put(mat, 36, 2, 53 if not rep else nz["port"][rows], rows)
            put(mat, 38, 2, udp_len, rows)
            sub = mat[rows]
            csum = fold(ones_sum(sub, 26, 34) + 17 + udp_len + ones_sum(sub, 34, 42 + n_p + n_p % 2))
            put(mat, 40, 2, np.where(csum == 0, 0xFFFF, csum), rows)
            frame[rows] = 14 + 20 + udp_len
    # ICMP echo to a server, 56 zero bytes of data
    for rep in (False, True):
        rows = np.nonzero(kind == (3 if rep else 2))[0]
        if len(rows) == 0:
            continue
        a, b = h["ip"][host[rows]], h["ip"][peer[rows]]
        put_eth(mat, rows, mac_of(host[rows]) if not rep else gw_mac, gw_mac if not rep else mac_of(host[rows]))
        put_ip(mat, rows, 84, nz["id"][rows], 64 if not rep else h["ttl"][peer[rows]], 1,
               a if not rep else b, b if not rep else a)
        mat[rows, 34] = 0 if rep else 8
        put(mat, 38, 2, nz["id"][rows], rows)
        put(mat, 40, 2, nz["port"][rows] & 0xFFFF, rows)
        put(mat, 36, 2, fold(ones_sum(mat[rows], 34, 42)), rows)
        frame[rows] = 98
    # ARP: who-has the gateway (broadcast), is-at reply padded to 60
    for rep in (False, True):
        rows = np.nonzero(kind == (5 if rep else 4))[0]
        if len(rows) == 0:
            continue
        me = mac_of(host[rows])
        put_eth(mat, rows, me if not rep else gw_mac, 0xFFFFFFFFFFFF if not rep else me)
        put(mat, 12, 2, 0x0806, rows)
        put(mat, 14, 6, 0x000108000604, rows)
        put(mat, 20, 2, 2 if rep else 1, rows)
        gw_ip = (10 << 24) + 1
        put(mat, 22, 6, gw_mac if rep else me, rows)
        put(mat, 28, 4, gw_ip if rep else h["ip"][host[rows]], rows)
        put(mat, 32, 6, me if rep else 0, rows)
        put(mat, 38, 4, h["ip"][host[rows]] if rep else gw_ip, rows)
        frame[rows] = 60 if rep else 42
    hdr = np.minimum(frame, HDR_W)
    return mat, frame, hdr


def dns_payload(name, reply):
    qname = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    head = struct.pack(">HHHHHH", 0, 0x8180 if reply else 0x0100, 1, 1 if reply else 0, 0, 0)
    body = head + qname + struct.pack(">HH", 1, 1)
    if reply:
        body += struct.pack(">HHHIH4s", 0xC00C, 1, 1, 300, 4, bytes([93, 184, 216, 34]))
    return body


# ----------------------------------------------------------------------------- payload bytes
# With --payload app every data segment carries the bytes of the message it belongs to, a
# pure function of (message kind, offset in the message, message length, episode), so
# retransmissions repeat the original bytes and any window sees the same stream.
TLS_PORTS = (443, 8443, 6443, 9200)
# `tshark -G decodes` tcp.port entries in 32768..60999 (ecatf, pcp, pmproxy, enip, cbsp, ams, irc)
DISSECTOR_PORTS = (34980, 44321, 44322, 44818, 48049, 48898, 57000)
HTTP_PORTS = (80, 8080, 3000, 8000)
PK_NONE, PK_TLS, PK_HTTP_REQ, PK_HTTP_RESP = 0, 1, 2, 3
TLS_REC = 5 + 16408  # header + a full AES-GCM record (8 nonce + 16384 data + 16 tag)
TLS_MIN = 5 + 17  # header + the smallest TLS 1.3 record (1 content type + 16 tag)
POST_FROM = 1200  # requests this long are POSTs with a JSON body, shorter ones GETs
GET_HEAD = (b"GET /api/v1/items/###### HTTP/1.1\r\nHost: api.example.com\r\n"
            b"User-Agent: okhttp/4.12.0\r\nAccept: application/json\r\nAuthorization: Bearer ")
POST_HEAD = (b"POST /api/v1/items HTTP/1.1\r\nHost: api.example.com\r\nUser-Agent: okhttp/4.12.0\r\n"
             b"Content-Type: application/json\r\nContent-Length: ")
RESP_HEAD = b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: application/json\r\nContent-Length: "
HEAD_END = b"\r\n\r\n"
JSON_ITEM = b'{"id":1#####,"name":"item-1#####","price":1##.##,"stock":1##}'  # no leading 0s
GET_MIN = len(GET_HEAD) + 16 + len(HEAD_END)  # bearer token of at least 16 characters
RESP_MIN = len(RESP_HEAD) + 1 + len(HEAD_END) + 2  # body "[]"
TOKEN_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def text_table(text):
    """Bytes of a template and, per byte, the decimal place a '#' shows (-1: literal)."""
    raw = np.frombuffer(text, np.uint8).copy()
    place = np.full(len(raw), -1, np.int64)
    run = 0
    for i in range(len(raw) - 1, -1, -1):
        run = run + 1 if raw[i] == ord("#") else 0
        if run:
            place[i] = run - 1
    return raw, place


def payload_tables():
    rnd = np.random.default_rng(0x7157).integers(0, 256, 1 << 16).astype(np.uint8)  # "ciphertext"
    rnd = np.concatenate([rnd, rnd])  # a run of up to 64 KiB from any start is one slice
    tables = [rnd, np.frombuffer(TOKEN_CHARS, np.uint8).copy(), np.frombuffer(HEAD_END, np.uint8).copy()]
    for text in (GET_HEAD, POST_HEAD, RESP_HEAD, JSON_ITEM):
        tables += text_table(text)
    return tuple(tables)


PAYLOAD_TABLES = payload_tables()


@njit(cache=True, nogil=True)
def template_byte(raw, place, r, value):
    pl = place[r]
    if pl < 0:
        return raw[r]
    return 48 + (value // 10 ** pl) % 10


@njit(cache=True, nogil=True)
def n_digits(v):
    d = 1
    while v >= 10:
        v //= 10
        d += 1
    return d


@njit(cache=True, nogil=True)
def length_layout(mlen, head):
    """(digits, extra space, body length) of HEAD + Content-Length + HEAD_END + body filling
    mlen bytes; at a power of ten no digit count fits and one space of OWS pads the head."""
    for extra in range(2):
        for d in range(1, 12):
            body = mlen - head - 4 - extra - d
            if body >= 0 and n_digits(body) == d:
                return d, extra, body
    return 1, 0, -1


@njit(cache=True, nogil=True)
def tls_record(pos, mlen):
    """(start, length) of the record holding byte pos: full records, then the rest, which
    borrows from the last full record rather than be shorter than TLS_MIN."""
    full = mlen // TLS_REC
    tail = mlen - full * TLS_REC
    if 0 < tail < TLS_MIN and full > 0:
        cut = (full - 1) * TLS_REC
        if pos >= cut:
            short = TLS_REC - TLS_MIN
            if pos < cut + short:
                return cut, short
            return cut + short, tail + TLS_MIN
    start = pos // TLS_REC * TLS_REC
    return start, min(TLS_REC, mlen - start)


@njit(cache=True, nogil=True)
def tls_bytes(out, n, pos, mlen, mid, rnd):
    i = 0
    while i < n:
        start, length = tls_record(pos + i, mlen)
        r = pos + i - start
        run = min(length - r, n - i)
        if run <= 0:  # beyond the message: cannot happen for planned segments
            out[i:n] = 0
            return
        head = max(min(5 - r, run), 0)
        for k in range(head):
            rr = r + k
            if rr < 3:
                out[i + k] = (0x17, 0x03, 0x03)[rr]
            elif rr == 3:
                out[i + k] = (length - 5) >> 8
            else:
                out[i + k] = (length - 5) & 0xFF
        body = (pos + i + head + mid * 7919) & 0xFFFF
        out[i + head:i + run] = rnd[body:body + run - head]
        i += run


@njit(cache=True, nogil=True)
def json_bytes(out, i0, n, b, size, mid, raw, place):
    """Body bytes b.. of `[item,item,...]` padded with spaces to `size` (valid JSON)."""
    width = len(raw) + 1
    items = max((size - 1) // width, 0)
    end = items * width - 1 if items > 0 else 0  # items and commas
    for k in range(n):
        p = b + k
        if p == 0:
            c = 91  # [
        else:
            p -= 1
            if p < end:
                it, r = p // width, p % width
                c = 44 if r == width - 1 else template_byte(raw, place, r, (mid * 7919 + it * 104729) % 1000000)
            elif p == end:
                c = 93  # ]
            else:
                c = 32
        out[i0 + k] = c


@njit(cache=True, nogil=True)
def length_message_bytes(out, n, pos, mlen, mid, raw, place, head_end, j_raw, j_place):
    """HEAD Content-Length: N CRLF CRLF + N bytes of JSON."""
    head = len(raw)
    d, extra, body = length_layout(mlen, head)
    for k in range(n):
        p = pos + k
        if p < head:
            out[k] = raw[p]
            continue
        p -= head
        if p < extra:
            out[k] = 32
            continue
        p -= extra
        if p < d:
            out[k] = 48 + (body // 10 ** (d - 1 - p)) % 10
            continue
        p -= d
        if p < 4:
            out[k] = head_end[p]
            continue
        json_bytes(out, k, n - k, p - 4, body, mid, j_raw, j_place)
        return


@njit(cache=True, nogil=True)
def get_bytes(out, n, pos, mlen, mid, raw, place, token, head_end, rnd):
    head = len(raw)
    for k in range(n):
        p = pos + k
        if p < head:
            out[k] = template_byte(raw, place, p, mid % 1000000)
        elif p >= mlen - 4:
            out[k] = head_end[p - (mlen - 4)]
        else:
            out[k] = token[rnd[(p + mid * 31) & 0xFFFF] & 63]


@njit(cache=True, nogil=True)
def fill_payloads(buf, start, cap, csum_at, kind, moff, mlen, mid, plen, rnd, token, head_end,
                  get_raw, get_place, post_raw, post_place, resp_raw, resp_place, j_raw, j_place):
    """Write each segment's application bytes (up to its caplen) and add them into its TCP
    checksum (computed over all of them, as the sender did)."""
    out = np.zeros(1 << 16, np.uint8)
    for i in range(len(start)):
        kd = kind[i]
        n = plen[i]
        if kd == PK_NONE or n <= 0:
            continue
        if kd == PK_TLS:
            tls_bytes(out, n, moff[i], mlen[i], mid[i], rnd)
        elif kd == PK_HTTP_RESP:
            length_message_bytes(out, n, moff[i], mlen[i], mid[i], resp_raw, resp_place, head_end, j_raw, j_place)
        elif mlen[i] >= POST_FROM:
            length_message_bytes(out, n, moff[i], mlen[i], mid[i], post_raw, post_place, head_end, j_raw, j_place)
        else:
            get_bytes(out, n, moff[i], mlen[i], mid[i], get_raw, get_place, token, head_end, rnd)
        c = cap[i]
        if c > 0:
            buf[start[i]:start[i] + c] = out[:c]
        if csum_at[i] >= 0:
            total = 0
            for k in range(0, n - 1, 2):
                total += (np.int64(out[k]) << 8) | out[k + 1]
            if n % 2:
                total += np.int64(out[n - 1]) << 8
            o = csum_at[i]
            total += (~((np.int64(buf[o]) << 8) | buf[o + 1])) & 0xFFFF
            while total >> 16:
                total = (total & 0xFFFF) + (total >> 16)
            total = (~total) & 0xFFFF
            buf[o] = total >> 8
            buf[o + 1] = total & 0xFF


def payload_spec(plan, rw):
    """Per TCP row: payload kind, offset in its message, message length, episode."""
    c = plan.conn
    conn = plan.ep["conn"][rw["ep"]]
    port = c["sport"][conn]
    data = (rw["ml"] > 0) & (rw["plen"] > 0)
    kind = np.where(np.isin(port, TLS_PORTS), PK_TLS,
                    np.where(np.isin(port, HTTP_PORTS), np.where(rw["dir"] == 0, PK_HTTP_REQ, PK_HTTP_RESP), PK_NONE))
    return {"kind": np.where(data, kind, PK_NONE).astype(np.int8), "moff": rw["seq"] - rw["m0"],
            "mlen": rw["ml"], "mid": rw["ep"], "plen": rw["plen"].astype(np.int64)}


def no_payload(m):
    z = np.zeros(m, np.int64)
    return {"kind": np.zeros(m, np.int8), "moff": z, "mlen": z, "mid": z, "plen": z}


# ----------------------------------------------------------------------------- file output
@njit(cache=True, nogil=True)
def scatter(buf, offs, pre, hdr, hdr_len, rec_len, trailer):
    """Copy each record's prefix and header bytes into the file buffer (payload stays 0)."""
    p = pre.shape[1]
    for i in range(len(offs)):
        o = offs[i]
        buf[o:o + p] = pre[i]
        h = hdr_len[i]
        buf[o + p:o + p + h] = hdr[i, :h]
        if trailer:
            buf[o + rec_len[i] - 4:o + rec_len[i]] = pre[i, 4:8]


class Writer:
    def __init__(self, path, fmt, nano, snaplen):
        self.fmt, self.nano, self.snaplen = fmt, nano, snaplen
        self.f = open(path, "wb")
        self.buf = np.zeros(0, np.uint8)
        if fmt == "pcap":
            magic = 0xA1B23C4D if nano else 0xA1B2C3D4
            self.f.write(struct.pack("<IHHiIII", magic, 2, 4, 0, 0, snaplen, 1))
        else:
            shb = struct.pack("<IIIHHqI", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1, 28)
            opts = struct.pack("<HHB3x", 9, 1, 9 if nano else 6) + struct.pack("<HH", 0, 0)
            idb_len = 20 + len(opts)
            idb = struct.pack("<IIHHI", 1, idb_len, 1, 0, snaplen) + opts + struct.pack("<I", idb_len)
            self.f.write(shb + idb)

    def write(self, ts_ns, frame, hdr_mat, hdr_len, pay=None):
        """pay: payload_spec columns per record (None: payloads stay zero)."""
        if len(frame) == 0:
            return 0
        caplen = np.minimum(frame, self.snaplen)
        full_hdr = hdr_len
        hdr_len = np.minimum(hdr_len, caplen)
        unit = 1 if self.nano else 1000
        ticks = ts_ns // unit
        if self.fmt == "pcap":
            pre = np.empty((len(frame), 4), "<u4")
            pre[:, 0] = ticks // (10**9 // unit)
            pre[:, 1] = ticks % (10**9 // unit)
            pre[:, 2], pre[:, 3] = caplen, frame
            rec_len = 16 + caplen
        else:
            rec_len = 32 + (caplen + 3) // 4 * 4
            pre = np.empty((len(frame), 7), "<u4")
            pre[:, 0], pre[:, 1], pre[:, 2] = 6, rec_len, 0
            pre[:, 3], pre[:, 4] = ticks >> 32, ticks & 0xFFFFFFFF
            pre[:, 5], pre[:, 6] = caplen, frame
        offs = np.cumsum(rec_len) - rec_len
        size = int(rec_len.sum())
        if len(self.buf) < size:  # reused: filling beats faulting in fresh zero pages
            self.buf = np.zeros(int(size * 1.2), np.uint8)
        buf = self.buf[:size]
        buf.fill(0)
        scatter(buf, offs, pre.view(np.uint8).reshape(len(frame), -1), hdr_mat,
                hdr_len.astype(np.int64), rec_len.astype(np.int64), self.fmt == "pcapng")
        if pay is not None and (pay["kind"] != PK_NONE).any():
            at = offs + pre.shape[1] * 4 + full_hdr  # payload start in the file buffer
            cap = np.clip(caplen - full_hdr, 0, pay["plen"])
            csum_at = np.where(caplen >= 52, offs + pre.shape[1] * 4 + 50, -1)
            fill_payloads(buf, at.astype(np.int64), cap.astype(np.int64), csum_at.astype(np.int64),
                          pay["kind"], pay["moff"], pay["mlen"], pay["mid"], pay["plen"], *PAYLOAD_TABLES)
        self.f.write(memoryview(buf))
        return len(buf)

    def close(self):
        self.f.close()


# ----------------------------------------------------------------------------- driver
def time_windows(plan, n_packets, batch):
    """Window edges (seconds) holding about `batch` packets each, up to where the planned
    packets reach n_packets (the capture is cut there)."""
    ep = plan.ep
    start = np.maximum(ep["start"], 0.0)
    order = np.argsort(start)
    cum = np.cumsum(np.where(ep["end"] >= 0, ep["npk"], 0)[order])
    starts = start[order]
    targets = np.arange(batch, cum[-1] + batch, batch)
    edges = starts[np.minimum(np.searchsorted(cum, targets), len(starts) - 1)]
    end = ep["end"].max() + 1
    edges = np.unique(np.concatenate([[0.0], edges[edges > 0], [end]]))
    t_cut = starts[min(np.searchsorted(cum, n_packets * 0.985), len(starts) - 1)]
    return edges, t_cut


def generate(args):
    rng = np.random.default_rng(args.seed)
    n = args.packets
    span = args.duration or max(600.0, n / 1000)
    prof = PROFILES[args.profile]
    app = (args.payload or prof.payload) == "app"
    plan = build_plan(rng, n, span, prof, app, args.connections)
    edges, t_cut = time_windows(plan, n, args.batch)
    noise = plan_noise(rng, max(1, int(n * 0.015 / 2)), t_cut, plan.hosts)
    hosts_n, n_conn = plan.hosts["n"], len(plan.conn["close"])
    c = plan.conn
    # before its first captured packet, a side last saw its peer's clock near the open
    opened = np.stack([c["tsoff_c"], c["tsoff_s"]], 1) + (np.maximum(c["t0"], -1e6) * 1000).astype(np.int64)[:, None]
    state = {"last_ts": opened & 0xFFFFFFFF,
             "id_base": rng.integers(0, 1 << 16, hosts_n + 2 * n_conn),
             "id_count": np.zeros(hosts_n + 2 * n_conn, np.int64)}
    stats = Stats(n_conn)
    writer = Writer(args.output, args.format, args.nanosecond, args.snaplen)
    written = nbytes = 0
    tag_out = [] if args.dump_tags else None
    ep = plan.ep
    for a, b in zip(edges[:-1], edges[1:]):
        if written >= n:
            break
        eps = np.nonzero((ep["start"] < b) & (ep["end"] >= a))[0]
        rw = emit_all(plan, eps)
        keep = (rw["t"] >= a) & (rw["t"] < b)
        rw = {k: v[keep] for k, v in rw.items()}
        order = np.lexsort((rw["sub"], rw["ep"], rw["t"]))
        rw = {k: v[order] for k, v in rw.items()}
        nsel = (noise["t"] >= a) & (noise["t"] < b)
        nz = {k: v[nsel] for k, v in noise.items()}
        # merge the two time-sorted streams, then cut at the packet budget
        ts = np.concatenate([rw["t"], nz["t"]])
        merged = np.argsort(ts, kind="stable")[: n - written]
        n_tcp = len(rw["t"])
        is_tcp = merged < n_tcp
        rw = {k: v[np.sort(merged[is_tcp])] for k, v in rw.items()}
        nz = {k: v[np.sort(merged[~is_tcp] - n_tcp)] for k, v in nz.items()}
        mat_t, frame_t, hdr_t = encode_tcp(plan, rw, state)
        mat_n, frame_n, hdr_n = encode_noise(plan, nz)
        mat = np.concatenate([mat_t, mat_n])
        frame = np.concatenate([frame_t, frame_n])
        hdr = np.concatenate([hdr_t, hdr_n])
        t_all = np.concatenate([rw["t"], nz["t"]])
        final = np.argsort(t_all, kind="stable")
        ts_ns = EPOCH * 10**9 + np.round(t_all[final] * 1e9).astype(np.int64)
        pay = None
        if app:
            pt, pn = payload_spec(plan, rw), no_payload(len(nz["t"]))
            pay = {k: np.concatenate([pt[k], pn[k]])[final] for k in pt}
        nbytes += writer.write(ts_ns, frame[final], mat[final], hdr[final], pay)
        if tag_out is not None:  # per-frame ground truth, in file order
            tags = np.concatenate([rw["tag"], np.full(len(nz["t"]), 99, np.int8)])[final]
            tag_out.append(tags)
        written += len(final)
        stats.add(plan, rw, nz)
        del mat, mat_t, mat_n
    writer.close()
    if tag_out is not None:
        np.save(args.dump_tags, np.concatenate(tag_out))
    return plan, stats, written, nbytes


class Stats:
    def __init__(self, n_conn):
        self.seen = np.zeros(n_conn, bool)
        self.tags = np.zeros(16, np.int64)
        self.ka_bytes = np.zeros(2, np.int64)
        self.noise = np.zeros(6, np.int64)
        self.rst_conns = np.zeros(n_conn, bool)
        self.ep_seen = None
        self.t_last = 0.0

    def add(self, plan, rw, nz):
        conn = plan.ep["conn"][rw["ep"]]
        self.seen[conn] = True
        self.tags += np.bincount(rw["tag"], minlength=16)
        ka = rw["tag"] == T_KA
        self.ka_bytes += np.bincount(rw["plen"][ka], minlength=2)[:2]
        self.noise += np.bincount(nz["kind"], minlength=6)
        self.rst_conns[conn[rw["tag"] == T_RST]] = True
        if self.ep_seen is None:
            self.ep_seen = np.zeros(len(plan.ep["type"]), bool)
        self.ep_seen[rw["ep"]] = True
        if len(rw["t"]):
            self.t_last = max(self.t_last, float(rw["t"][-1]))

    def report(self, plan, written, nbytes, secs):
        c, s, tg = plan.conn, self.seen, self.tags
        lines = [
            f"packets        {written:,} ({nbytes / 1e6:,.1f} MB) in {secs:.1f} s "
            f"({written / max(secs, 1e-9) / 1e6:.2f} M packets/s)",
            f"connections    {s.sum():,} (of {len(s):,} planned): {(s & ~c['midstream']).sum():,} with handshake, "
            f"{(s & c['midstream']).sum():,} mid-stream, {(s & (c['follows'] >= 0)).sum():,} reusing a closed 4-tuple",
            f"keepalives     {tg[T_KA]:,} probes ({self.ka_bytes[0]:,} 0-byte, {self.ka_bytes[1]:,} 1-byte), "
            f"{tg[T_KA_ACK]:,} answered",
            f"retransmits    {tg[T_RETX_SYN] + tg[T_RETX_FAST] + tg[T_RETX_RTO]:,} "
            f"(SYN {tg[T_RETX_SYN]:,}, fast {tg[T_RETX_FAST]:,}, RTO backoff {tg[T_RETX_RTO]:,}); "
            f"dup ACKs {tg[T_DUPACK]:,}",
            f"zero window    {tg[T_ZW]:,} win=0 ACKs, {tg[T_ZWP]:,} probes, {tg[T_WINUPD]:,} window updates",
            f"closes         {tg[T_RST]:,} RSTs in {self.rst_conns.sum():,} connections, {tg[T_FIN]:,} FINs",
            f"noise          {self.noise[:2].sum():,} DNS, {self.noise[2:4].sum():,} ICMP, {self.noise[4:].sum():,} ARP",
        ]
        ep, seen = plan.ep, self.ep_seen if self.ep_seen is not None else np.zeros(0, bool)
        if len(seen):
            kinds = np.bincount(ep["type"][seen], minlength=OPEN + 1)
            idle = (seen & (ep["type"] == EX) & (ep["g"] >= 30) & (ep["start"] >= 0)).sum()
            lines.insert(2, f"episodes       {idle:,} idle periods >= 30 s, {kinds[KA]:,} keepalive periods, "
                            f"{kinds[FAST_UP] + kinds[FAST_DOWN]:,} fast-retransmit losses, {kinds[RTO]:,} RTO chains, "
                            f"{kinds[ZW]:,} zero-window stalls")
            lines.append(f"stall endings  {kinds[EVICT]:,} middlebox evictions (idle, then RST), {kinds[KA_DEAD]:,} dead peers "
                         f"(unanswered keepalives, RST), {kinds[RTO_DEAD]:,} black holes (RTO to give-up)")
            lines.append(f"time span      {self.t_last:,.0f} s")
        return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--packets", type=parse_count, default=parse_count("1M"), help="e.g. 100k, 5M, 20M")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--profile", choices=sorted(PROFILES), default="mixed",
                    help="traffic shape: mixed (API-style, ~380 B/packet, app payloads) or "
                         "bulk (big downloads, ~890 B/packet, zero payloads)")
    ap.add_argument("--payload", choices=("zeros", "app"),
                    help="payload bytes: zeros, or TLS records / HTTP messages on their ports "
                         "(default: the profile's, app for mixed, zeros for bulk)")
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--snaplen", type=int, default=262144, help="bytes kept per packet (e.g. 128)")
    ap.add_argument("--format", choices=("pcap", "pcapng"), default="pcap")
    ap.add_argument("--nanosecond", action="store_true", help="nanosecond timestamps")
    ap.add_argument("--connections", type=parse_count, default=0,
                    help="fix the number of connections (e.g. 20k); their length scales instead")
    ap.add_argument("--duration", type=float, default=0, help="span of connection starts, s")
    ap.add_argument("--batch", type=parse_count, default=parse_count("1M"), help="packets per window")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--dump-tags", metavar="NPY", help="save each frame's generator tag (validation)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    plan, stats, written, nbytes = generate(args)
    if not args.quiet:
        payload = args.payload or PROFILES[args.profile].payload
        print(f"profile        {args.profile}, payload {payload}, {nbytes / max(written, 1):.0f} bytes/packet "
              "(with the record header)")
        print(stats.report(plan, written, nbytes, time.perf_counter() - t0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
