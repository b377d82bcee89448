"""Socket-level actors of the kernel lab, run inside network namespaces by make_lab.py.

    python3 apps.py server --port 8000 --mode reply --delay 12
    python3 apps.py client --host 198.51.100.2 --port 8000 --sport 40001 request ...
    python3 apps.py proxy  --port 8081 --cut-after 6 --cut rst

Every actor has a hard deadline (SIGALRM -> exit) so nothing outlives a scenario.
Each prints one line per event to stdout: "<epoch> <actor> <event> key=value ...";
the client ends with a "RESULT ..." line that make_lab.py reports.

Wire protocol (plain text, one line per message, so payloads stay tiny and readable):
    request:   "REQ <tag> <n> delay=<s>\n"   (delay optional: overrides the server's)
    response:  "RESP <tag> <n>\n"
    stream:    "data: hb <n>\n\n" every heartbeat interval
The tag is the client's source port, so a flow can be matched across NAT by payload.
"""
from __future__ import annotations

import argparse
import errno
import os
import select
import signal
import socket
import struct
import sys
import threading
import time

SO_ORIGINAL_DST = 80  # linux/netfilter_ipv4.h; not exported by the socket module


def log(actor: str, event: str, **kv) -> None:
    fields = " ".join(f"{k}={v}" for k, v in kv.items())
    print(f"{time.time():.6f} {actor} {event} {fields}".rstrip(), flush=True)


def arm_deadline(seconds: float) -> None:
    # A hard stop: whatever a socket call is blocked on, the process ends in time.
    def expire(_sig, _frm):
        print(f"{time.time():.6f} deadline expired", flush=True)
        os._exit(3)

    signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)


def error_name(exc: OSError) -> str:
    return errno.errorcode.get(exc.errno or 0, type(exc).__name__)


def read_line(sock: socket.socket, buf: bytearray) -> bytes | None:
    """One newline-terminated message, or None at EOF."""
    while b"\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            return None
        buf += chunk
    line, _, rest = bytes(buf).partition(b"\n")
    buf[:] = rest
    return line


def parse_request(line: bytes) -> tuple[str, str, float | None]:
    parts = line.decode(errors="replace").split()
    tag = parts[1] if len(parts) > 1 else "?"
    n = parts[2] if len(parts) > 2 else "0"
    delay = None
    for p in parts[3:]:
        if p.startswith("delay="):
            delay = float(p[6:])
    return tag, n, delay


# ---------------------------------------------------------------- server

def serve_reply(conn: socket.socket, peer: str, args) -> None:
    """Answer each request after a delay: healthy, slow app, or a long request."""
    buf = bytearray()
    while True:
        line = read_line(conn, buf)
        if line is None:
            log("server", "eof", peer=peer)
            return
        tag, n, delay = parse_request(line)
        delay = args.delay if delay is None else delay
        log("server", "request", peer=peer, tag=tag, n=n, delay=delay)
        time.sleep(delay)
        conn.sendall(f"RESP {tag} {n}\n".encode())
        log("server", "response-sent", peer=peer, tag=tag, n=n)


def serve_stream(conn: socket.socket, peer: str, args) -> None:
    """After one request, send a heartbeat every interval until the peer goes away."""
    buf = bytearray()
    line = read_line(conn, buf)
    if line is None:
        return
    tag, _, _ = parse_request(line)
    log("server", "stream-start", peer=peer, tag=tag)
    conn.sendall(b": stream open\n\n")  # an SSE comment line opens the stream
    beat = 0
    while True:
        # Waiting on readability (not sleeping) notices the peer's FIN or RST at once.
        readable, _, _ = select.select([conn], [], [], args.hb_interval)
        if readable and not conn.recv(4096):
            log("server", "eof", peer=peer, beats=beat)
            return
        beat += 1
        conn.sendall(f"data: hb {beat}\n\n".encode())


