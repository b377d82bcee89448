"""The per-direction TCP rules (capanalyze.tcpstate) on crafted captures: sequence
unwrapping, window scaling, keepalives and their look-alikes, retransmission kinds,
duplicate captures, zero windows."""
from __future__ import annotations

import io
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
from scapy.layers.inet import TCP

from capanalyze.craft import Conversation, write_pcap
from helpers import run_cli

CLIENT, SERVER = ("192.0.2.10", 50123), ("198.51.100.20", 80)
FLAGS = ["keepalive", "keepalive_ack", "retransmission", "dup_ack", "zero_window",
         "zero_window_probe", "zero_window_probe_ack", "window_full", "duplicate_capture",
         "out_of_order", "lost_segment", "ack_unseen", "window_update"]


def flagged(packets, name: str) -> list[int]:
    """Frames with an event flag set."""
    return packets.loc[packets[name], "frame"].tolist()


def frame_of(conv: Conversation, pkt) -> int:
    """1-based frame number of a packet the Conversation made (alone in the capture)."""
    return next(i for i, p in enumerate(conv.packets, start=1) if p is pkt)


def chatted(conv: Conversation) -> Conversation:
    conv.handshake(0.0)
    conv.send("c", b"GET / HTTP/1.1\r\n\r\n", at=0.1)
    conv.send("s", b"HTTP/1.1 200 OK\r\n\r\n", at=0.2)
    return conv


# ------------------------------------------------------------ sequence wrap-around
@pytest.mark.parametrize("side", ["c", "s"])
def test_sequence_wrap_around_is_unwrapped(analyze_capture, side):
    isn = {"isn_client" if side == "c" else "isn_server": 2**32 - 10}
    conv = Conversation(CLIENT, SERVER, **isn)
    conv.handshake(0.0)
    conv.send(side, b"x" * 20_000, at=0.1)
    conv.send("c" if side == "s" else "s", b"y" * 100, at=1.0)
    conv.close("c", at=2.0)
    a = analyze_capture(conv)
    p = a.packets
    sender = p[(p["dir"] == (0 if side == "c" else 1)) & (p["payload_len"] > 0)]

    assert (sender["seq"] < 2**32 - 10).any(), "the data must really cross 2^32"
    assert sender["rel_seq"].is_monotonic_increasing
    assert (sender["rel_seq"].diff().dropna() == sender["payload_len"].iloc[:-1].to_numpy()).all()
    assert sender["rel_seq"].iloc[-1] + sender["payload_len"].iloc[-1] == 20_001
    receiver = p[p["dir"] != sender["dir"].iloc[0]]
    assert receiver["rel_ack"].is_monotonic_increasing
    assert receiver["rel_ack"].max() == 20_002   # 20,000 bytes and a FIN
    assert not p[FLAGS].any().any()
    assert a.flows.loc[0, "state"] == "closed"


# ------------------------------------------------------------ window scaling
def test_window_is_scaled_once_the_handshake_negotiated_it(analyze_capture):
    a = analyze_capture(chatted(Conversation(CLIENT, SERVER)))
    p = a.packets
    syns = p["syn"]
    assert (p.loc[syns, "win"] == p.loc[syns, "window"]).all()       # never scaled
    assert (p.loc[~syns, "win"] == p.loc[~syns, "window"] * 2**7).all()  # Linux wscale 7
    assert (p.loc[~syns, "win"] == 64256).all()


def test_window_is_not_scaled_without_the_handshake(analyze_capture):
    conv = Conversation(CLIENT, SERVER)
    conv.handshake(0.0, captured=False)
    conv.send("c", b"x" * 10, at=1.0)
    conv.send("s", b"y" * 10, at=2.0)
    p = analyze_capture(conv).packets
    assert (p["window"] == 64256 >> 7).all()
    assert (p["win"] == p["window"]).all()


def test_window_is_not_scaled_when_only_one_side_offered_it(analyze_capture):
    p = analyze_capture(chatted(Conversation(CLIENT, SERVER, wscale=False))).packets
    assert (p["win"] == p["window"]).all() and (p.loc[~p["syn"], "win"] == 64256).all()


