"""The mechanics under a Conversation: sequence/ACK state per side, timestamps, IP
IDs, options, delayed ACKs, and turning one segment into a scapy packet."""
from __future__ import annotations

import random

from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw

from .stacks import NS, SEQ_MOD, STACKS, _mac, _ns, _Side


class Wire:
    """Per-connection state and packet emission; Conversation adds the scenario verbs."""

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
