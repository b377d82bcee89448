"""Shared helpers for tests on crafted captures: write, analyse, hand-made segments."""
from __future__ import annotations

import itertools
import shutil
import sys
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from capanalyze.craft import Conversation, write_pcap
from capanalyze.pipeline import Settings, analyze

# `from helpers import ...` in the test modules, whatever the import mode
sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture
def need_tshark():
    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed")


@pytest.fixture
def need_shared():
    from helpers import shared_pcaps

    if not shared_pcaps():
        pytest.skip("the shared captures (../shared/pcaps/ppa) are not present")


@pytest.fixture
def analyze_capture(tmp_path):
    """analyze_capture(*conversations_or_packet_lists, **Settings fields) -> Analysis
    of a pcap written into tmp_path (keep_packets=True unless told otherwise)."""
    numbers = itertools.count()

    def run(*sources, **settings):
        path = tmp_path / f"capture{next(numbers)}.pcap"
        write_pcap(path, *sources)
        settings.setdefault("keep_packets", True)
        return analyze(path, Settings(**settings))

    return run


@pytest.fixture
def segment():
    """segment(conv, "c"|"s", at, flags, seq, ack=0, payload=b"", ...) -> one scapy
    packet in a Conversation's name, for what its scripting API cannot say (dup ACKs,
    resent segments, SYN retries). seq/ack are relative to the ISNs like conv's own;
    the sender's IP ID counter advances as a real host's would."""

    def build(conv: Conversation, name: str, at: float, flags: str, seq: int, ack: int = 0,
              payload: bytes = b"", *, window: int = 502, ip_id: int | None = None,
              ttl: int | None = None):
        side, peer = conv.side(name), conv.peer(name)
        if ip_id is None:
            ip_id, side.ip_id = side.ip_id, (side.ip_id + 1) & 0xFFFF
        tcp = TCP(sport=side.port, dport=peer.port, flags=flags, seq=conv.seq(name, seq),
                  ack=conv.seq(peer.name, ack) if "A" in flags else 0, window=window)
        pkt = Ether() / IP(src=side.ip, dst=peer.ip, ttl=ttl or side.ttl, id=ip_id,
                           flags="DF") / tcp
        if payload:
            pkt = pkt / Raw(payload)
        pkt = pkt.__class__(bytes(pkt))
        pkt.time = conv.t0_ns / 1e9 + at
        return pkt

    return build