def serve_bulk(conn: socket.socket, peer: str, args) -> None:
    """After one request, send bulk_bytes (the sender side of the zero-window case)."""
    buf = bytearray()
    line = read_line(conn, buf)
    if line is None:
        return
    log("server", "request", peer=peer, tag=parse_request(line)[0], n=0, delay=0)
    body = (b"0123456789abcdef" * (args.bulk_bytes // 16 + 1))[: args.bulk_bytes]
    t0 = time.time()
    conn.sendall(body)
    log("server", "bulk-sent", peer=peer, bytes=len(body), blocked_s=f"{time.time() - t0:.3f}")
    while conn.recv(4096):
        pass
    log("server", "eof", peer=peer)


SERVER_MODES = {"reply": serve_reply, "stream": serve_stream, "bulk": serve_bulk}


def handle(conn: socket.socket, addr, args) -> None:
    peer = f"{addr[0]}:{addr[1]}"
    log("server", "accept", peer=peer)
    try:
        SERVER_MODES[args.mode](conn, peer, args)
    except OSError as exc:
        log("server", "error", peer=peer, err=error_name(exc))
    finally:
        conn.close()


def run_server(args) -> None:
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("0.0.0.0", args.port))
    lsock.listen(256)
    log("server", "listening", port=args.port, mode=args.mode)
    while True:
        conn, addr = lsock.accept()
        threading.Thread(target=handle, args=(conn, addr, args), daemon=True).start()


# ---------------------------------------------------------------- proxy

def original_destination(conn: socket.socket) -> tuple[str, int]:
    raw = conn.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
    port, packed = struct.unpack_from("!2xH4s", raw)
    return socket.inet_ntoa(packed), port


def cut(sockets, how: str) -> None:
    for s in sockets:
        if how == "rst":
            # Linger 0: close() aborts the connection with a RST instead of a FIN.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()


def relay(down: socket.socket, args) -> None:
    """Terminate TCP, forward both ways, and cut both legs at a fixed connection age."""
    born = time.monotonic()
    host, port = original_destination(down)
    up = socket.create_connection((host, port), timeout=5)
    up.settimeout(None)
    log("proxy", "relay", upstream=f"{host}:{port}")
    pair = {down: up, up: down}
    try:
        while True:
            left = args.cut_after - (time.monotonic() - born)
            if left <= 0:
                log("proxy", "cut", how=args.cut, age=f"{time.monotonic() - born:.3f}")
                cut([down, up], args.cut)
                return
            readable, _, _ = select.select(list(pair), [], [], left)
            for s in readable:
                data = s.recv(65536)
                if not data:
                    log("proxy", "eof")
                    down.close(), up.close()
                    return
                pair[s].sendall(data)
    except OSError as exc:
        log("proxy", "error", err=error_name(exc))
        down.close(), up.close()


def run_proxy(args) -> None:
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("0.0.0.0", args.port))
    lsock.listen(64)
    log("proxy", "listening", port=args.port, cut=args.cut, cut_after=args.cut_after)
    while True:
        conn, _ = lsock.accept()
        threading.Thread(target=relay, args=(conn, args), daemon=True).start()


# ---------------------------------------------------------------- client

def connect(args, sport: int, keepalive: str | None = None, rcvbuf: int = 0) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if rcvbuf:
        # Before connect, so the window scale in the SYN matches the small buffer.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    if keepalive:
        idle, intvl, cnt = (int(x) for x in keepalive.split(","))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, intvl)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, cnt)
    s.bind(("0.0.0.0", sport))
    s.settimeout(5)
    s.connect((args.host, args.port))
    s.settimeout(None)
    return s


def outcome_of(exc: OSError) -> str:
    # socket.timeout is TimeoutError, and so is the kernel's ETIMEDOUT: tell them apart.
    if isinstance(exc, TimeoutError) and exc.errno is None:
        return "no-response"
    return error_name(exc)


def exchange(s: socket.socket, tag: int, n: int, wait: float, delay: float | None = None) -> str:
    """Send one request and wait for its response: returns the outcome word."""
    extra = f" delay={delay}" if delay is not None else ""
    s.sendall(f"REQ {tag} {n}{extra}\n".encode())
    s.settimeout(wait)
    try:
        line = read_line(s, bytearray())
    except OSError as exc:
        return outcome_of(exc)
    finally:
        s.settimeout(None)
    return "ok" if line else "eof"


def client_request(args) -> None:
    """Optional warm-up exchange, an idle period, then the request that matters."""
    s = connect(args, args.sport, args.keepalive)
    log("client", "connected", sport=args.sport, keepalive=args.keepalive or "off")
    if args.warmup:
        log("client", "warmup", outcome=exchange(s, args.sport, 0, 5))
    time.sleep(args.idle)
    for n in range(1, args.repeat + 1):
        t0 = time.time()
        outcome = exchange(s, args.sport, n, args.wait, args.delay)
        if outcome != "ok" or n == args.repeat:
            break
        time.sleep(args.every)
    log("client", "RESULT", sport=args.sport, outcome=outcome, request=n,
        waited=f"{time.time() - t0:.1f}")
    s.close()


def client_stream(args) -> None:
    """Ask for an event stream and read heartbeats until the connection ends."""
    s = connect(args, args.sport)
    t0 = time.time()
    s.sendall(f"REQ {args.sport} 1\n".encode())
    s.settimeout(args.wait)
    beats, outcome = 0, "no-end"
    try:
        while True:
            data = s.recv(4096)
            if not data:
                outcome = "eof"
                break
            beats += data.count(b"data: hb")
    except OSError as exc:
        outcome = outcome_of(exc)
    log("client", "RESULT", sport=args.sport, outcome=outcome, beats=beats,
        age=f"{time.time() - t0:.2f}")
    s.close()


def client_slowread(args) -> None:
    """Ask for a bulk body, then do not read for a while: the window closes."""
    s = connect(args, args.sport, rcvbuf=args.rcvbuf)
    s.sendall(f"REQ {args.sport} 1\n".encode())
    log("client", "paused", seconds=args.pause)
    time.sleep(args.pause)
    got = 0
    s.settimeout(args.wait)
    try:
        while got < args.bulk_bytes:
            chunk = s.recv(4096)
            if not chunk:
                break
            got += len(chunk)
            # A slow consumer: small reads keep the window small but open.
            time.sleep(args.read_gap)
        outcome = "ok" if got >= args.bulk_bytes else "short"
    except OSError as exc:
        outcome = outcome_of(exc)
    log("client", "RESULT", sport=args.sport, outcome=outcome, bytes=got)
    s.close()


