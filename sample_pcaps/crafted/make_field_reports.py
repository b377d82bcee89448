"""Rebuild the crafted captures of the four field reports (docs/field-reports.md).

    python sample_pcaps/crafted/make_field_reports.py [OUT_DIR]

Deterministic: the same bytes on every run. Writes the pcaps next to this file
(or into OUT_DIR); see
README.md there for what each one shows and the diagnosis expected from capanalyze.
Times below are seconds after T0 on the capture's clock; `rtt` is the round trip
seen from the capture point.
"""
from __future__ import annotations

import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # run from a checkout without installing

from capanalyze.craft import Conversation, write_pcap  # noqa: E402

T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC


# ----- application payloads -----------------------------------------------------------

def opaque(n: int, seed: str) -> bytes:
    rng = random.Random(seed)
    return bytes(rng.getrandbits(8) for _ in range(n))


def tls_record(n: int, seed: str) -> bytes:
    """One TLS 1.3 application-data record of n encrypted bytes."""
    return b"\x17\x03\x03" + n.to_bytes(2, "big") + opaque(n, seed)


CCS = b"\x14\x03\x03\x00\x01\x01"


def client_hello(sni: str, seed: str) -> bytes:
    """A well-formed TLS 1.3 ClientHello (X25519 key share, SNI), built by hand so the
    bytes do not depend on scapy's TLS layer."""
    def ext(kind: int, body: bytes) -> bytes:
        return kind.to_bytes(2, "big") + len(body).to_bytes(2, "big") + body
    name = sni.encode()
    exts = b"".join([
        ext(0, (len(name) + 3).to_bytes(2, "big") + b"\x00" + len(name).to_bytes(2, "big") + name),
        ext(10, b"\x00\x04\x00\x1d\x00\x17"),                      # groups x25519, p256
        ext(13, b"\x00\x04\x04\x03\x08\x04"),                      # signature algorithms
        ext(43, b"\x04\x03\x04\x03\x03"),                          # versions 1.3, 1.2
        ext(51, b"\x00\x24\x00\x1d\x00\x20" + opaque(32, seed + "ks")),  # key share
    ])
    body = (b"\x03\x03" + opaque(32, seed + "rnd") + b"\x20" + opaque(32, seed + "sid")
            + b"\x00\x06\x13\x01\x13\x02\x13\x03" + b"\x01\x00"
            + len(exts).to_bytes(2, "big") + exts)
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + len(hs).to_bytes(2, "big") + hs


def server_hello(seed: str) -> bytes:
    def ext(kind: int, body: bytes) -> bytes:
        return kind.to_bytes(2, "big") + len(body).to_bytes(2, "big") + body
    exts = ext(43, b"\x03\x04") + ext(51, b"\x00\x1d\x00\x20" + opaque(32, seed + "ks"))
    body = (b"\x03\x03" + opaque(32, seed + "rnd") + b"\x20" + opaque(32, seed + "sid")
            + b"\x13\x01\x00" + len(exts).to_bytes(2, "big") + exts)
    hs = b"\x02" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x03" + len(hs).to_bytes(2, "big") + hs


def tls_handshake(conv: Conversation, at: float, sni: str, seed: str) -> float:
    """TCP handshake then a TLS 1.3 handshake; returns the
    time the client sends its request. Works from either vantage."""
    conv.handshake(at)
    to_c, to_s = conv.reply_delay("c"), conv.reply_delay("s")
    t = at + to_s + to_c + 0.0006          # ClientHello right after the handshake's ACK
    conv.send("c", client_hello(sni, seed), at=t, ack=None)
    t += to_s + 0.0012                     # server: hello, CCS, encrypted flight
    conv.send("s", server_hello(seed) + CCS + tls_record(2380, seed + "cert")
              + tls_record(53, seed + "fin"), at=t)
    t += to_c + 0.0009                     # client Finished
    conv.send("c", CCS + tls_record(53, seed + "cfin"), at=t, ack=None)
    return t + 0.0002


