"""The crafted-capture builder does what it promises, read back from the written bytes
(dpkt, and tshark when installed)."""
from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path

import dpkt
import pytest

from capanalyze.craft import Conversation, linux_backoff, write_pcap

ROOT = Path(__file__).resolve().parents[1]
CLIENT, SERVER = ("192.0.2.10", 50123), ("198.51.100.20", 80)
SEQ_MOD = 1 << 32


# ----- helpers ---------------------------------------------------------------------

def read_back(path: Path) -> list[dict]:
    """Every frame as a dict of the fields the tests look at, 1-based frame numbers."""
    out = []
    with open(path, "rb") as f:
        for n, (ts, buf) in enumerate(dpkt.pcap.Reader(f), start=1):
            ip = dpkt.ethernet.Ethernet(buf).data
            tcp = ip.data
            opts = dict(dpkt.tcp.parse_opts(tcp.opts))
            ts_opt = opts.get(dpkt.tcp.TCP_OPT_TIMESTAMP)
            out.append({
                "frame": n, "ts": ts, "src": ip.src, "sport": tcp.sport, "ttl": getattr(ip, "ttl", None),
                "ip_id": getattr(ip, "id", None), "flags": tcp.flags, "seq": tcp.seq,
                "ack": tcp.ack, "win": tcp.win, "len": len(tcp.data), "opts": opts,
                "tsval": int.from_bytes(ts_opt[:4], "big") if ts_opt else None,
                "tsecr": int.from_bytes(ts_opt[4:], "big") if ts_opt else None,
            })
    return out


def from_client(frames):
    return [f for f in frames if f["sport"] == CLIENT[1]]


def from_server(frames):
    return [f for f in frames if f["sport"] == SERVER[1]]


def written(tmp_path: Path, *sources, name: str = "x.pcap") -> list[dict]:
    path = tmp_path / name
    write_pcap(path, *sources)
    return read_back(path)


def tshark_fields(path: Path, *fields: str, display_filter: str | None = None) -> list[list[str]]:
    cmd = ["tshark", "-n", "-r", str(path), "-T", "fields"]
    for f in fields:
        cmd += ["-e", f]
    if display_filter:
        cmd += ["-Y", display_filter]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return [line.split("\t") for line in res.stdout.splitlines()]


needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")

SYN, ACK, FIN, RST, PSH = dpkt.tcp.TH_SYN, dpkt.tcp.TH_ACK, dpkt.tcp.TH_FIN, dpkt.tcp.TH_RST, dpkt.tcp.TH_PUSH


