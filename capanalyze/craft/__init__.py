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

from .conversation import Conversation
from .pcapfile import merge, records_of, write_pcap
from .stacks import STACKS, Stack, linux_backoff

__all__ = [
    "Stack", "STACKS", "Conversation", "linux_backoff", "write_pcap", "records_of", "merge",
]