def client_mixed(args) -> None:
    """Healthy short flows interleaved with pooled connections that stall."""
    stalled = []
    for i in range(args.stalled):
        sport = args.sport + i
        s = connect(args, sport)
        log("client", "pooled", sport=sport, warmup=exchange(s, sport, 0, 5))
        stalled.append((sport, s))

    def fire(sport: int, s: socket.socket, delay: float | None, after: float) -> None:
        time.sleep(after)
        t0 = time.time()
        outcome = exchange(s, sport, 1, args.wait, delay)
        log("client", "RESULT", sport=sport, outcome=outcome, waited=f"{time.time() - t0:.1f}")

    threads = []
    for i, (sport, s) in enumerate(stalled):
        # The last pooled connection carries a long request; the others go idle.
        long_request = i == len(stalled) - 1 and args.long_delay > 0
        plan = (args.long_delay, 1.0) if long_request else (None, args.idle)
        t = threading.Thread(target=fire, args=(sport, s, *plan), daemon=True)
        t.start()
        threads.append(t)
    healthy_ok = 0
    for i in range(args.healthy):
        sport = args.healthy_sport + i
        try:
            s = connect(args, sport)
            healthy_ok += exchange(s, sport, 1, 5) == "ok"
            s.close()
        except OSError as exc:
            log("client", "healthy-error", sport=sport, err=error_name(exc))
        time.sleep(args.healthy_interval)
    log("client", "RESULT", healthy=args.healthy, healthy_ok=healthy_ok)
    for t in threads:
        t.join()


# ---------------------------------------------------------------- end-of-capture mark

def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def run_mark(args) -> None:
    """One ICMP echo to the gateway: pcap has no end-of-capture record, so the last
    frame of every lab capture says when observation stopped."""
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    payload = b"capanalyze lab: end of capture"
    header = struct.pack("!BBHHH", 8, 0, 0, os.getpid() & 0xFFFF, 1)
    s.sendto(struct.pack("!BBHHH", 8, 0, checksum(header + payload), os.getpid() & 0xFFFF, 1)
             + payload, (args.host, 0))
    s.settimeout(1.0)
    try:
        s.recv(2048)
    except OSError:
        pass
    log("mark", "sent", host=args.host)


CLIENT_MODES = {"request": client_request, "stream": client_stream,
                "slowread": client_slowread, "mixed": client_mixed}


# ---------------------------------------------------------------- cli

def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--deadline", type=float, default=120.0, help="hard exit after S seconds")
    sub = p.add_subparsers(dest="role", required=True)

    srv = sub.add_parser("server")
    srv.add_argument("--port", type=int, default=8000)
    srv.add_argument("--mode", choices=sorted(SERVER_MODES), default="reply")
    srv.add_argument("--delay", type=float, default=0.0)
    srv.add_argument("--hb-interval", type=float, default=1.0)
    srv.add_argument("--bulk-bytes", type=int, default=40000)

    prx = sub.add_parser("proxy")
    prx.add_argument("--port", type=int, default=8081)
    prx.add_argument("--cut-after", type=float, default=6.0)
    prx.add_argument("--cut", choices=["fin", "rst"], default="fin")

    mark = sub.add_parser("mark")
    mark.add_argument("--host", required=True)

    cli = sub.add_parser("client")
    cli.add_argument("mode", choices=sorted(CLIENT_MODES))
    cli.add_argument("--host", default="198.51.100.2")
    cli.add_argument("--port", type=int, default=8000)
    cli.add_argument("--sport", type=int, default=40001)
    cli.add_argument("--keepalive", help="idle,intvl,cnt in seconds/probes (off if absent)")
    cli.add_argument("--warmup", action="store_true", help="one exchange before idling")
    cli.add_argument("--idle", type=float, default=0.0, help="idle before the request")
    cli.add_argument("--delay", type=float, help="ask the server to take this long")
    cli.add_argument("--wait", type=float, default=60.0, help="max wait for a response")
    cli.add_argument("--repeat", type=int, default=1, help="requests on the connection")
    cli.add_argument("--every", type=float, default=1.0, help="pause between requests")
    cli.add_argument("--rcvbuf", type=int, default=4096)
    cli.add_argument("--pause", type=float, default=10.0)
    cli.add_argument("--read-gap", type=float, default=0.0)
    cli.add_argument("--bulk-bytes", type=int, default=40000)
    cli.add_argument("--stalled", type=int, default=3)
    cli.add_argument("--long-delay", type=float, default=0.0)
    cli.add_argument("--healthy", type=int, default=100)
    cli.add_argument("--healthy-sport", type=int, default=41000)
    cli.add_argument("--healthy-interval", type=float, default=0.25)
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    arm_deadline(args.deadline)
    if args.role == "server":
        run_server(args)
    elif args.role == "proxy":
        run_proxy(args)
    elif args.role == "mark":
        run_mark(args)
    else:
        CLIENT_MODES[args.mode](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
