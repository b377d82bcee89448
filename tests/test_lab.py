"""Real-kernel captures from the namespace lab (sample_pcaps/lab/make_lab.py), diagnosed
through the real command line, alone and as client+server vantage pairs.

The lab scales cloud timeouts down (conntrack established timeout 20 s for a 350 s
NAT/NLB), so the user's knowledge of the timeout is passed as --idle-timeout 20.
Server-side ports are rewritten by the lab's NAT; manifest.json maps them.
"""
from __future__ import annotations

import json
import re

import pytest

from helpers import SAMPLES, diagnose_json

LAB = SAMPLES / "lab"
MANIFEST = json.loads((LAB / "manifest.json").read_text())["scenarios"]
TIMEOUT = ["--idle-timeout", "20"]

EVICT, MISSING, SLOW = "silent_middlebox_eviction", "missing_keepalive", "app_slowness"
CUT, DEAD, OK = "middlebox_cut", "peer_unreachable", "healthy"

# scenario -> (client vantage {client port: verdict}, server vantage {client port: verdict})
EXPECTED = {
    "idle_evict_drop": ({40001: EVICT}, {40001: OK}),
    "idle_evict_rst": ({40001: EVICT}, {40001: OK}),
    "long_request_no_keepalive": ({40001: MISSING}, {40001: EVICT}),
    "long_request_keepalive": ({40001: SLOW}, {40001: SLOW}),
    "slow_app": ({40001: SLOW}, {40001: SLOW}),
    "proxy_cut_fin": ({40001: CUT}, {}),
    "proxy_cut_rst": ({40001: CUT}, {}),
    "zero_window": ({40001: SLOW}, {40001: SLOW}),
    "idle_keepalive": ({40001: OK}, {40001: OK}),
    "peer_unreachable": ({40001: DEAD}, {40001: OK}),
    "mixed": ({40001: EVICT, 40002: EVICT, 40003: MISSING}, {40003: EVICT}),
}


def verdicts(report: dict, capture: int | None = None) -> dict[int, str]:
    return {int(f["client"].rsplit(":", 1)[1]): f["verdict"] for f in report["flows"]
            if capture is None or f.get("capture") == capture}


def server_port(scenario: str, client_port: int) -> int:
    return int(MANIFEST[scenario]["nat_ports"][str(client_port)])


@pytest.mark.parametrize("scenario", sorted(EXPECTED))
def test_client_vantage(scenario):
    report = diagnose_json(str(LAB / f"{scenario}.client.pcap"), *TIMEOUT)
    got = verdicts(report)
    want = EXPECTED[scenario][0]
    assert {p: got[p] for p in want} == want
    others = {p: v for p, v in got.items() if p not in want}
    assert set(others.values()) <= {OK}, others   # no false alarm on the rest


@pytest.mark.parametrize("scenario", sorted(EXPECTED))
def test_server_vantage(scenario):
    report = diagnose_json(str(LAB / f"{scenario}.server.pcap"), *TIMEOUT)
    got = verdicts(report)
    want = {server_port(scenario, p): v for p, v in EXPECTED[scenario][1].items()}
    assert {p: got[p] for p in want} == want
    if scenario.startswith("proxy_cut"):  # the proxy's own upstream leg is cut too
        assert set(got.values()) == {CUT}
    else:
        assert set(v for p, v in got.items() if p not in want) <= {OK}


@pytest.mark.parametrize("scenario", ["idle_evict_drop", "long_request_no_keepalive", "mixed"])
def test_vantage_pairs_are_matched_through_the_nat(scenario):
    report = diagnose_json(str(LAB / f"{scenario}.client.pcap"),
                           str(LAB / f"{scenario}.server.pcap"), *TIMEOUT)
    flows = {(f["capture"], f["flow_id"]): f for f in report["flows"]}
    pairs = {(flows[(0, a)]["client"], flows[(1, b)]["client"]) for a, b in (m["flows"] for m in report["matches"])}
    for client_port, nat_port in MANIFEST[scenario]["nat_ports"].items():
        assert (f"192.0.2.2:{client_port}", f"198.51.100.1:{nat_port}") in pairs
    assert all(m["nat"] for m in report["matches"])


def test_lost_retransmissions_are_named_with_both_vantages():
    report = diagnose_json(str(LAB / "idle_evict_drop.client.pcap"),
                           str(LAB / "idle_evict_drop.server.pcap"), *TIMEOUT)
    stall = [s for s in report["stalls"] if s.get("capture") == 0][0]
    assert stall["class"] == EVICT
    assert any("7 retransmissions never reached the server" in e for e in stall["evidence"])
    assert stall["backoff"]["retries2"] == 6 and stall["backoff"]["ended_by"] == "gave_up"


def test_client_hang_pairs_with_the_black_holed_answer():
    report = diagnose_json(str(LAB / "long_request_no_keepalive.client.pcap"),
                           str(LAB / "long_request_no_keepalive.server.pcap"), *TIMEOUT)
    client = [s for s in report["stalls"] if s.get("capture") == 0][0]
    assert client["class"] == MISSING and "answer_black_holed" in client["factors"]


def test_forged_rst_from_the_router_is_told_by_its_ttl():
    report = diagnose_json(str(LAB / "idle_evict_rst.client.pcap"), *TIMEOUT)
    stall = report["stalls"][0]
    assert "forged_rst" in stall["factors"]
    assert any("TTL 64" in e and "TTL 63" in e for e in stall["evidence"])


def test_zero_window_probes_are_not_keepalives_on_a_real_kernel():
    report = diagnose_json(str(LAB / "zero_window.client.pcap"), *TIMEOUT)
    assert report["flows"][0]["keepalives"] == 0
    stall = report["stalls"][0]
    assert "zero_window" in stall["factors"] and stall["waiting"] == "server"
    assert 9 < stall["duration_s"] < 11


def test_every_frame_the_evidence_names_comes_with_its_time():
    """An on-call engineer lines the evidence up with application logs by time: five
    kinds of evidence line named a frame without its time (the request ACKed, the
    answer or close after a slow server, the window reopening, the client giving up,
    the packet a RST answered)."""
    named = 0
    for path in sorted(LAB.glob("*.pcap")):
        for stall in diagnose_json(str(path), *TIMEOUT)["stalls"]:
            for line in stall["evidence"]:
                for frame in re.findall(r"\bframe (\d+)\b(?! \(\d\d:\d\d:\d\d\.\d{3}\))", line):
                    pytest.fail(f"{path.name}: frame {frame} without its time: {line}")
                named += len(re.findall(r"\bframe \d+ \(", line))
    assert named >= 30