@pytest.mark.parametrize("jit", ["0", "1"])
def test_a_shift_over_14_is_used_as_14(tmp_path, jit):
    """RFC 7323 2.3, as Linux and Wireshark do; the packet table keeps the shift as
    sent. A shift of 128 or more used to wrap to a negative number compiled (windows
    left unscaled) and to stop the run with an internal error interpreted."""
    conv = chatted(Conversation(CLIENT, SERVER))
    syn = conv.packets[0]
    syn[TCP].options = [(k, 200 if k == "WScale" else v) for k, v in syn[TCP].options]
    del syn[TCP].chksum
    path = tmp_path / "wscale200.pcap"
    write_pcap(path, conv)
    p = pd.read_csv(io.StringIO(run_cli("packets", str(path), "-f", "csv", jit=jit).stdout))
    assert p["wscale"].tolist()[:2] == [200, 7]
    data = p[~p["syn"]]
    assert (data["win"] == data["window"] * np.where(data["dir"] == 0, 2**14, 2**7)).all()
    if shutil.which("tshark"):
        theirs = subprocess.run(["tshark", "-r", str(path), "-T", "fields", "-e", "tcp.window_size"],
                                capture_output=True, text=True, check=True).stdout.split()
        assert p["win"].tolist() == [int(w) for w in theirs]


# ------------------------------------------------------------ keepalives
def test_linux_keepalive_and_its_ack(analyze_capture):
    conv = chatted(Conversation(CLIENT, SERVER))
    probe, answer = conv.keepalive("c", at=60.0)
    s_probe, s_answer = conv.keepalive("s", at=120.0)
    a = analyze_capture(conv)
    p = a.packets

    assert flagged(p, "keepalive") == [frame_of(conv, probe), frame_of(conv, s_probe)]
    assert flagged(p, "keepalive_ack") == [frame_of(conv, answer), frame_of(conv, s_answer)]
    assert p.loc[p["keepalive"], "payload_len"].tolist() == [0, 0]
    assert not p[["retransmission", "dup_ack", "zero_window_probe"]].any().any()
    assert a.flows.loc[0, "keepalives"] == 2


def test_windows_one_byte_keepalive(analyze_capture):
    conv = chatted(Conversation(CLIENT, SERVER, client_os="windows"))
    probe, answer = conv.keepalive("c", at=30.0)
    p = analyze_capture(conv).packets
    assert bytes(probe.payload.payload.payload) == b"\x00"
    assert flagged(p, "keepalive") == [frame_of(conv, probe)]
    assert flagged(p, "keepalive_ack") == [frame_of(conv, answer)]
    assert not p["retransmission"].any()   # one byte below next_seq: not resent data


def test_linux_zero_window_probe_is_not_a_keepalive(analyze_capture):
    conv = Conversation(CLIENT, SERVER)
    conv.handshake(0.0)
    conv.send("s", b"y" * 3000, at=0.1)
    (zero,) = conv.zero_window("c", at=1.0)
    probes = conv.zero_window_probe("s", at=1.2) + conv.zero_window_probe("s", at=1.6)
    (update,) = conv.window_update("c", at=2.0)
    conv.send("s", b"z" * 100, at=2.1)
    a = analyze_capture(conv)
    p = a.packets

    assert probes[0].payload.payload.payload.__class__.__name__ == "NoPayload"  # 0 bytes
    assert flagged(p, "zero_window_probe") == [frame_of(conv, probes[0]), frame_of(conv, probes[2])]
    assert flagged(p, "zero_window_probe_ack") == [frame_of(conv, probes[1]), frame_of(conv, probes[3])]
    assert not p["keepalive"].any() and not p["keepalive_ack"].any()
    assert frame_of(conv, zero) in flagged(p, "zero_window")
    assert p.loc[p["frame"] == frame_of(conv, update), "win"].item() == 64256
    assert not p["retransmission"].any()
    assert (a.flows.loc[0, "zero_window_probes"], a.flows.loc[0, "keepalives"]) == (2, 0)