def resp(label: str, n: int) -> bytes:
    return tls_record(n, label)


# ----- 1. SSE cut at 15 s by the proxy; a WebSocket with heartbeats survives ----------

def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def sse_stream(port: int, start: float, cut: str) -> Conversation:
    """Browser EventSource to the proxy; the proxy's 15 s route timeout cuts it."""
    rtt = 0.025
    conv = Conversation(("192.168.1.34", port), ("10.20.0.15", 8080), t0=T0, rtt=rtt,
                        client_os="windows", hops=12, seed=port)
    conv.handshake(start)
    req_t = start + rtt + 0.004
    conv.send("c", b"GET /events HTTP/1.1\r\nHost: app.example.com\r\n"
              b"Accept: text/event-stream\r\nCache-Control: no-cache\r\n"
              b"User-Agent: Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/119.0\r\n"
              b"Connection: keep-alive\r\n\r\n", at=req_t)
    t = req_t + rtt + 0.003  # headers + first event, piggybacking the ACK
    conv.send("s", b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
              b"cache-control: no-cache\r\nserver: envoy\r\ntransfer-encoding: chunked\r\n\r\n"
              + chunk(b": connected\n\n"), at=t)
    for k in range(1, 15):   # the app's heartbeat every 1 s; the 15th never leaves the proxy
        conv.send("s", chunk(f'data: {{"type":"heartbeat","n":{k}}}\n\n'.encode()),
                  at=req_t + rtt + k * 1.0)
    cut_t = req_t + rtt + 15.0   # the proxy's timer started when the request reached it
    if cut == "fin":
        conv.fin("s", at=cut_t)
        conv.fin("c", at=cut_t + 0.0021)   # the browser closes its side at once
    else:
        conv.rst("s", at=cut_t)            # genuine RST: the proxy owns this TCP connection
    return conv


def websocket(port: int, start: float, until: float) -> Conversation:
    rtt = 0.025
    conv = Conversation(("192.168.1.34", port), ("10.20.0.15", 8080), t0=T0, rtt=rtt,
                        client_os="windows", hops=12, seed=port)
    conv.handshake(start)
    t = start + rtt + 0.004
    conv.send("c", b"GET /ws HTTP/1.1\r\nHost: app.example.com\r\nUpgrade: websocket\r\n"
              b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
              b"Sec-WebSocket-Version: 13\r\n\r\n", at=t)
    t += rtt + 0.003
    conv.send("s", b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n"
              b"connection: Upgrade\r\nsec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
              b"server: envoy\r\n\r\n", at=t)
    k, beat = 1, t + 2.0
    while beat < until:            # server ping every 2 s, the browser's pong at once
        ping = k.to_bytes(4, "big")
        conv.send("s", b"\x89\x04" + ping, at=beat, ack=None)
        mask = opaque(4, f"mask{k}")
        conv.send("c", b"\x8a\x84" + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(ping)),
                  at=beat + 0.0004)
        k, beat = k + 1, beat + 2.0
    close_t = until + 0.2          # the page closes the socket: close 1000, echoed
    mask = opaque(4, "close")
    conv.send("c", b"\x88\x82" + mask + bytes(b ^ mask[i] for i, b in enumerate(b"\x03\xe8")),
              at=close_t)
    conv.send("s", b"\x88\x02\x03\xe8", at=close_t + rtt + 0.001, ack=None)
    conv.close("s", at=close_t + rtt + 0.0012)   # RFC 6455: the server closes TCP first
    return conv


def make_sse(out: Path) -> None:
    first = sse_stream(52101, 0.0, cut="fin")
    ws = websocket(52102, 0.5, until=40.0)
    # EventSource reconnects 3 s after the error; that stream is cut with a RST
    second = sse_stream(52104, 18.1, cut="rst")
    write_pcap(out / "sse_proxy_cut_15s.pcap", first, ws, second)


