"""Deterministic, realistic TCP conversations for tests and sample captures.

A `Conversation` is one TCP connection seen from one capture point (the *vantage*,
the client's host by default). You script what each side does and when; the builder
fills in everything a real stack would: sequence and acknowledgement numbers (SYN and
FIN consume one), TCP timestamps (1 kHz clock per host, TSecr echoing the last
segment received), IP IDs counting per host, TTL per side, MSS / SACK-permitted /
window-scale / timestamp options on SYN and SYN-ACK, scaled windows, delayed ACKs
(every second segment at once, a lone segment after 40 ms, piggybacked when the
receiver sends first), and the peer's replies arriving one RTT later.

    conv = Conversation(client=("192.0.2.10", 50123), server=("198.51.100.20", 80),
                        rtt=0.020)
    conv.handshake(at=0.0)
    conv.send("c", b"GET / HTTP/1.1\\r\\n\\r\\n", at=0.1)   # server ACK 40 ms later
    conv.send("s", b"HTTP/1.1 200 OK\\r\\n...", at=0.3)      # client delayed-ACKs it
    conv.keepalive("c", at=60.3)                             # probe + the server's ACK
    conv.close("c", at=90.0)                                 # FIN, FIN-ACK, ACK
    write_pcap("x.pcap", conv)

Times (`at=`) are seconds after `t0` *as seen at the capture point*, and every method
returns the packets it added (scapy packets, `.time` set). A reply from the far side
appears `rtt` after what triggered it, a reply from the near side `proc` after it.
Call the methods in time order: sequence state follows call order.

Everything is deterministic: ISNs, IP IDs and timestamp clocks derive from `seed` and
the 4-tuple, never from a clock or an unseeded random generator.

Recipes (each a few lines after `conv.handshake(0.0)`):
- keepalive exchange: `conv.keepalive("c", at=7200)`; Windows style:
  `Conversation(..., client_os="windows")` (1 garbage byte, TTL 128, no timestamps)
  or `keepalive(..., garbage_byte=True)`; the Linux timer: `conv.keepalive_timer("c",
  idle=60, until=900)`.
- Linux zero-window probe: `conv.zero_window("c", at=1)`, `conv.zero_window_probe("s",
  at=1.2)`, `conv.window_update("c", at=2)`.
- FIN-ACK: `conv.close("c", at=5)`; half close: `conv.fin("s", at=5)`.
- a packet captured twice: `conv.duplicate(delay=0.0003)` (the latest frame).
- sequence wrap-around: `Conversation(..., isn_client=2**32 - 10)`.
- port reuse: a second `Conversation` on the same 4-tuple with a later `t0` and another
  `seed` (new ISN), both passed to `write_pcap`.
- mid-stream start: `conv.handshake(0.0, captured=False)`.
- data lost beyond the capture point: `send(..., delivered=False)`; before it:
  `captured=False`. Retransmission backoff: `retransmit_schedule("c", data, first_at)`.
- a middlebox's RST: `conv.rst("s", at=..., ttl=254)` (forged: no options, IP ID 0).
- server-side vantage: `Conversation(..., vantage="s")`; `rtt` stays the round trip.
"""
from __future__ import annotations

import bisect
import random
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw

NS = 1_000_000_000
SEQ_MOD = 1 << 32
TS_OPTION_LEN = 12  # NOP NOP + 10-byte timestamp option: what a segment loses to it

__all__ = [
    "Stack", "STACKS", "Conversation", "linux_backoff", "write_pcap", "records_of", "merge",
]


@dataclass(frozen=True)
class Stack:
    """What an operating system's TCP puts on the wire by default."""
    name: str
    ttl: int                 # initial TTL / hop limit
    wscale: int              # window-scale shift offered on SYN
    timestamps: bool         # offers the TCP timestamp option
    syn_window: int          # raw window on SYN / SYN-ACK (never scaled)
    window: int              # receive window in bytes once established
    keepalive_byte: bool     # keepalive probe carries 1 garbage byte (Windows, old BSD)
    synack_ip_id_zero: bool  # Linux sends SYN-ACKs with IP ID 0 (DF set)
    delack: float            # delayed-ACK timer, s (Linux 40 ms minimum, Windows 200 ms)