def test_segment_on_our_own_fin_sequence_is_not_a_keepalive(analyze_capture, segment):
    conv = chatted(Conversation(CLIENT, SERVER))
    conv.fin("c", at=1.0)                   # client FIN at rel seq 19, next 20
    conv.send("s", b"late answer", at=5.0)  # half-closed: the server still talks
    # a stack ACKing on its FIN's sequence number, after 4 s of silence
    odd = segment(conv, "c", 5.1, "A", 19, conv.rcv_nxt("c", 5.1))
    p = analyze_capture(conv, [odd]).packets
    row = p.loc[p["frame"] == len(p)]
    assert row["rel_seq"].item() == 19 and row["payload_len"].item() == 0
    assert not p["keepalive"].any()


def test_next_seq_minus_one_right_after_traffic_is_not_a_keepalive(analyze_capture, segment):
    conv = Conversation(CLIENT, SERVER)
    conv.handshake(0.0)
    conv.send("c", b"GET", at=0.1)          # client next seq: 4
    quick = segment(conv, "c", 0.3, "A", 3, 1)   # 0.2 s after its data
    slow = segment(conv, "c", 3.0, "A", 3, 1)    # after 2.7 s of silence
    p = analyze_capture(conv, [quick, slow]).packets
    frames = p.loc[p["rel_seq"] == 3, "frame"].tolist()
    assert len(frames) == 2
    assert flagged(p, "keepalive") == [frames[1]]


# ------------------------------------------------------------ retransmissions
def test_rto_retransmission(analyze_capture):
    conv = chatted(Conversation(CLIENT, SERVER))
    pkts = conv.retransmit_schedule("c", b"x" * 100, 1.0, delivered_on=2)
    p = analyze_capture(conv).packets
    original, *resent = [frame_of(conv, k) for k in pkts[:3]]
    assert flagged(p, "retransmission") == resent
    rows = p[p["retransmission"]]
    assert rows["retrans_kind"].tolist() == ["rto", "rto"]
    assert (rows["orig_frame"] == original).all()
    assert (rows["rel_seq"] == p.loc[p["frame"] == original, "rel_seq"].item()).all()


def test_fast_retransmission_after_three_dup_acks(analyze_capture, segment):
    conv = Conversation(CLIENT, SERVER)
    conv.handshake(0.0)
    data = [bytes([65 + i]) * 1000 for i in range(4)]
    pkts = [segment(conv, "c", 1.0 + 0.001 * i, "A", 1 + 1000 * i, 1, d)
            for i, d in enumerate(data)]                    # the first is lost
    pkts += [segment(conv, "s", 1.021 + 0.001 * i, "A", 1, 1) for i in range(4)]
    pkts += [segment(conv, "c", 1.0245, "A", 1, 1, data[0]),
             segment(conv, "s", 1.045, "A", 1, 4001)]
    a = analyze_capture(conv, pkts)
    p = a.packets
    n = len(conv.packets)
    assert flagged(p, "dup_ack") == [n + 6, n + 7, n + 8]   # the 2nd..4th ACK of 1
    assert flagged(p, "retransmission") == [n + 9]
    assert p.loc[p["retransmission"], "retrans_kind"].item() == "fast"
    assert a.flows.loc[0, "dup_acks"] == 3


def test_spurious_retransmission_of_acked_data(analyze_capture, segment):
    conv = Conversation(CLIENT, SERVER)
    conv.handshake(0.0)
    pkts = [segment(conv, "c", 1.0, "PA", 1, 1, b"q" * 100),
            segment(conv, "s", 1.02, "A", 1, 101),
            segment(conv, "c", 1.5, "PA", 1, 1, b"q" * 100)]
    p = analyze_capture(conv, pkts).packets
    assert flagged(p, "retransmission") == [len(p)]
    assert p.loc[p["retransmission"], "retrans_kind"].item() == "spurious"


