"""What each OS's TCP puts on the wire, and the small records a conversation keeps."""
from __future__ import annotations

import bisect
import random
from dataclasses import dataclass, field



NS = 1_000_000_000
SEQ_MOD = 1 << 32
TS_OPTION_LEN = 12  # NOP NOP + 10-byte timestamp option: what a segment loses to it



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
