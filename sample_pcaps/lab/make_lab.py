"""Reproducible kernel lab: real Linux TCP stacks in network namespaces, captured at both ends.

    sudo python3 sample_pcaps/lab/make_lab.py [--only NAME[,NAME...]] [--out DIR] [--no-validate]

Topology (TEST-NET addresses, inside the namespaces only):

    caplab-client  c0 192.0.2.2/24 --- r0 192.0.2.1/24  caplab-router  r1 198.51.100.1/24 --- s0 198.51.100.2/24  caplab-server

The router forwards, masquerades the client behind 198.51.100.1 (so the server's capture
sees NATed addresses and ports) and runs a stateful nftables filter whose conntrack
established timeout is lowered to CT_ESTABLISHED_TIMEOUT_S: a cloud NAT/LB "350 s" idle
eviction happens here after 20 s. Each scenario gets a fresh topology; tcpdump records
`<name>.client.pcap` on c0 and `<name>.server.pcap` on s0 at the same time.
Everything is bounded in time and torn down in `finally`, also on Ctrl-C.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

# ------------------------------------------------------------ scenario parameters
CT_ESTABLISHED_TIMEOUT_S = 20   # router conntrack: stands in for a 350 s NAT/NLB timeout
TCP_RETRIES2 = 6                # client and server: give-up after ~25.4 s of backoff (RTO 200 ms)
IDLE_BEYOND_TIMEOUT_S = 25      # idle period that outlives the conntrack entry
LONG_REQUEST_DELAY_S = 25       # server think time longer than the timeout
SLOW_APP_DELAY_S = 12           # server think time shorter than the timeout
KEEPALIVE = (5, 5, 3)           # TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT (below the timeout)
HEARTBEAT_INTERVAL_S = 1.0      # server-sent events cadence in the proxy scenarios
PROXY_CUT_AGE_S = 6.0           # the terminating proxy closes every connection at this age
ZERO_WINDOW_PAUSE_S = 10        # the receiver does not read for this long
ZERO_WINDOW_BYTES = 40000       # body size of the zero-window download
CLIENT_RCVBUF = 4096            # SO_RCVBUF of the slow reader (kernel doubles it)
MIXED_HEALTHY_FLOWS = 100       # short healthy flows in the mixed capture
MIXED_HEALTHY_INTERVAL_S = 0.25
MIXED_STALLED = 3               # 2 idle-evicted pooled connections + 1 long request
PEER_DOWN_AT_S = 5.5            # the server vanishes (router drops its traffic) at this time
PEER_REQUEST_EVERY_S = 1.0      # request cadence on the connection that loses its peer
HUNG_CAPTURE_S = 56             # capture length when a side hangs until the capture ends
ATTEMPTS = 2                    # a scenario whose capture lost its end is run again
APP_DEADLINE_S = 120            # hard exit of every app process
SERVER_PORT = 8000
PROXY_PORT = 8081
CLIENT_SPORT = 40001            # first client source port of every scenario
HEALTHY_SPORT = 41000           # first source port of the mixed scenario's healthy flows
NAT_RANDOM_PORTS = True         # masquerade with random ports: the server sees other ports

# ------------------------------------------------------------ topology
PREFIX = "caplab-"
CLIENT_NS, ROUTER_NS, SERVER_NS = PREFIX + "client", PREFIX + "router", PREFIX + "server"
CLIENT_IP, ROUTER_CLIENT_IP = "192.0.2.2", "192.0.2.1"
ROUTER_SERVER_IP, SERVER_IP = "198.51.100.1", "198.51.100.2"
LAB_DIR = Path(__file__).resolve().parent
APPS = LAB_DIR / "apps.py"


class IncompleteCapture(RuntimeError):
    """A capture lost packets at its end; the scenario is run again."""


@dataclass
class Scenario:
    name: str
    client: list[str]                        # apps.py client arguments
    server: list[str] = field(default_factory=lambda: ["--mode", "reply"])
    invalid: str = "drop"                    # router verdict for packets conntrack lost: drop | reset
    proxy: str | None = None                 # fin | rst: run the terminating proxy
    stop_at: float | None = None             # fixed capture length (a side hangs)
    max_s: float = 90.0                      # bound when waiting for the client to finish
    tail_s: float = 2.0                      # capture kept running after the client exits
    events: list[tuple[float, str]] = field(default_factory=list)  # (s after client start, nft rule)


def keepalive_arg() -> list[str]:
    return ["--keepalive", ",".join(str(v) for v in KEEPALIVE)]


def scenarios() -> dict[str, Scenario]:
    idle = ["request", "--warmup", "--idle", str(IDLE_BEYOND_TIMEOUT_S), "--wait", "90"]
    long_req = ["request", "--delay", str(LONG_REQUEST_DELAY_S)]
    stream = ["stream", "--wait", str(PROXY_CUT_AGE_S * 3)]
    stream_server = ["--mode", "stream", "--hb-interval", str(HEARTBEAT_INTERVAL_S)]
    all_ = [
        Scenario("idle_evict_drop", idle),
        Scenario("idle_evict_rst", idle, invalid="reset"),
        Scenario("long_request_no_keepalive", long_req + ["--wait", "110"], stop_at=HUNG_CAPTURE_S),
        Scenario("long_request_keepalive", long_req + ["--wait", "60"] + keepalive_arg()),
        Scenario("slow_app", ["request", "--delay", str(SLOW_APP_DELAY_S), "--wait", "60"]),
        Scenario("proxy_cut_fin", stream, stream_server, proxy="fin"),
        Scenario("proxy_cut_rst", stream, stream_server, proxy="rst"),
        Scenario("zero_window",
                 ["slowread", "--rcvbuf", str(CLIENT_RCVBUF), "--pause", str(ZERO_WINDOW_PAUSE_S),
                  "--bulk-bytes", str(ZERO_WINDOW_BYTES), "--read-gap", "0.02", "--wait", "20"],
                 ["--mode", "bulk", "--bulk-bytes", str(ZERO_WINDOW_BYTES)]),
        Scenario("idle_keepalive", idle + keepalive_arg()),
        Scenario("peer_unreachable",
                 ["request", "--repeat", "60", "--every", str(PEER_REQUEST_EVERY_S), "--wait", "60"],
                 events=[(PEER_DOWN_AT_S, f"insert rule inet lab forward ip daddr {SERVER_IP} drop"),
                         (PEER_DOWN_AT_S, f"insert rule inet lab forward ip saddr {SERVER_IP} drop")]),
        Scenario("mixed",
                 ["mixed", "--stalled", str(MIXED_STALLED), "--idle", str(IDLE_BEYOND_TIMEOUT_S),
                  "--long-delay", str(LONG_REQUEST_DELAY_S), "--wait", "110",
                  "--healthy", str(MIXED_HEALTHY_FLOWS), "--healthy-sport", str(HEALTHY_SPORT),
                  "--healthy-interval", str(MIXED_HEALTHY_INTERVAL_S)],
                 stop_at=HUNG_CAPTURE_S),
    ]
    return {s.name: s for s in all_}


# ------------------------------------------------------------ shell helpers

def run(*argv: str, ns: str | None = None, check: bool = True, stdin: str | None = None) -> str:
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(argv)
    res = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=20)
    if check and res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {res.stderr.strip()}")
    return res.stdout


def sysctl_get(key: str, ns: str | None = None) -> str:
    return run("sysctl", "-n", key, ns=ns).strip()


class Restorer:
    """Global sysctls changed because a key turned out not to be per-namespace."""

    def __init__(self) -> None:
        self.saved: dict[str, str] = {}

    def set_in_ns(self, ns: str, key: str, value) -> None:
        before = sysctl_get(key)
        run("sysctl", "-qw", f"{key}={value}", ns=ns)
        if sysctl_get(key) != before and key not in self.saved:
            # Not per-namespace on this kernel: remember the host value to put it back.
            print(f"  note: {key} is global here; will restore {before}")
            self.saved[key] = before

    def restore(self) -> None:
        for key, value in self.saved.items():
            run("sysctl", "-qw", f"{key}={value}", check=False)
        self.saved.clear()


# ------------------------------------------------------------ topology

def lab_namespaces() -> list[str]:
    out = run("ip", "netns", "list", check=False)
    return [line.split()[0] for line in out.splitlines() if line.startswith(PREFIX)]


def destroy_namespaces() -> None:
    """Kill what still runs in the lab's namespaces (by pid), then delete them."""
    for ns in lab_namespaces():
        for pid in run("ip", "netns", "pids", ns, check=False).split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        run("ip", "netns", "del", ns, check=False)


