"""Two vantages of the same connections, through NAT: matched on the client's ISN, and
where no handshake was captured on the server port, the start time and the bytes the
client sent, only when exactly one connection of the other side fits."""
from __future__ import annotations

from pathlib import Path

from helpers import diagnose_json

from capanalyze.craft import Conversation, write_pcap
from capanalyze.pipeline import Settings, analyze
from capanalyze.report import build
from capanalyze.vantage import match_report

T0 = 1_700_000_000.0


def _midstream(client: tuple[str, int], port: int, sent: int, start: float, seed: int) -> Conversation:
    """A connection whose handshake happened before the capture started."""
    conv = Conversation(client=client, server=("203.0.113.9", port), rtt=0.02, t0=start, seed=seed)
    conv.handshake(at=0.0, captured=False)
    conv.send("c", b"x" * sent, at=0.1)
    conv.send("s", b"ok", at=0.2)
    return conv


def test_connections_without_handshake_match_on_port_start_and_bytes(tmp_path):
    # (server port, bytes the client sends, start): what NAT leaves alone
    plan = [(443, 100, 0.0), (443, 200, 0.5), (8443, 100, 1.0), (443, 300, 30.0), (443, 400, 60.0)]
    inside = [_midstream(("10.0.0.5", 40000 + i), port, sent, T0 + at, seed=i)
              for i, (port, sent, at) in enumerate(plan)]
    # behind the NAT 50 ms later, the last one twice within 2 s: it fits neither alone
    outside = [_midstream(("198.51.100.7", 60000 + i), port, sent, T0 + at + 0.05, seed=100 + i)
               for i, (port, sent, at) in enumerate(plan)]
    outside.append(_midstream(("198.51.100.7", 61000), 443, 400, T0 + 60.5, seed=200))
    a, b = tmp_path / "inside.pcap", tmp_path / "outside.pcap"
    write_pcap(a, *inside)
    write_pcap(b, *outside)
    report = diagnose_json(str(a), str(b))
    assert sorted(tuple(m["flows"]) for m in report["matches"]) == [(0, 0), (1, 1), (2, 2), (3, 3)]
    assert all(m["nat"] for m in report["matches"])
    assert report["matches"][0]["note"] == ("10.0.0.5:40000 -> 203.0.113.9:443 in capture 0 is "
                                            "198.51.100.7:60000 -> 203.0.113.9:443 in capture 1 "
                                            "(rewritten by NAT)")


def test_matching_the_same_vantages_again_adds_their_evidence_once():
    crafted = Path(__file__).resolve().parents[1] / "sample_pcaps" / "crafted"
    analyses = [analyze(crafted / f"nat_gateway_350s{end}.pcap", Settings())
                for end in ("", ".server")]
    first = build(analyses, match_report(analyses))
    crossed = [s for s in first["stalls"] if any("other vantage" in e for e in s["evidence"])]
    assert crossed   # the pair's stalls do carry what the other side saw
    assert build(analyses, match_report(analyses)) == first   # a notebook may match again