STACKS: dict[str, Stack] = {
    "linux": Stack("linux", 64, 7, True, 64240, 64256, False, True, 0.040),
    "windows": Stack("windows", 128, 8, False, 64240, 131328, True, False, 0.200),
    "macos": Stack("macos", 64, 6, True, 65535, 131072, False, False, 0.100),
}


def linux_backoff(rto: float = 0.2, retries: int = 15, rto_max: float = 120.0,
                  rto_min: float = 0.2) -> tuple[list[float], float]:
    """Linux retransmission times after the original send, and the give-up time.

    The retransmission timer starts at `rto` and doubles, capped at `rto_max`. Linux
    gives up (ETIMEDOUT, no RST) at the first expiry where the time since the
    original send reaches the budget of `retries` (tcp_retries2) doublings from
    `rto_min` (tcp_retransmits_timed_out). `linux_backoff()` gives 0.2, 0.6, ...
    804.6 and 924.6; `linux_backoff(1.0)` 13 retransmissions and 967.
    """
    us = lambda x: round(x * 1_000_000)  # integer microseconds: exact sums
    budget = sum(min(us(rto_min) << i, us(rto_max)) for i in range(retries + 1))
    t, interval, out = 0, us(rto), []
    while True:
        t += interval
        if t >= budget:
            return out, t / 1_000_000
        out.append(t / 1_000_000)
        interval = min(interval * 2, us(rto_max))


def _ns(seconds: float) -> int:
    return round(seconds * NS)


def _mac(ip: str) -> str:
    """A stable locally administered MAC per address, so frames look like a LAN."""
    digest = random.Random("mac:" + ip).getrandbits(32)
    return "02:00:" + ":".join(f"{(digest >> s) & 0xff:02x}" for s in (24, 16, 8, 0))


@dataclass
class _Delivery:
    """Index of the packets one side has received, by capture time."""
    times: list[int] = field(default_factory=list)
    tsvals: list[int] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)      # peer's seq end (relative)
    acks: list[int] = field(default_factory=list)      # peer's ack of our seq (relative)
    max_end: list[int] = field(default_factory=list)   # prefix maxima of ends
    max_ack: list[int] = field(default_factory=list)

    def add(self, t: int, tsval: int, end: int, ack: int) -> None:
        i = bisect.bisect_right(self.times, t)
        for col, v in ((self.times, t), (self.tsvals, tsval), (self.ends, end), (self.acks, ack)):
            col.insert(i, v)
        if i == len(self.times) - 1:
            self.max_end.append(max(end, self.max_end[-1] if self.max_end else 0))
            self.max_ack.append(max(ack, self.max_ack[-1] if self.max_ack else 0))
        else:  # out-of-order insert: rare, rebuild the prefix maxima
            self.max_end, self.max_ack = _prefix_max(self.ends), _prefix_max(self.acks)

    def upto(self, t: int) -> int:
        """How many received packets are visible at time t."""
        return bisect.bisect_right(self.times, t)


def _prefix_max(values: list[int]) -> list[int]:
    out, m = [], 0
    for v in values:
        m = max(m, v)
        out.append(m)
    return out


@dataclass
class _Side:
    name: str
    ip: str
    port: int
    stack: Stack
    ttl: int
    mss: int
    isn: int
    ts_base: int
    ip_id: int
    window: int
    local: bool
    snd_nxt: int = 0                 # relative: SYN is 0, first data byte 1
    rcvd: _Delivery = field(default_factory=_Delivery)
    unacked_segments: int = 0        # received data segments not yet ACKed
    pending_ack: tuple[int, int] | None = None  # (due time ns, ack value) of a delayed ACK
    cwnd: int = 10                   # segments; IW10 then slow start