# ----- 2. NAT gateway drops state after 350 s idle ---------------------------------

NAT_RTT = 0.060
SERVER_RTO = NAT_RTT + 0.200  # Linux: srtt + the 200 ms floor of rttvar
BACKEND = ("203.0.113.50", 443)
NAT_PUBLIC = "198.51.100.7"   # the NAT gateway's elastic IP, what the backend sees
NAT_PORTS = {41822: 23415, 41830: 23431, 41846: 23447}


def nat_flow(vantage: str, port: int, start: float, think: float, *,
             arrives: bool, keepidle: float | None = None) -> Conversation:
    """One urllib3 request through the NAT gateway to the backend.

    The server answers `think` s after the request reaches it. arrives=False: the
    NAT lost the state and drops the response; from the server's side the response
    is retransmitted on the tcp_retries2 schedule and given up silently.
    `keepidle`: SO_KEEPALIVE with TCP_KEEPIDLE on the client (the fix).
    """
    rtt = NAT_RTT
    client = ("10.0.1.23", port) if vantage == "c" else (NAT_PUBLIC, NAT_PORTS[port])
    conv = Conversation(client, BACKEND, t0=T0, rtt=rtt, vantage=vantage, hops=12,
                        seed=port)
    # `start` is on the client's clock; the server sees the SYN half an RTT later
    shift = 0.0 if vantage == "c" else rtt / 2
    req_t = tls_handshake(conv, start + shift, "api.partner.example", f"nat{port}")
    conv.send("c", resp(f"req{port}", 310), at=req_t)
    answer_t = req_t + conv.reply_delay("s") + think
    if keepidle is not None:
        conv.keepalive_timer("c", idle=keepidle, until=answer_t - 0.5)
    body = resp(f"resp{port}", 890)
    if arrives:
        conv.send("s", body, at=answer_t)
        bye_t = answer_t + conv.reply_delay("c") + 0.002
        conv.send("c", tls_record(19, f"alert{port}"), at=bye_t, ack=None)
        conv.close("c", at=bye_t + 0.0003)
    elif vantage == "s":
        conv.retransmit_schedule("s", body, answer_t, rto=SERVER_RTO, retries=15)
    return conv


def make_nat(out: Path) -> None:
    # client vantage: A (41822) waits forever, B (41830) got its answer after 300 s of
    # idle, C (41846) is a fresh request at 1200 s that shows the capture still ran.
    a = nat_flow("c", 41822, 0.0, 363.0, arrives=False)
    b = nat_flow("c", 41830, 10.0, 300.0, arrives=True)
    c = nat_flow("c", 41846, 1200.0, 0.120, arrives=True)
    write_pcap(out / "nat_gateway_350s.pcap", a, b, c)
    # server vantage of A and B (ports translated by the NAT): A's response is sent at
    # 363 s and retransmitted into the void; the NAT gateway drops it without a RST.
    sa = nat_flow("s", 41822, 0.0, 363.0, arrives=False)
    sb = nat_flow("s", 41830, 10.0, 300.0, arrives=True)
    write_pcap(out / "nat_gateway_350s.server.pcap", sa, sb)
    # the fix: TCP_KEEPIDLE=349 (INTVL 10, CNT 3) on every socket
    fa = nat_flow("c", 41822, 0.0, 363.0, arrives=True, keepidle=349.0)
    fb = nat_flow("c", 41830, 10.0, 300.0, arrives=True, keepidle=349.0)
    write_pcap(out / "nat_gateway_350s_fixed.pcap", fa, fb)


# ----- 3. Redis SET retransmitted until tcp_retries2 gives up ------------------------

def resp_cmd(*words: str) -> bytes:
    out = f"*{len(words)}\r\n"
    for w in words:
        out += f"${len(w.encode())}\r\n{w}\r\n"
    return out.encode()


