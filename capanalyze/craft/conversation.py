"""Conversation: script a TCP connection in a few calls (handshake, send, keepalive,
retransmissions, zero window, FIN, RST) at exact times."""
from __future__ import annotations


from scapy.packet import Packet

from .stacks import NS, TS_OPTION_LEN, _Side, _ns, linux_backoff
from .wire import Wire


class Conversation(Wire):
    """One TCP connection, scripted side by side; see the module docstring.

    Sides are named "c" (client) and "s" (server). `vantage` is the side whose host
    runs the capture. `client_ttl` / `server_ttl` are the TTLs *as captured*: by
    default the stack's initial TTL for the local side and that minus `hops` for the
    remote one. `mss` applies to both sides unless `server_mss` is given.
    """

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
