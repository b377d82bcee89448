"""Odd but valid captures: analysed as far as they make sense, never a crash.

Crafted packet by packet with scapy where no tool makes them on demand."""
from __future__ import annotations

import struct

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrHopByHop, Jumbo
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import wrpcap

from capanalyze.craft import Conversation
from capanalyze.pipeline import Settings, analyze

CLIENT, SERVER = ("192.0.2.10", 50000), ("198.51.100.20", 80)


def segment(flags, seq, ack=0, payload=b"", t=0.0, src=CLIENT, dst=SERVER, options=()):
    pkt = Ether() / IP(src=src[0], dst=dst[0], id=1) / TCP(
        sport=src[1], dport=dst[1], flags=flags, seq=seq, ack=ack, options=list(options))
    if payload:
        pkt = pkt / Raw(payload)
    pkt.time = 1_700_000_000 + t
    return pkt


def test_merged_capture_with_out_of_order_timestamps_is_counted_and_analysed(tmp_path):
    a = Conversation(client=CLIENT, server=SERVER, seed=1)
    a.handshake(at=0.0)
    a.send("c", b"GET / HTTP/1.1\r\n\r\n", at=0.1)
    b = Conversation(client=("192.0.2.11", 50001), server=SERVER, seed=2, t0=1_699_999_990.0)
    b.handshake(at=0.0)
    path = tmp_path / "merged.pcap"
    wrpcap(str(path), a.packets + b.packets)   # appended, not merged by time
    result = analyze(path, Settings(keep_packets=True))
    assert result.info.out_of_order_ts == 1
    assert result.info.records == len(a.packets) + len(b.packets)
    assert len(result.flows) == 2 and set(result.flows["handshake"]) == {True}
    assert result.packets["frame"].tolist() == list(range(1, result.info.records + 1))


@pytest.mark.parametrize("chunk_bytes", [64, 8 << 20])
def test_a_step_back_in_time_between_two_blocks_is_counted(tmp_path, chunk_bytes):
    """The reader counts a time earlier than the record before once, whether the two
    records are walked together or apart (64-byte blocks: every record alone)."""
    a = Conversation(client=CLIENT, server=SERVER, seed=1)
    a.handshake(at=0.0)
    b = Conversation(client=("192.0.2.11", 50001), server=SERVER, seed=2, t0=1_699_999_990.0)
    b.handshake(at=0.0)
    path = tmp_path / "merged.pcap"
    wrpcap(str(path), a.packets + b.packets)
    info = analyze(path, Settings(chunk_bytes=chunk_bytes)).info
    times = [float(p.time) for p in a.packets + b.packets]
    assert info.out_of_order_ts == 1
    assert info.first_ts == pytest.approx(min(times), abs=1e-6)
    assert info.last_ts == pytest.approx(max(times), abs=1e-6)


def test_ipv6_jumbogram_takes_its_length_from_the_wire(tmp_path):
    payload = b"x" * 1000
    pkt = Ether() / IPv6(src="2001:db8::1", dst="2001:db8::2", plen=0) / \
        IPv6ExtHdrHopByHop(options=[Jumbo(jumboplen=1000 + 20 + 8)]) / \
        TCP(sport=50000, dport=80, flags="PA", seq=1, ack=1) / Raw(payload)
    pkt.time = 1_700_000_000
    path = tmp_path / "jumbo.pcap"
    wrpcap(str(path), [pkt])
    result = analyze(path, Settings(keep_packets=True))
    row = result.packets.iloc[0]
    assert result.info.tcp_packets == 1
    assert row.src == "2001:db8::1" and row.payload_len == 1000


def test_syn_fin_and_empty_psh_segments_are_kept_with_their_flags(tmp_path):
    pkts = [segment("SF", 1000, t=0.0), segment("PA", 2000, 1, t=0.1),
            segment("FPU", 3000, 1, t=0.2), segment("", 4000, 0, t=0.3)]
    path = tmp_path / "flags.pcap"
    wrpcap(str(path), pkts)
    result = analyze(path, Settings(keep_packets=True))
    assert result.packets["flags"].tolist() == ["SF", "P.", "FPU", "none"]
    assert result.info.tcp_packets == 4


def test_tcp_options_with_lying_lengths_decode_what_is_there(tmp_path):
    good = segment("S", 1, options=[("MSS", 1460), ("WScale", 7)])
    raw = bytearray(bytes(good))
    tcp_at = 14 + 20
    # Options start at tcp_at + 20: MSS (kind 2, len 4), NOP?, WScale (kind 3, len 3).
    raw[tcp_at + 21] = 40          # MSS option claims 40 bytes: runs past the header
    zero = bytearray(bytes(good))
    zero[tcp_at + 21] = 0          # a zero length would loop forever if trusted
    path = tmp_path / "options.pcap"
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i, frame in enumerate((raw, zero)):
            f.write(struct.pack("<IIII", 1_700_000_000 + i, 0, len(frame), len(frame)))
            f.write(frame)
    result = analyze(path, Settings(keep_packets=True))
    assert result.info.tcp_packets == 2
    assert (result.packets["mss"] == -1).all()   # an option that cannot be true is absent