def redis_conn(port: int) -> Conversation:
    return Conversation(("10.0.1.23", port), ("10.0.3.45", 6379), t0=T0, rtt=0.0004,
                        hops=1, mss=8961, seed=port)


def redis_exchange(conv: Conversation, at: float, cmd: bytes, reply: bytes) -> None:
    conv.send("c", cmd, at=at)
    conv.send("s", reply, at=at + 0.0004 + 0.00006)


def make_redis(out: Path) -> None:
    old = redis_conn(40112)
    old.handshake(0.0)
    t = 0.002
    for cmd, reply in [(resp_cmd("SET", "session:42", "alice"), b"+OK\r\n"),
                       (resp_cmd("GET", "session:42"), b"$5\r\nalice\r\n"),
                       (resp_cmd("SET", "rate:alice", "17", "EX", "60"), b"+OK\r\n"),
                       (resp_cmd("GET", "rate:alice"), b"$2\r\n17\r\n")]:
        redis_exchange(old, t, cmd, reply)
        t += 0.5
    quiet_end = t - 0.5 + 1800.0        # 30 min of silence on the pooled connection
    old.retransmit_schedule("c", resp_cmd("SET", "session:42", "bob"), quiet_end,
                            rto=0.2, retries=15)
    give_up = old.give_up_at           # 924.6 s later, ETIMEDOUT, nothing on the wire
    new = redis_conn(40118)
    new.handshake(give_up + 0.0015)    # redis-py reconnects and retries at once
    redis_exchange(new, give_up + 0.0025, resp_cmd("SET", "session:42", "bob"), b"+OK\r\n")
    redis_exchange(new, give_up + 0.5, resp_cmd("GET", "session:42"), b"$3\r\nbob\r\n")
    write_pcap(out / "redis_retries2_924s.pcap", old, new)


# ----- 4. AWS NLB 350 s idle timeout: python hangs, curl with keepalive works ------------

NLB_RTT = 0.030
NLB = ("198.51.100.80", 443)
NLB_THINK = 960.0   # the app needs 16 min


def make_nlb(out: Path) -> None:
    py = Conversation(("10.0.1.50", 51514), NLB, t0=T0, rtt=NLB_RTT, hops=12, seed=51514)
    req_t = tls_handshake(py, 0.0, "reports.example.com", "py")
    py.send("c", resp("pyreq", 420), at=req_t)
    # evicted at ~350 s idle; the answer at req+960 s is dropped by the NLB. The user
    # gives up at 1080 s: Python's FIN gets the NLB's RST (not the server's TTL).
    fin_t = 1080.0
    py.fin("c", at=fin_t, ack=None)
    py.rst("s", at=fin_t + NLB_RTT, ttl=64, ip_id=0)

    curl = Conversation(("10.0.1.50", 51530), NLB, t0=T0, rtt=NLB_RTT, hops=12, seed=51530)
    req_t = tls_handshake(curl, 5.0, "reports.example.com", "curl")
    curl.send("c", resp("curlreq", 380), at=req_t)
    answer_t = req_t + NLB_RTT + NLB_THINK
    curl.keepalive_timer("c", idle=60.0, until=answer_t - 0.5)   # curl: KEEPIDLE=INTVL=60
    curl.send("s", resp("curlresp1", 6000) + resp("curlresp2", 1200), at=answer_t)
    curl.send("c", tls_record(19, "curlalert"), at=answer_t + 0.003, ack=None)
    curl.close("c", at=answer_t + 0.0032)
    write_pcap(out / "nlb_350s.pcap", py, curl)


def main(out: Path = HERE) -> list[Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for make in (make_sse, make_nat, make_redis, make_nlb):
        make(out)
    return sorted(out.glob("*.pcap"))


if __name__ == "__main__":
    for p in main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE):
        print(p.name, p.stat().st_size)