def nft_ruleset(invalid: str, proxy: bool) -> str:
    lost = ("meta l4proto tcp ct state invalid reject with tcp reset\n        ct state invalid drop"
            if invalid == "reset" else "ct state invalid drop")
    redirect = f'iifname "r0" tcp dport {SERVER_PORT} redirect to :{PROXY_PORT}' if proxy else ""
    masq = "masquerade random" if NAT_RANDOM_PORTS else "masquerade"
    return f"""
table inet lab {{
    chain prerouting {{
        type nat hook prerouting priority dstnat; policy accept;
        {redirect}
    }}
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        oifname "r1" {masq}
    }}
    chain forward {{
        type filter hook forward priority filter; policy drop;
        ct state established,related accept
        {lost}
        ct state new tcp flags & (fin|syn|rst|ack) == syn accept
    }}
    chain input {{
        # Without this, a reply that reaches the NAT address after eviction would be
        # answered by the router's own stack with a RST, even in the silent variant.
        type filter hook input priority filter; policy accept;
        {lost}
    }}
}}
"""


def build_topology(sc: Scenario, restorer: Restorer) -> None:
    for ns in (CLIENT_NS, ROUTER_NS, SERVER_NS):
        run("ip", "netns", "add", ns)
        # No IPv6 autoconfiguration chatter in the captures.
        run("sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1", ns=ns)
        run("ip", "link", "set", "lo", "up", ns=ns)
    run("ip", "-n", CLIENT_NS, "link", "add", "name", "c0", "type", "veth",
        "peer", "name", "r0", "netns", ROUTER_NS)
    run("ip", "-n", SERVER_NS, "link", "add", "name", "s0", "type", "veth",
        "peer", "name", "r1", "netns", ROUTER_NS)
    for ns, dev, cidr in ((CLIENT_NS, "c0", CLIENT_IP + "/24"), (ROUTER_NS, "r0", ROUTER_CLIENT_IP + "/24"),
                          (ROUTER_NS, "r1", ROUTER_SERVER_IP + "/24"), (SERVER_NS, "s0", SERVER_IP + "/24")):
        run("ip", "-n", ns, "addr", "add", cidr, "dev", dev)
        disable_offloads(ns, dev)
        run("ip", "-n", ns, "link", "set", dev, "up")
    run("ip", "-n", CLIENT_NS, "route", "add", "default", "via", ROUTER_CLIENT_IP)
    run("ip", "-n", SERVER_NS, "route", "add", "default", "via", ROUTER_SERVER_IP)
    run("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=ROUTER_NS)
    for ns in (CLIENT_NS, SERVER_NS):
        restorer.set_in_ns(ns, "net.ipv4.tcp_retries2", TCP_RETRIES2)
    run("nft", "-f", "-", ns=ROUTER_NS, stdin=nft_ruleset(sc.invalid, sc.proxy is not None))
    # After the ruleset: its ct expressions make sure conntrack is active in the router.
    restorer.set_in_ns(ROUTER_NS, "net.netfilter.nf_conntrack_tcp_timeout_established",
                       CT_ESTABLISHED_TIMEOUT_S)
    restorer.set_in_ns(ROUTER_NS, "net.netfilter.nf_conntrack_tcp_loose", 0)


def disable_offloads(ns: str, dev: str) -> None:
    # MTU-sized segments with real checksums, as a wire tap would record them.
    if shutil.which("ethtool"):
        run("ethtool", "-K", dev, "tx", "off", "tso", "off", "gso", "off", "gro", "off",
            ns=ns, check=False)


# ------------------------------------------------------------ processes

class Procs:
    """Processes started by this run, each in its own session, stopped by pid."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.items: list[tuple[str, subprocess.Popen]] = []

    def start(self, label: str, ns: str, argv: list[str]) -> subprocess.Popen:
        log = open(self.logdir / f"{label}.log", "w")
        p = subprocess.Popen(["ip", "netns", "exec", ns] + argv, stdout=log,
                             stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.items.append((label, p))
        return p

    def log_text(self, label: str) -> str:
        path = self.logdir / f"{label}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def wait_for(self, label: str, text: str, timeout: float = 5.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if text in self.log_text(label):
                return
            time.sleep(0.05)
        raise RuntimeError(f"{label} did not print {text!r}: {self.log_text(label)[-300:]}")

    def stop(self, label: str, sig=signal.SIGTERM, grace: float = 3.0) -> None:
        for name, p in self.items:
            if name == label and p.poll() is None:
                os.killpg(p.pid, sig)
                try:
                    p.wait(grace)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait(grace)

    def stop_all(self) -> None:
        for name, _ in list(self.items):
            self.stop(name)


def app(*args: str) -> list[str]:
    return [sys.executable, str(APPS), "--deadline", str(APP_DEADLINE_S), *args]


def tcpdump(dev: str, path: Path) -> list[str]:
    # --immediate-mode: without it libpcap hands packets over in 1 s blocks and the last
    # ones can be lost when tcpdump is stopped.
    return ["tcpdump", "-i", dev, "-s", "0", "-U", "--immediate-mode", "-n", "-Z", "root",
            "-w", str(path)]


# ------------------------------------------------------------ one scenario

def run_scenario(sc: Scenario, out: Path, restorer: Restorer) -> dict:
    t0 = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix=f"caplab-{sc.name}-"))
    procs = Procs(work)
    try:
        destroy_namespaces()
        build_topology(sc, restorer)
        pcaps = {side: work / f"{sc.name}.{side}.pcap" for side in ("client", "server")}
        procs.start("tcpdump-client", CLIENT_NS, tcpdump("c0", pcaps["client"]))
        procs.start("tcpdump-server", SERVER_NS, tcpdump("s0", pcaps["server"]))
        for side in ("client", "server"):
            procs.wait_for(f"tcpdump-{side}", "listening on")
        procs.start("server", SERVER_NS, app("server", "--port", str(SERVER_PORT), *sc.server))
        procs.wait_for("server", "listening")
        if sc.proxy:
            procs.start("proxy", ROUTER_NS, app("proxy", "--port", str(PROXY_PORT), "--cut", sc.proxy,
                                               "--cut-after", str(PROXY_CUT_AGE_S)))
            procs.wait_for("proxy", "listening")
        time.sleep(0.5)  # a quiet lead-in, like a capture started before the incident
        client = procs.start("client", CLIENT_NS, app(
            "client", *sc.client[:1], "--host", SERVER_IP, "--port", str(SERVER_PORT),
            "--sport", str(CLIENT_SPORT), *sc.client[1:]))
        started = time.monotonic()
        fire_events(sc, started)
        wait_client(client, sc, started)
        mark_capture_end()
        # Captures stop before any app is killed: a killed app's FIN would not be the story.
        procs.stop("tcpdump-client", signal.SIGINT)
        procs.stop("tcpdump-server", signal.SIGINT)
        procs.stop_all()
        incomplete = [side for side, path in pcaps.items() if not ends_with_mark(path)]
        if incomplete:
            raise IncompleteCapture(f"{sc.name}: {', '.join(incomplete)} capture lacks the end mark "
                                    f"(tcpdump: {procs.log_text('tcpdump-client')[-200:]!r})")
        result = collect(sc, procs, pcaps, out)
    finally:
        procs.stop_all()
        destroy_namespaces()
        shutil.rmtree(work, ignore_errors=True)
    result["seconds"] = round(time.monotonic() - t0, 1)
    return result


def fire_events(sc: Scenario, started: float) -> None:
    """Change the router mid-scenario (times are after the client's start)."""
    for at, rule in sorted(sc.events):
        time.sleep(max(0.0, at - (time.monotonic() - started)))
        run("nft", rule, ns=ROUTER_NS)


def wait_client(client: subprocess.Popen, sc: Scenario, started: float) -> None:
    left = lambda limit: max(0.1, limit - (time.monotonic() - started))  # noqa: E731
    if sc.stop_at is not None:
        # This scenario's client hangs by design: the capture ends at a fixed time.
        try:
            client.wait(left(sc.stop_at))
        except subprocess.TimeoutExpired:
            pass
        return
    try:
        client.wait(left(sc.max_s))
    except subprocess.TimeoutExpired:
        print(f"  warning: client still running after {sc.max_s} s")
    time.sleep(sc.tail_s)


def last_frame(path: Path) -> bytes:
    """The bytes of a classic pcap's last record (b"" if none)."""
    data = path.read_bytes() if path.exists() else b""
    pos, last = 24, b""
    while pos + 16 <= len(data):
        caplen = struct.unpack_from("<I" if data[:4] == b"\xd4\xc3\xb2\xa1" else ">I", data, pos + 8)[0]
        last = data[pos + 16: pos + 16 + caplen]
        pos += 16 + caplen
    return last


def ends_with_mark(path: Path) -> bool:
    """True when the capture saw the end mark's echo reply: nothing was lost at the end."""
    frame = last_frame(path)
    return (len(frame) > 34 and frame[12:14] == b"\x08\x00" and frame[23] == 1
            and frame[34] == 0)


def mark_capture_end() -> None:
    for ns, gateway in ((CLIENT_NS, ROUTER_CLIENT_IP), (SERVER_NS, ROUTER_SERVER_IP)):
        res = subprocess.run(["ip", "netns", "exec", ns] + app("mark", "--host", gateway),
                             capture_output=True, text=True, timeout=10)
        if res.returncode != 0:
            print(f"  warning: end mark in {ns} failed: {res.stdout.strip()} {res.stderr.strip()[-200:]}")
    time.sleep(0.5)  # let tcpdump write the reply before it is stopped


def nat_port_map(server_log: str) -> dict[str, int]:
    """Client source port (the request tag) -> the port the server saw after NAT."""
    ports = {}
    for m in re.finditer(r"server request peer=[\d.]+:(\d+) tag=(\d+)", server_log):
        ports.setdefault(m.group(2), int(m.group(1)))
    for m in re.finditer(r"server stream-start peer=[\d.]+:(\d+) tag=(\d+)", server_log):
        ports.setdefault(m.group(2), int(m.group(1)))
    return ports


def collect(sc: Scenario, procs: Procs, pcaps: dict[str, Path], out: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for side, path in pcaps.items():
        dest = out / path.name
        shutil.move(str(path), dest)
        files[side] = dest.name
    results = [line.split(" RESULT ", 1)[1] for line in procs.log_text("client").splitlines()
               if " RESULT " in line]
    events = [line.split(" ", 2)[2] for line in
              procs.log_text("proxy").splitlines() + procs.log_text("server").splitlines()
              if " error " in line or " cut " in line]
    stats = {side: " ".join(line.strip() for line in procs.log_text(f"tcpdump-{side}").splitlines()
                            if "packets" in line) for side in pcaps}
    return {"files": files, "client_results": results, "server_proxy_errors": events,
            "tcpdump": stats,
            "nat_ports": nat_port_map(procs.log_text("server"))}


# ------------------------------------------------------------ validation (tshark)

FLAG_FIELDS = ["retransmission", "fast_retransmission", "spurious_retransmission",
               "keep_alive", "keep_alive_ack", "zero_window", "zero_window_probe",
               "zero_window_probe_ack", "window_full", "window_update", "duplicate_ack",
               "lost_segment", "ack_lost_segment", "out_of_order"]


def tshark_summary(path: Path) -> dict:
    fields = ["frame.time_relative", "tcp.flags.reset", "_ws.malformed"] + \
             [f"tcp.analysis.{f}" for f in FLAG_FIELDS]
    cmd = ["tshark", "-r", str(path), "-T", "fields", "-E", "separator=|", "-E", "occurrence=f"]
    for f in fields:
        cmd += ["-e", f]
    rows = [line.split("|") for line in
            subprocess.run(cmd, capture_output=True, text=True, timeout=60).stdout.splitlines()]
    set_ = lambda v: v not in ("", "0", "False")  # noqa: E731
    counts = {name: sum(set_(r[i]) for r in rows)
              for i, name in enumerate(["_", "rst", "malformed"] + FLAG_FIELDS) if i > 0}
    conv = subprocess.run(["tshark", "-r", str(path), "-q", "-z", "conv,tcp"],
                          capture_output=True, text=True, timeout=60).stdout
    return {"packets": len(rows), "bytes": path.stat().st_size,
            "duration_s": round(float(rows[-1][0]), 3) if rows else 0.0,
            "tcp_conversations": sum("<->" in line for line in conv.splitlines()),
            "flags": {k: v for k, v in counts.items() if v}}


def validate(result: dict, out: Path) -> None:
    for side, name in result["files"].items():
        s = tshark_summary(out / name)
        result.setdefault("tshark", {})[side] = s
        bad = s["flags"].get("malformed", 0) + s["flags"].get("ack_lost_segment", 0)
        print(f"    {name}: {s['packets']} pkts, {s['bytes']} B, {s['duration_s']} s, "
              f"{s['tcp_conversations']} conv, flags={s['flags']}" + ("  <-- BAD" if bad else ""))


# ------------------------------------------------------------ main

def write_manifest(out: Path, results: dict[str, dict]) -> None:
    """Ground truth for tests: parameters, outcomes and the NAT port mapping."""
    path = out / "manifest.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data["parameters"] = {k: v for k, v in globals().items()
                          if k.isupper() and isinstance(v, (int, float, bool, tuple))
                          and not k.startswith("_")}
    data.setdefault("scenarios", {}).update(results)
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


def run_with_retry(sc: Scenario, out: Path, restorer: Restorer) -> dict:
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return run_scenario(sc, out, restorer)
        except IncompleteCapture as exc:
            print(f"  attempt {attempt}/{ATTEMPTS} incomplete: {exc}", flush=True)
    raise RuntimeError(f"{sc.name}: no complete capture in {ATTEMPTS} attempts")


def interrupt(_sig, _frame) -> None:
    # SIGTERM (and SIGINT even where a shell ignored it) take the cleanup path.
    raise KeyboardInterrupt


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", help="comma-separated scenario names (default: all)")
    p.add_argument("--out", type=Path, default=LAB_DIR, help="output directory")
    p.add_argument("--no-validate", action="store_true", help="skip the tshark summary")
    p.add_argument("--list", action="store_true", help="list scenarios and exit")
    args = p.parse_args(argv)
    catalog = scenarios()
    if args.list:
        print("\n".join(catalog))
        return 0
    names = args.only.split(",") if args.only else list(catalog)
    unknown = [n for n in names if n not in catalog]
    if unknown:
        p.error(f"unknown scenario(s): {', '.join(unknown)}; known: {', '.join(catalog)}")
    if os.geteuid() != 0:
        p.error("needs root (network namespaces, nftables, tcpdump)")
    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)
    restorer, results, t0 = Restorer(), {}, time.monotonic()
    try:
        destroy_namespaces()  # leftovers of an interrupted earlier run
        for name in names:
            print(f"== {name}", flush=True)
            res = run_with_retry(catalog[name], args.out, restorer)
            print(f"  {res['seconds']} s; client: {res['client_results']}; "
                  f"nat: {dict(list(res['nat_ports'].items())[:3])}", flush=True)
            print(f"  tcpdump: {res['tcpdump']}")
            for ev in res["server_proxy_errors"][:4]:
                print(f"  {ev}")
            if not args.no_validate and shutil.which("tshark"):
                validate(res, args.out)
            results[name] = res
    except KeyboardInterrupt:
        print("interrupted: cleaning up", file=sys.stderr)
        return 130
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        destroy_namespaces()
        restorer.restore()
        if results:
            write_manifest(args.out, results)
    print(f"total {time.monotonic() - t0:.1f} s for {len(results)} scenario(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