def http_exchange(rtt=0.020, **kw) -> Conversation:
    conv = Conversation(CLIENT, SERVER, rtt=rtt, **kw)
    conv.handshake(0.0)
    conv.send("c", b"GET / HTTP/1.1\r\nHost: example\r\n\r\n", at=0.1)
    conv.send("s", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", at=0.3)
    return conv


# ----- the retransmission model ----------------------------------------------------------

def test_linux_backoff_is_the_tcp_retries2_budget():
    offsets, give_up = linux_backoff()
    assert offsets == [0.2, 0.6, 1.4, 3.0, 6.2, 12.6, 25.4, 51.0, 102.2, 204.6,
                       324.6, 444.6, 564.6, 684.6, 804.6]
    assert give_up == 924.6
    slow, slow_give_up = linux_backoff(rto=1.0)  # a larger RTO fits fewer retransmissions
    assert len(slow) == 13 and slow_give_up == 967.0
    assert linux_backoff(retries=3) == ([0.2, 0.6, 1.4], 3.0)


def test_retransmission_times_read_back_exactly(tmp_path):
    conv = http_exchange()
    first = 1800.0
    conv.retransmit_schedule("c", b"SET k v\r\n", first_at=first)
    frames = written(tmp_path, conv)
    data = [f for f in from_client(frames) if f["len"] == 9]
    assert len(data) == 16
    assert len({(f["seq"], f["ack"]) for f in data}) == 1  # the same segment every time
    t0 = data[0]["ts"]
    got = [round(f["ts"] - t0, 6) for f in data[1:]]
    assert got == linux_backoff()[0]
    assert conv.give_up_at == pytest.approx(first + 924.6)
    assert frames[-1]["frame"] == data[-1]["frame"]  # never ACKed, no RST on give-up
    assert len({f["ip_id"] for f in data}) == 16     # each copy is a new IP datagram
    assert [f["tsval"] for f in data] == sorted(f["tsval"] for f in data)


def test_retransmission_delivered_on_the_third_try_is_acked(tmp_path):
    conv = http_exchange()
    conv.retransmit_schedule("c", b"ping", first_at=5.0, delivered_on=3)
    frames = written(tmp_path, conv)
    last = frames[-1]
    assert last["sport"] == SERVER[1] and last["flags"] == ACK
    assert last["ts"] - frames[-2]["ts"] == pytest.approx(0.020)
    assert frames[-2]["ts"] - frames[-5]["ts"] == pytest.approx(1.4)
    assert last["ack"] == (frames[-2]["seq"] + 4) % SEQ_MOD


# ----- sequence bookkeeping ------------------------------------------------------------

def test_seq_and_ack_across_data_and_fin(tmp_path):
    conv = http_exchange(isn_client=1000, isn_server=5000)
    conv.close("c", at=1.0)
    f = written(tmp_path, conv)
    syn, synack, ack = f[0], f[1], f[2]
    assert (syn["seq"], synack["seq"], synack["ack"]) == (1000, 5000, 1001)
    assert (ack["seq"], ack["ack"]) == (1001, 5001)
    req_len = len(b"GET / HTTP/1.1\r\nHost: example\r\n\r\n")
    resp_len = len(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
    fin_c, fin_s, last = f[-3], f[-2], f[-1]
    assert fin_c["flags"] & FIN and fin_c["seq"] == 1001 + req_len
    assert fin_c["ack"] == 5001 + resp_len
    assert fin_s["flags"] & FIN and fin_s["ack"] == 1001 + req_len + 1  # FIN consumed one
    assert last["flags"] == ACK and last["ack"] == 5001 + resp_len + 1


def test_sequence_numbers_wrap_around_2_to_32(tmp_path):
    conv = Conversation(CLIENT, SERVER, isn_client=SEQ_MOD - 10)
    conv.handshake(0.0)
    conv.send("c", bytes(100), at=0.1)
    conv.close("c", at=1.0)
    f = written(tmp_path, conv)
    data = [x for x in from_client(f) if x["len"] == 100][0]
    assert data["seq"] == SEQ_MOD - 9
    server_ack = [x for x in from_server(f) if x["flags"] == ACK][0]
    assert server_ack["ack"] == 91  # (2^32 - 10 + 1 + 100) mod 2^32
    assert f[-2]["ack"] == 92       # ... and the FIN on top


def test_large_send_is_segmented_at_mss_minus_timestamps(tmp_path):
    conv = http_exchange()
    conv.send("s", bytes(30_000), at=1.0)
    f = written(tmp_path, conv)
    big = [x for x in from_server(f) if x["ts"] >= 1.0 + 1_700_000_000 and x["len"]]
    assert sum(x["len"] for x in big) == 30_000
    assert max(x["len"] for x in big) == 1460 - 12
    seqs = [x["seq"] for x in big]
    assert seqs == sorted(seqs) and all(b - a == 1448 for a, b in zip(seqs, seqs[1:]))
    assert from_client(f)[-1]["ack"] == (big[-1]["seq"] + big[-1]["len"]) % SEQ_MOD


# ----- delayed ACKs, timestamps, IP IDs, options ----------------------------------------

def test_lone_segment_is_acked_after_the_delayed_ack_time(tmp_path):
    conv = Conversation(CLIENT, SERVER, rtt=0.020)
    conv.handshake(0.0)
    conv.send("c", b"x" * 10, at=1.0)
    f = written(tmp_path, conv)
    assert f[-1]["sport"] == SERVER[1] and f[-1]["flags"] == ACK
    assert f[-1]["ts"] - f[-2]["ts"] == pytest.approx(0.020 + 0.040)


def test_second_segment_is_acked_at_once(tmp_path):
    conv = Conversation(CLIENT, SERVER, rtt=0.020)
    conv.handshake(0.0)
    conv.send("c", bytes(2000), at=1.0)
    f = written(tmp_path, conv)
    acks = [x for x in from_server(f) if x["ts"] > 1_700_000_001]
    assert len(acks) == 1 and acks[0]["ts"] - f[-2]["ts"] == pytest.approx(0.020, abs=1e-4)


def test_quick_response_piggybacks_the_ack(tmp_path):
    conv = Conversation(CLIENT, SERVER, rtt=0.020)
    conv.handshake(0.0)
    conv.send("c", b"GET", at=1.0)
    conv.send("s", b"200", at=1.025)  # before the server's 40 ms delayed ACK
    f = written(tmp_path, conv)
    server_after = [x for x in from_server(f) if x["ts"] > 1_700_000_001]
    assert [x["len"] for x in server_after] == [3]


def test_timestamps_echo_the_peer_and_tick_at_1khz(tmp_path):
    conv = http_exchange()
    conv.keepalive("c", at=60.3)
    f = written(tmp_path, conv)
    assert f[0]["tsecr"] == 0 and f[1]["tsecr"] == f[0]["tsval"]
    probe, answer = f[-2], f[-1]
    assert answer["tsecr"] == probe["tsval"]
    assert probe["tsval"] - f[0]["tsval"] == 60_300


def test_ip_ids_count_per_host_and_linux_synack_has_id_zero(tmp_path):
    f = written(tmp_path, http_exchange())
    client_ids = [x["ip_id"] for x in from_client(f)]
    assert all((b - a) % 65536 == 1 for a, b in zip(client_ids, client_ids[1:]))
    server = from_server(f)
    assert server[0]["ip_id"] == 0 and server[0]["flags"] == SYN | ACK
    assert all((b["ip_id"] - a["ip_id"]) % 65536 == 1 for a, b in zip(server[1:], server[2:]))


def test_syn_options_and_window_scaling(tmp_path):
    conv = Conversation(CLIENT, SERVER, mss=8961)
    conv.handshake(0.0)
    f = written(tmp_path, conv)
    for syn in f[:2]:
        assert int.from_bytes(syn["opts"][dpkt.tcp.TCP_OPT_MSS], "big") == 8961
        assert dpkt.tcp.TCP_OPT_SACKOK in syn["opts"]
        assert syn["opts"][dpkt.tcp.TCP_OPT_WSCALE] == b"\x07"
        assert syn["win"] == 64240  # never scaled on SYN
    assert f[2]["win"] == 64256 >> 7


def test_windows_client_has_no_timestamps_and_ttl_128(tmp_path):
    conv = Conversation(CLIENT, SERVER, client_os="windows")
    conv.handshake(0.0)
    conv.send("c", b"x", at=1.0)
    f = written(tmp_path, conv)
    assert f[0]["ttl"] == 128 and f[1]["ttl"] == 64 - 12
    assert all(x["tsval"] is None for x in f)
    assert f[-1]["ts"] - f[-2]["ts"] == pytest.approx(0.020 + 0.040)  # Linux server delack


# ----- keepalives, zero window, RSTs -----------------------------------------------------

@pytest.mark.parametrize("garbage", [False, True])
def test_keepalive_shape(tmp_path, garbage):
    conv = http_exchange()
    conv.keepalive("c", at=60.0, garbage_byte=garbage)
    f = written(tmp_path, conv)
    probe, answer = f[-2], f[-1]
    data_c = [x for x in from_client(f) if x["len"] and x is not probe][-1]
    snd_nxt = (data_c["seq"] + data_c["len"]) % SEQ_MOD
    assert probe["seq"] == (snd_nxt - 1) % SEQ_MOD
    assert probe["len"] == (1 if garbage else 0) and probe["flags"] == ACK
    assert answer["flags"] == ACK and answer["ack"] == snd_nxt
    assert answer["ts"] - probe["ts"] == pytest.approx(0.020)


def test_windows_keepalive_defaults_to_one_byte(tmp_path):
    conv = Conversation(CLIENT, SERVER, client_os="windows")
    conv.handshake(0.0)
    conv.keepalive("c", at=7200.0)
    assert written(tmp_path, conv)[-2]["len"] == 1


def test_keepalive_timer_follows_linux_rules(tmp_path):
    conv = http_exchange()
    conv.keepalive_timer("c", idle=60.0, until=400.0)
    f = written(tmp_path, conv)
    probes = [x for x in from_client(f) if x["ts"] > 1_700_000_001]
    last_rx = [x for x in from_server(f) if x["ts"] < 1_700_000_001][-1]["ts"]
    assert probes[0]["ts"] - last_rx == pytest.approx(60.0)
    gaps = [b["ts"] - a["ts"] for a, b in zip(probes, probes[1:])]
    assert all(g == pytest.approx(60.020) for g in gaps)  # idle restarts at each answer
    dead = http_exchange()
    dead.keepalive_timer("c", idle=60.0, until=1000.0, intvl=10.0, cnt=3, answered=False)
    f = written(tmp_path, dead, name="dead.pcap")
    tail = from_client(f)[-4:]
    assert [round(b["ts"] - a["ts"], 6) for a, b in zip(tail, tail[1:])] == [10.0, 10.0, 10.0]
    assert tail[-1]["flags"] & RST and from_server(f)[-1]["ts"] < tail[0]["ts"]


def test_zero_window_probe_is_snd_una_minus_one(tmp_path):
    conv = http_exchange()
    conv.zero_window("c", at=1.0)
    conv.zero_window_probe("s", at=1.3)
    conv.window_update("c", at=2.0)
    f = written(tmp_path, conv)
    zw, probe, answer, update = f[-4:]
    assert zw["win"] == 0 and answer["win"] == 0 and update["win"] > 0
    assert probe["seq"] == (zw["ack"] - 1) % SEQ_MOD and probe["len"] == 0


def test_forged_rst_differs_from_the_server(tmp_path):
    conv = http_exchange()
    conv.fin("c", at=500.0, ack=None)
    conv.rst("s", at=500.02, ttl=254)
    f = written(tmp_path, conv)
    fin, rst = f[-2], f[-1]
    real_server = from_server(f)[-2]
    assert rst["flags"] == RST and rst["ttl"] == 254 != real_server["ttl"]
    assert rst["ip_id"] == 0 and rst["opts"] == {} and rst["seq"] == fin["ack"]


def test_genuine_rst_is_rst_ack_at_snd_nxt(tmp_path):
    conv = http_exchange()
    conv.rst("s", at=2.0)
    f = written(tmp_path, conv)
    rst, resp = f[-1], [x for x in from_server(f) if x["len"]][-1]
    assert rst["flags"] == RST | ACK and rst["seq"] == (resp["seq"] + resp["len"]) % SEQ_MOD
    assert rst["ttl"] == resp["ttl"] and (rst["ip_id"] - resp["ip_id"]) % 65536 == 1


# ----- capture artefacts -----------------------------------------------------------------

def test_duplicate_capture_is_byte_identical(tmp_path):
    conv = http_exchange()
    conv.duplicate(delay=0.0005)
    path = tmp_path / "dup.pcap"
    write_pcap(path, conv)
    with open(path, "rb") as fh:
        recs = list(dpkt.pcap.Reader(fh))
    (t1, b1), (t2, b2) = recs[-2], recs[-1]
    assert b1 == b2 and t2 - t1 == pytest.approx(0.0005, abs=1e-6)


def test_mid_stream_capture_has_no_handshake(tmp_path):
    conv = Conversation(CLIENT, SERVER)
    conv.handshake(0.0, captured=False)
    conv.send("c", b"more data", at=5.0)
    f = written(tmp_path, conv)
    assert not any(x["flags"] & SYN for x in f)
    assert f[0]["len"] == 9 and f[1]["ack"] == (f[0]["seq"] + 9) % SEQ_MOD


def test_port_reuse_gets_a_new_isn(tmp_path):
    first = http_exchange()
    first.close("c", at=1.0)
    second = Conversation(CLIENT, SERVER, t0=1_700_000_000.0 + 70, seed=1)
    second.handshake(0.0)
    f = written(tmp_path, first, second)
    syns = [x for x in f if x["flags"] == SYN]
    assert len(syns) == 2 and syns[0]["seq"] != syns[1]["seq"]


def test_ipv6_conversation(tmp_path):
    conv = Conversation(("2001:db8::10", 50123), ("2001:db8::20", 80), mss=1440)
    conv.handshake(0.0)
    conv.send("c", b"hi", at=0.1)
    path = tmp_path / "v6.pcap"
    write_pcap(path, conv)
    with open(path, "rb") as fh:
        recs = [dpkt.ethernet.Ethernet(b).data for _, b in dpkt.pcap.Reader(fh)]
    assert all(isinstance(ip, dpkt.ip6.IP6) for ip in recs)
    assert recs[0].hlim == 64 and recs[1].hlim == 52


def test_same_script_same_bytes_and_seed_changes_isn(tmp_path):
    a, b = tmp_path / "a.pcap", tmp_path / "b.pcap"
    write_pcap(a, http_exchange())
    write_pcap(b, http_exchange())
    assert a.read_bytes() == b.read_bytes()
    assert read_back(a)[0]["seq"] != written(tmp_path, http_exchange(seed=7))[0]["seq"]


def test_raw_ip_linktype(tmp_path):
    path = tmp_path / "raw.pcap"
    write_pcap(path, http_exchange(), linktype="raw")
    with open(path, "rb") as fh:
        reader = dpkt.pcap.Reader(fh)
        assert reader.datalink() == 101
        first = next(iter(reader))[1]
    assert dpkt.ip.IP(first).data.flags == SYN


# ----- tshark agrees ---------------------------------------------------------------------

CLEAN_FILTER = "_ws.malformed or tcp.analysis.ack_lost_segment or tcp.analysis.lost_segment"


@needs_tshark
def test_tshark_sees_a_clean_conversation_and_flags_keepalives(tmp_path):
    conv = http_exchange()
    conv.send("s", bytes(40_000), at=0.5)
    conv.keepalive("c", at=60.5)
    conv.keepalive("c", at=120.5, garbage_byte=True)
    conv.close("c", at=130.0)
    path = tmp_path / "clean.pcap"
    write_pcap(path, conv)
    assert tshark_fields(path, "frame.number", display_filter=CLEAN_FILTER) == []
    flagged = [int(r[0]) for r in tshark_fields(path, "frame.number",
                                                display_filter="tcp.analysis.keep_alive")]
    ours = [f["frame"] for f in read_back(path)
            if f["sport"] == CLIENT[1] and 60 < f["ts"] - 1_700_000_000 < 121]
    assert flagged == ours and len(flagged) == 2
    answers = tshark_fields(path, "frame.number", display_filter="tcp.analysis.keep_alive_ack")
    assert [int(r[0]) for r in answers] == [n + 1 for n in ours]


@needs_tshark
def test_tshark_flags_the_retransmissions_and_reused_port(tmp_path):
    conv = http_exchange()
    conv.retransmit_schedule("c", b"SET k v\r\n", first_at=10.0, retries=5)
    again = Conversation(CLIENT, SERVER, t0=1_700_000_000.0 + 100, seed=3)
    again.handshake(0.0)
    path = tmp_path / "rtx.pcap"
    write_pcap(path, conv, again)
    rows = tshark_fields(path, "frame.time_relative", display_filter="tcp.analysis.retransmission")
    assert [round(float(r[0]) - 10.0, 6) for r in rows] == linux_backoff(retries=5)[0]
    assert len(tshark_fields(path, "frame.number", display_filter="tcp.analysis.reused_ports")) == 1


# ----- the field-report samples ------------------------------------------------------------

def _field_reports_module():
    path = ROOT / "sample_pcaps" / "crafted" / "make_field_reports.py"
    spec = importlib.util.spec_from_file_location("make_field_reports", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_field_report_captures_are_deterministic_and_timed(tmp_path):
    mod = _field_reports_module()
    made = mod.main(tmp_path / "a")
    again = mod.main(tmp_path / "b")
    assert [p.name for p in made] == [p.name for p in again] and len(made) == 6
    assert all(p.read_bytes() == q.read_bytes() for p, q in zip(made, again))
    redis = read_back(tmp_path / "a" / "redis_retries2_924s.pcap")
    old = [f for f in redis if f["sport"] == 40112 and f["len"] == 39]
    assert [round(f["ts"] - old[0]["ts"], 6) for f in old[1:]] == linux_backoff()[0]
    new_syn = [f for f in redis if f["sport"] == 40118][0]
    assert new_syn["ts"] - old[0]["ts"] == pytest.approx(924.6 + 0.0015)
    sse = read_back(tmp_path / "a" / "sse_proxy_cut_15s.pcap")
    req = [f for f in sse if f["sport"] == 52101 and f["len"]][0]
    cut = [f for f in sse if f["sport"] == 8080 and f["flags"] & FIN][0]
    assert cut["ts"] - req["ts"] == pytest.approx(15.0 + 0.025)  # 15 s at the proxy + RTT


@needs_tshark
def test_field_report_captures_are_clean_in_tshark(tmp_path):
    for path in _field_reports_module().main(tmp_path):
        assert tshark_fields(path, "frame.number", display_filter=CLEAN_FILTER) == [], path.name