class Conversation:
    """One TCP connection, scripted side by side; see the module docstring.

    Sides are named "c" (client) and "s" (server). `vantage` is the side whose host
    runs the capture. `client_ttl` / `server_ttl` are the TTLs *as captured*: by
    default the stack's initial TTL for the local side and that minus `hops` for the
    remote one. `mss` applies to both sides unless `server_mss` is given.
    """

    def __init__(self, client: tuple[str, int], server: tuple[str, int], *,
                 t0: float = 1_700_000_000.0, rtt: float = 0.020,
                 vantage: str = "c", client_os: str = "linux", server_os: str = "linux",
                 hops: int = 12, client_ttl: int | None = None, server_ttl: int | None = None,
                 isn_client: int | None = None, isn_server: int | None = None,
                 mss: int = 1460, server_mss: int | None = None,
                 wscale: bool = True, timestamps: bool = True, sack: bool = True,
                 delack: float | None = None, proc: float = 30e-6, seg_gap: float = 12e-6,
                 seed: int = 0):
        if vantage not in ("c", "s"):
            raise ValueError("vantage must be 'c' or 's'")
        self.t0_ns = _ns(t0)
        self.rtt_ns = _ns(rtt)
        self.delack_override = delack
        self.proc_ns, self.gap_ns = _ns(proc), _ns(seg_gap)
        self.ipv6 = ":" in client[0]
        self.sack = sack
        rng = random.Random(f"{seed}|{client}|{server}")
        stacks = STACKS[client_os], STACKS[server_os]
        ttls = client_ttl, server_ttl
        isns = isn_client, isn_server
        msss = mss, server_mss or mss
        sides = []
        for i, (name, (ip, port)) in enumerate((("c", client), ("s", server))):
            local = name == vantage
            st = stacks[i]
            ttl = ttls[i] if ttls[i] is not None else st.ttl - (0 if local else hops)
            isn = isns[i] if isns[i] is not None else rng.getrandbits(32)
            sides.append(_Side(name, ip, port, st, ttl, msss[i], isn % SEQ_MOD,
                               rng.getrandbits(32), rng.getrandbits(16), st.window, local))
        self.c, self.s = sides
        self.wscale_ok = wscale
        self.ts_ok = timestamps and self.c.stack.timestamps and self.s.stack.timestamps
        self._records: list[tuple[int, Packet]] = []
        self.give_up_at: float | None = None  # set by retransmit_schedule

    # ----- sides and clocks -------------------------------------------------------

    def side(self, name: str) -> _Side:
        if name not in ("c", "s"):
            raise ValueError(f"side must be 'c' or 's', not {name!r}")
        return self.c if name == "c" else self.s

    def peer(self, name: str) -> _Side:
        return self.s if name == "c" else self.c

    def _lag(self, side: _Side) -> int:
        """Capture-time lag before a far-side host has seen what the capture saw."""
        return 0 if side.local else self.rtt_ns

    def _reply(self, side: _Side) -> int:
        """Delay between a packet in the capture and `side`'s immediate answer to it."""
        return self.proc_ns if side.local else self.rtt_ns

    def reply_delay(self, name: str) -> float:
        """Seconds between a packet in the capture and `name`'s immediate answer to it:
        `rtt` when `name` is the far side, `proc` when it is the capturing host."""
        return self._reply(self.side(name)) / NS

    def _tsval(self, side: _Side, t: int) -> int:
        return (side.ts_base + t // 1_000_000) % SEQ_MOD  # 1 kHz clock

    def _shift(self, side: _Side) -> int:
        return side.stack.wscale if self.wscale_ok else 0

    def rcv_nxt(self, name: str, at: float) -> int:
        """Relative ack value `name` would send at `at` (what it has received by then)."""
        side = self.side(name)
        self._settle_all(_ns(at))
        n = side.rcvd.upto(_ns(at) - self._lag(side))
        return side.rcvd.max_end[n - 1] if n else 0

    def snd_una(self, name: str, at: float) -> int:
        """Relative oldest unacknowledged sequence of `name` as it knows it at `at`."""
        side = self.side(name)
        self._settle_all(_ns(at))
        n = side.rcvd.upto(_ns(at) - self._lag(side))
        return side.rcvd.max_ack[n - 1] if n else 0

    def seq(self, name: str, rel: int) -> int:
        """Absolute (wire) sequence number of relative offset `rel` of side `name`."""
        return (self.side(name).isn + rel) % SEQ_MOD

    @property
    def now(self) -> float:
        """Time (s after t0) of the latest packet so far."""
        return max((t for t, _ in self._records), default=0) / NS

    # ----- the one place packets are made ------------------------------------------

    def _emit(self, side: _Side, t: int, flags: str, seq: int, payload: bytes = b"", *,
              ack: int | None = None, tsecr: int | None = None, options: list | None = None,
              window: int | None = None, ttl: int | None = None, ip_id: int | None = None,
              delivered: bool = True, captured: bool = True, forged: bool = False) -> Packet:
        self._settle_all(t)
        peer = self.peer(side.name)
        visible = side.rcvd.upto(t - self._lag(side))
        if "A" in flags and ack is None:
            ack = side.rcvd.max_end[visible - 1] if visible else 0
        if tsecr is None:
            tsecr = side.rcvd.tsvals[visible - 1] if visible and flags != "S" else 0
        tsval = self._tsval(side, t)
        if options is None:
            options = [] if forged else self._options(side, flags, tsval, tsecr)
        if window is None:
            window = self._window_field(side, flags)
        tcp = TCP(sport=side.port, dport=peer.port, flags=flags, seq=(side.isn + seq) % SEQ_MOD,
                  ack=(peer.isn + ack) % SEQ_MOD if "A" in flags else 0,
                  window=window, options=options)
        ip = self._ip_layer(side, flags, ttl, ip_id, forged)
        pkt = Ether(src=_mac(side.ip), dst=_mac(peer.ip)) / ip / tcp
        if payload:
            pkt = pkt / Raw(payload)
        pkt = pkt.__class__(bytes(pkt))  # freeze: checksums and lengths computed once
        pkt.time = (self.t0_ns + t) / NS
        if "A" in flags and not forged:
            self._note_ack_sent(side, ack)
        if delivered:
            end = seq + len(payload) + ("S" in flags) + ("F" in flags)
            if forged or not self.ts_ok:  # nothing new for the receiver to echo
                tsval = peer.rcvd.tsvals[-1] if peer.rcvd.tsvals else 0
            peer.rcvd.add(t, tsval, end, ack if "A" in flags else 0)
        if captured:
            self._records.append((t, pkt))
        return pkt

    def _ip_layer(self, side: _Side, flags: str, ttl, ip_id, forged: bool):
        peer = self.peer(side.name)
        ttl = side.ttl if ttl is None else ttl
        if self.ipv6:
            return IPv6(src=side.ip, dst=peer.ip, hlim=ttl)
        if ip_id is None:
            if forged:
                ip_id = 0
            elif flags == "SA" and side.stack.synack_ip_id_zero:
                ip_id = 0
            else:
                ip_id = side.ip_id
                side.ip_id = (side.ip_id + 1) & 0xFFFF
        return IP(src=side.ip, dst=peer.ip, ttl=ttl, id=ip_id, flags="DF")

    def _options(self, side: _Side, flags: str, tsval: int, tsecr: int) -> list:
        ts = ("Timestamp", (tsval, tsecr))
        if "S" not in flags:
            return [("NOP", None), ("NOP", None), ts] if self.ts_ok else []
        st = side.stack
        ws = [("WScale", st.wscale)] if self.wscale_ok else []
        tso = [ts] if st.timestamps and (flags == "S" or self.ts_ok) else []
        sack = [("SAckOK", b"")] if self.sack else []
        if st.name == "windows":
            return [("MSS", side.mss), ("NOP", None)] + ws + [("NOP", None), ("NOP", None)] + sack
        if st.name == "macos":
            return ([("MSS", side.mss), ("NOP", None)] + ws + [("NOP", None), ("NOP", None)]
                    + tso + sack + [("EOL", None)])
        out = [("MSS", side.mss)] + sack + tso
        return out + ([("NOP", None)] + ws if ws else [])

    def _window_field(self, side: _Side, flags: str) -> int:
        if "S" in flags:
            return min(side.stack.syn_window, 65535)
        return min(side.window >> self._shift(side), 65535)

    # ----- delayed ACK bookkeeping ------------------------------------------------

    def _note_ack_sent(self, side: _Side, ack: int) -> None:
        side.unacked_segments = 0
        if side.pending_ack and ack >= side.pending_ack[1]:
            side.pending_ack = None  # piggybacked

    def _settle_all(self, t: int) -> None:
        """Delayed ACKs of either side that fell due by time t go on the wire first,
        so whatever is computed at t sees them."""
        for side in (self.c, self.s):
            self._settle_delayed_ack(side, t)

    def _settle_delayed_ack(self, side: _Side, t: int) -> None:
        """Send `side`'s delayed ACK first if it fell due before time t."""
        if side.pending_ack and side.pending_ack[0] <= t:
            due, ack = side.pending_ack
            side.pending_ack = None
            self._emit(side, due, "A", side.snd_nxt, ack=ack)

    def _receive_segment(self, rcv: _Side, seg_t: int, end: int, tsval: int,
                         policy: str | None, last: bool) -> tuple[Packet, int, int] | None:
        """The receiver's ACK policy for one arriving data segment (Linux-like).
        Returns (ACK, its time, segments it acknowledges) when one is sent at once."""
        if policy is None:
            return None
        reply_t = seg_t + self._reply(rcv)
        self._settle_delayed_ack(rcv, reply_t)
        rcv.unacked_segments += 1
        if policy == "now" or rcv.unacked_segments >= 2:
            count = rcv.unacked_segments
            pkt = self._emit(rcv, reply_t, "A", rcv.snd_nxt, ack=end,
                             tsecr=tsval if self.ts_ok else 0)
            return pkt, reply_t, count
        if last:
            delack = rcv.stack.delack if self.delack_override is None else self.delack_override
            rcv.pending_ack = (reply_t + _ns(delack), end)
        return None

    def flush(self) -> list[Packet]:
        """Emit delayed ACKs still pending (done for you when reading packets)."""
        out = []
        for side in (self.c, self.s):
            if side.pending_ack:
                due, ack = side.pending_ack
                side.pending_ack = None
                out.append(self._emit(side, due, "A", side.snd_nxt, ack=ack))
        return out

    # ----- the scripting API -------------------------------------------------------

    def handshake(self, at: float = 0.0, *, captured: bool = True) -> list[Packet]:
        """SYN, SYN-ACK, ACK. `captured=False` sets the state up without packets
        (a capture that starts mid-stream)."""
        c, s = self.c, self.s
        t = _ns(at)
        syn = self._emit(c, t, "S", 0, captured=captured)
        t += self._reply(s)
        synack = self._emit(s, t, "SA", 0, captured=captured)
        t += self._reply(c)
        c.snd_nxt = s.snd_nxt = 1
        ack = self._emit(c, t, "A", 1, captured=captured)
        return [syn, synack, ack] if captured else []

    def send(self, name: str, data: bytes, at: float, *, ack: str | None = "auto",
             delivered: bool = True, captured: bool = True, push: bool = True) -> list[Packet]:
        """Data from `name`, cut into MSS-sized segments, with the peer's ACKs.

        ack="auto": the peer ACKs every second segment at once and a lone last
        segment after the delayed-ACK time (dropped if the peer sends something
        first, which then carries the ACK); "now": every segment at once; None: no
        ACK is made (ACK it yourself). delivered=False: lost after the capture point
        (the peer never sees it); captured=False: not in the capture but delivered.
        Larger sends follow IW10 and slow start, clocked by the peer's ACKs.
        """
        if not data:
            raise ValueError("send() needs at least one byte; use ack() for a pure ACK")
        side, peer = self.side(name), self.peer(name)
        seg_size = self._segment_size(side)
        chunks = [data[i:i + seg_size] for i in range(0, len(data), seg_size)]
        t, out, in_flight, acks = _ns(at), [], 0, []
        for i, chunk in enumerate(chunks):
            # congestion window full: wait for the next ACK to reach the sender
            while in_flight >= side.cwnd and acks:
                ack_t, count = acks.pop(0)
                t = max(t, ack_t + self._reply(side))
                in_flight -= count
                side.cwnd += count  # slow start
            last = i == len(chunks) - 1
            flags = "PA" if push and last else "A"
            out.append(self._emit(side, t, flags, side.snd_nxt, chunk,
                                  delivered=delivered, captured=captured))
            side.snd_nxt += len(chunk)
            in_flight += 1
            if delivered:
                got = self._receive_segment(peer, t, side.snd_nxt, self._tsval(side, t),
                                            ack, last)
                if got is not None:
                    out.append(got[0])
                    acks.append(got[1:])
            t += self.gap_ns
        return out

    def _segment_size(self, side: _Side) -> int:
        peer_mss = self.peer(side.name).mss
        return peer_mss - (TS_OPTION_LEN if self.ts_ok else 0)

    def ack(self, name: str, at: float, *, window: int | None = None) -> list[Packet]:
        """A pure ACK from `name` of everything it has received by `at`."""
        side = self.side(name)
        if window is not None:
            side.window = window
        return [self._emit(side, _ns(at), "A", side.snd_nxt)]

    keepalive_ack = ack

    def keepalive(self, name: str, at: float, *, garbage_byte: bool | None = None,
                  answer: bool = True) -> list[Packet]:
        """A keepalive probe: seq = snd_nxt - 1, 0 bytes (Linux, macOS) or 1 garbage
        byte (`garbage_byte=True`, the Windows default), and the peer's ACK unless
        answer=False."""
        side, peer = self.side(name), self.peer(name)
        if garbage_byte is None:
            garbage_byte = side.stack.keepalive_byte
        t = _ns(at)
        probe = self._emit(side, t, "A", side.snd_nxt - 1, b"\x00" if garbage_byte else b"",
                           delivered=answer)
        if not answer:
            return [probe]
        return [probe, self._emit(peer, t + self._reply(peer), "A", peer.snd_nxt)]

    def keepalive_timer(self, name: str, idle: float, until: float, *, intvl: float = 75.0,
                        cnt: int = 9, answered: bool = True) -> list[Packet]:
        """Linux's keepalive timer for `name` from its last received packet to `until`.

        The first probe goes `idle` s after the last packet received; an answered
        probe restarts the idle count (so answered probes come every idle + RTT, and
        TCP_KEEPINTVL only spaces *unanswered* ones); after `cnt` unanswered probes
        Linux resets the connection, which is emitted too.
        """
        side = self.side(name)
        end = _ns(until)
        self._settle_all(end)
        last_rx = side.rcvd.times[-1] + self._lag(side) if side.rcvd.times else 0
        t, out = last_rx + _ns(idle), []
        peer = self.peer(name)
        while t < end:
            out += self.keepalive(name, t / NS, answer=answered)
            if answered:
                t = t + self._reply(peer) + self._lag(side) + _ns(idle)
                continue
            if len(out) >= cnt:
                out += self.rst(name, (t + _ns(intvl)) / NS)
                break
            t += _ns(intvl)
        return out

    def retransmit_schedule(self, name: str, data: bytes, first_at: float, *,
                            rto: float = 0.2, retries: int = 15, rto_max: float = 120.0,
                            delivered_on: int | None = None) -> list[Packet]:
        """`data` sent at `first_at` and retransmitted on the Linux backoff schedule
        (see `linux_backoff`; `retries` is tcp_retries2), never ACKed unless `delivered_on` = k (0 = original,
        1 = first retransmission, ...), whose copy reaches the peer and is ACKed at
        once. Without an ACK Linux gives up silently: `self.give_up_at` records when."""
        side, peer = self.side(name), self.peer(name)
        if len(data) > self._segment_size(side):
            raise ValueError("retransmit_schedule sends one segment; data exceeds the MSS")
        offsets, give_up = linux_backoff(rto, retries, rto_max)
        seq, out = side.snd_nxt, []
        for k, off in enumerate([0.0] + offsets):
            t = _ns(first_at + off)
            got = delivered_on == k
            out.append(self._emit(side, t, "PA", seq, data, delivered=got))
            side.snd_nxt = seq + len(data)  # after the first emit: a due delayed ACK precedes it
            if got:
                out.append(self._emit(peer, t + self._reply(peer), "A", peer.snd_nxt))
                self.give_up_at = None
                return out
        self.give_up_at = first_at + give_up
        return out

    def set_window(self, name: str, nbytes: int) -> None:
        """Change `name`'s receive window (bytes) for the packets it sends next."""
        self.side(name).window = nbytes

    def zero_window(self, name: str, at: float) -> list[Packet]:
        """`name`'s receive buffer is full: an ACK advertising window 0."""
        return self.ack(name, at, window=0)

    def window_update(self, name: str, at: float, nbytes: int | None = None) -> list[Packet]:
        """`name` opens its window again (to `nbytes`, default its stack's window)."""
        side = self.side(name)
        return self.ack(name, at, window=side.stack.window if nbytes is None else nbytes)

    def zero_window_probe(self, name: str, at: float, *, answer: bool = True) -> list[Packet]:
        """Linux zero-window probe: 0 bytes at seq = snd_una - 1, and the peer's ACK
        (still window 0) unless answer=False. Same shape as a keepalive."""
        side, peer = self.side(name), self.peer(name)
        t = _ns(at)
        una = self.snd_una(name, at)
        probe = self._emit(side, t, "A", una - 1, delivered=answer)
        if not answer:
            return [probe]
        return [probe, self._emit(peer, t + self._reply(peer), "A", peer.snd_nxt)]

    def fin(self, name: str, at: float, *, ack: str | None = "now") -> list[Packet]:
        """A FIN from `name` (consumes one sequence number) and the peer's ACK of it."""
        side, peer = self.side(name), self.peer(name)
        t = _ns(at)
        pkt = self._emit(side, t, "FA", side.snd_nxt)
        side.snd_nxt += 1
        out = [pkt]
        if ack is not None:
            out.append(self._emit(peer, t + self._reply(peer), "A", peer.snd_nxt))
        return out

    def close(self, name: str, at: float, *, peer_delay: float = 0.0) -> list[Packet]:
        """Orderly close started by `name`: FIN, the peer's FIN-ACK (carrying the ACK
        of the FIN, `peer_delay` s later than an immediate answer), the last ACK."""
        side, peer = self.side(name), self.peer(name)
        out = self.fin(name, at, ack=None)
        t = _ns(at) + self._reply(peer) + _ns(peer_delay)
        out.append(self._emit(peer, t, "FA", peer.snd_nxt))
        peer.snd_nxt += 1
        out.append(self._emit(side, t + self._reply(side), "A", side.snd_nxt))
        return out

    def rst(self, name: str, at: float, *, ack: bool | None = None, seq: int | None = None,
            ttl: int | None = None, ip_id: int | None = None,
            forged: bool | None = None) -> list[Packet]:
        """A RST in `name`'s name.

        A genuine one (the host aborts) is RST+ACK at snd_nxt with the host's TTL, IP
        ID and options. With a `ttl` or `ip_id` differing from the host's, or
        forged=True, it is a middlebox's: no options, IP ID 0 unless given, and by
        default a plain RST whose seq is the ack the peer last sent (RFC 9293's
        answer to a segment it has no connection for). `seq` is relative.
        """
        side, peer = self.side(name), self.peer(name)
        if forged is None:
            forged = ttl is not None or ip_id is not None
        if ack is None:
            ack = not forged
        if seq is None:
            seq = self.rcv_nxt(peer.name, at) if forged else side.snd_nxt
        flags = "RA" if ack else "R"
        return [self._emit(side, _ns(at), flags, seq, window=0, ttl=ttl, ip_id=ip_id,
                           forged=forged)]

    def duplicate(self, index: int = -1, delay: float = 0.0002) -> list[Packet]:
        """Frame `index` (in time order, pending delayed ACKs sent first) captured twice,
        `delay` s apart: identical bytes, as a capture on two interfaces or a
        mirrored port gives."""
        self.flush()
        t, pkt = sorted(self._records, key=lambda r: r[0])[index]
        twin = pkt.copy()
        twin.time = pkt.time + delay
        self._records.append((t + _ns(delay), twin))
        return [twin]

    # ----- results -----------------------------------------------------------------

    def records(self) -> list[tuple[int, bytes]]:
        """(epoch ns, frame bytes) in time order, pending delayed ACKs included."""
        self.flush()
        recs = sorted(self._records, key=lambda r: r[0])
        return [(self.t0_ns + t, bytes(p)) for t, p in recs]

    @property
    def packets(self) -> list[Packet]:
        """The scapy packets in time order (`.time` = epoch seconds)."""
        self.flush()
        return [p for _, p in sorted(self._records, key=lambda r: r[0])]


def records_of(source) -> list[tuple[int, bytes]]:
    """(epoch ns, frame bytes) of a Conversation, scapy packets or such tuples."""
    if isinstance(source, Conversation):
        return source.records()
    out = []
    for item in source:
        if isinstance(item, Packet):
            out.append((round(float(item.time) * 1e6) * 1000, bytes(item)))
        else:
            out.append((int(item[0]), bytes(item[1])))
    return out


def write_pcap(path: str | Path, *sources, linktype: str = "ethernet",
               nanosecond: bool = False, snaplen: int = 262144) -> int:
    """Write Conversations and/or packet lists into one classic pcap, merged by time
    (stable for equal times). linktype "ethernet" (1) or "raw" (101, IP only).
    Returns the number of frames written."""
    if linktype not in ("ethernet", "raw"):
        raise ValueError("linktype must be 'ethernet' or 'raw'")
    recs = [r for src in sources for r in records_of(src)]
    recs.sort(key=lambda r: r[0])
    magic = 0xA1B23C4D if nanosecond else 0xA1B2C3D4
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", magic, 2, 4, 0, 0, snaplen,
                            1 if linktype == "ethernet" else 101))
        for t_ns, frame in recs:
            if linktype == "raw":
                frame = frame[14:]
            sec, frac = divmod(t_ns, NS)
            sub = frac if nanosecond else round(frac / 1000)
            if not nanosecond and sub == 1_000_000:
                sec, sub = sec + 1, 0
            cap = frame[:snaplen]
            f.write(struct.pack("<IIII", sec, sub, len(cap), len(frame)))
            f.write(cap)
    return len(recs)


def merge(*sources: Iterable) -> list[tuple[int, bytes]]:
    """All records of several sources in time order (for writing elsewhere)."""
    return sorted((r for s in sources for r in records_of(s)), key=lambda r: r[0])