def test_tail_loss_probe(analyze_capture, segment):
    conv = Conversation(CLIENT, SERVER)
    conv.handshake(0.0)
    pkts = [segment(conv, "c", 1.0, "A", 1, 1, b"r" * 100),
            segment(conv, "c", 1.001, "PA", 101, 1, b"s" * 100),
            segment(conv, "c", 1.06, "PA", 101, 1, b"s" * 100),   # tail resent after 59 ms
            segment(conv, "s", 1.08, "A", 1, 201)]
    p = analyze_capture(conv, pkts).packets
    n = len(conv.packets)
    assert flagged(p, "retransmission") == [n + 3]
    assert p.loc[p["retransmission"], "retrans_kind"].item() == "tail_probe"
    assert p.loc[p["retransmission"], "orig_frame"].item() == n + 2


def test_tail_resent_after_the_minimum_rto_is_an_rto_retransmission(analyze_capture, segment):
    conv = Conversation(CLIENT, SERVER)
    conv.handshake(0.0)
    pkts = [segment(conv, "c", 1.0, "PA", 1, 1, b"s" * 100),
            segment(conv, "c", 1.25, "PA", 1, 1, b"s" * 100)]
    p = analyze_capture(conv, pkts).packets
    assert p.loc[p["retransmission"], "retrans_kind"].tolist() == ["rto"]


# ------------------------------------------------------------ duplicate capture
def test_duplicate_capture_is_not_a_retransmission_and_changes_nothing(analyze_capture):
    def scripted(dup: bool) -> Conversation:
        conv = Conversation(CLIENT, SERVER)
        conv.handshake(0.0)
        conv.send("c", b"GET", at=0.1)
        if dup:
            conv.duplicate(index=3, delay=0.0003)   # the request, seen twice
        conv.send("s", b"OK" * 10, at=0.5)
        conv.keepalive("c", at=30.0)
        conv.send("c", b"again", at=40.0)
        return conv

    clean, doubled = analyze_capture(scripted(False)), analyze_capture(scripted(True))
    p = doubled.packets
    assert flagged(p, "duplicate_capture") == [5]
    assert p.loc[3, "ip_id"] == p.loc[4, "ip_id"] and p.loc[3, "seq"] == p.loc[4, "seq"]
    assert not p["retransmission"].any()
    assert p.loc[4, "orig_frame"] == 4

    cols = FLAGS + ["rel_seq", "rel_ack", "win", "retrans_kind"]
    others = p[~p["duplicate_capture"]].reset_index(drop=True)
    assert others[cols].equals(clean.packets[cols])
    assert doubled.gaps.drop(columns=["start_frame", "end_frame"]).equals(
        clean.gaps.drop(columns=["start_frame", "end_frame"]))


# ------------------------------------------------------------ zero window / window full
def test_window_full_when_the_sender_fills_the_advertised_window(analyze_capture):
    conv = chatted(Conversation(CLIENT, SERVER))
    conv.ack("c", at=0.5, window=2944)          # 23 << 7
    segs = conv.send("s", b"z" * 2944, at=1.0, ack=None)
    conv.ack("c", at=1.1)
    p = analyze_capture(conv).packets
    assert len(segs) == 3
    assert flagged(p, "window_full") == [frame_of(conv, segs[-1])]
    assert not p["zero_window"].any()


def test_zero_window_is_flagged_on_the_receiver_advertising_it(analyze_capture):
    conv = Conversation(CLIENT, SERVER)
    conv.handshake(0.0)
    conv.send("s", b"y" * 1000, at=0.1, ack="now")
    (zero,) = conv.zero_window("c", at=1.0)
    (update,) = conv.window_update("c", at=3.0)
    a = analyze_capture(conv)
    p = a.packets
    assert flagged(p, "zero_window") == [frame_of(conv, zero)]
    assert flagged(p, "window_update") == [frame_of(conv, update)]
    assert a.flows.loc[0, "zero_windows"] == 1
    assert len(a.zero_windows) == 1
