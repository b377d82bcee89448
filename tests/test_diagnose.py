"""Diagnosis rules on crafted pools of connections: the eviction bracket across a
capture, culprits and remedies that follow from it, and no false alarms."""
from __future__ import annotations

import pytest

from capanalyze.craft import Conversation

TIMEOUT = 350.0
IDLES = [60, 120, 200, 300, 340, 360, 420, 600, 900]


def pooled(port: int, idle: float, seed: int) -> Conversation:
    """A pooled connection: one exchange, `idle` seconds of silence, then a request
    that a 350 s NAT/NLB timeout black-holes when the idle outlived it."""
    conv = Conversation(client=("10.0.1.23", port), server=("203.0.113.50", 443), rtt=0.030,
                        t0=1_700_000_000.0 + seed, seed=seed)
    conv.handshake(at=0.0)
    conv.send("c", b"GET /a HTTP/1.1\r\n\r\n", at=0.1)
    conv.send("s", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", at=0.2)
    again = 0.3 + idle
    if idle <= TIMEOUT:
        conv.send("c", b"GET /b HTTP/1.1\r\n\r\n", at=again)
        conv.send("s", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", at=again + 0.1)
    else:
        conv.retransmit_schedule("c", b"GET /b HTTP/1.1\r\n\r\n", again, retries=8)
    return conv


@pytest.fixture
def pool(analyze_capture):
    convs = [pooled(40000 + i, idle, i) for i, idle in enumerate(IDLES)]
    return analyze_capture(*convs)


def test_the_bracket_contains_350_s_and_names_the_aws_entries(pool):
    bracket = pool.bracket
    assert bracket["low_s"] == pytest.approx(340, abs=1)
    assert bracket["high_s"] == pytest.approx(360, abs=1)
    assert bracket["low_s"] < TIMEOUT <= bracket["high_s"]
    assert {"AWS Network Load Balancer", "AWS NAT gateway"} <= set(bracket["matches"])
    assert not any("Azure" in m or "GCP" in m for m in bracket["matches"])


def test_every_connection_idle_beyond_the_timeout_is_an_eviction_and_none_below(pool):
    verdict = dict(zip(pool.flows["client_port"], pool.flows["verdict"]))
    for i, idle in enumerate(IDLES):
        want = "silent_middlebox_eviction" if idle > TIMEOUT else "healthy"
        assert verdict[40000 + i] == want, (idle, verdict[40000 + i])


def test_culprits_and_keepalive_follow_the_bracket(pool):
    for stall in pool.stalls.itertuples():
        assert [c["timeout_s"] for c in stall.culprits] == [350, 350, 350]
        # Keepalive below the idle that survived (340 s), so below any timeout in the bracket.
        assert "TCP_KEEPIDLE=" in stall.remedy
        idle = int(stall.remedy.split("TCP_KEEPIDLE=")[1].split(",")[0])
        assert 0 < idle < 340
        assert {"no_keepalive", "retries2_exhausted"} & set(stall.factors)


def test_user_given_timeout_drives_missing_keepalive(analyze_capture):
    """A client waiting on a slow answer past the timeout the user knows of, no probes,
    capture ends: missing_keepalive only when the wait outlives that timeout."""
    conv = Conversation(client=("10.0.1.23", 41000), server=("203.0.113.50", 443), rtt=0.03)
    conv.handshake(at=0.0)
    conv.send("c", b"POST /report HTTP/1.1\r\n\r\n", at=0.1)
    later = Conversation(client=("10.0.1.23", 41001), server=("203.0.113.50", 443), rtt=0.03,
                         t0=1_700_000_120.0, seed=2)   # the capture runs on to 120 s
    later.handshake(at=0.0)
    default = analyze_capture(conv, later, min_stall=5.0)
    assert "missing_keepalive" not in set(default.stalls["class"])   # 120 s < 240 s (Azure)
    told = analyze_capture(conv, later, idle_timeout=60.0, min_stall=5.0)
    stall = told.stalls[told.stalls["class"] == "missing_keepalive"].iloc[0]
    assert stall.client.endswith(":41000") and "capture_ended" in stall.factors
    assert stall.idle_before_s == pytest.approx(120, abs=0.2)


def stream(port: int, send_times: list[float], close_at: float, seed: int) -> Conversation:
    """A server streaming small messages at the given times, then closing (FIN)."""
    conv = Conversation(client=("192.168.1.34", port), server=("10.20.0.15", 8080), rtt=0.002,
                        t0=1_700_000_000.0 + 100 * seed, seed=seed)
    conv.handshake(at=0.0)
    conv.send("c", b"GET /events HTTP/1.1\r\n\r\n", at=0.01)
    for t in send_times:
        conv.send("s", b"data: tick\n\n", at=t)
    conv.fin("s", at=close_at)
    return conv


def test_a_cut_needs_a_steady_cadence_not_just_a_round_age(analyze_capture):
    regular = stream(52000, [0.5 + k for k in range(7)], close_at=8.0, seed=1)
    bursty = stream(52001, [0.3, 0.4, 2.9, 3.0, 3.1, 6.6, 7.7], close_at=8.0, seed=2)
    result = analyze_capture(regular, bursty)
    verdict = dict(zip(result.flows["client_port"], result.flows["verdict"]))
    assert verdict == {52000: "middlebox_cut", 52001: "healthy"}
    flows = result.flows.set_index("client_port")
    assert flows.loc[52000, "server_data_interval_s"] == pytest.approx(1.0, abs=0.01)
    assert flows.loc[52000, "server_data_cv"] < 0.05 < flows.loc[52001, "server_data_cv"]
    stall = result.stalls.iloc[0]
    assert any("every 1.00 s" in e for e in stall.evidence)


def test_a_keepalive_restarts_the_middlebox_timer(analyze_capture):
    """Keepalive probes are traffic to a middlebox's idle timer: a connection probed at
    100 s, then silent 300 s until its next request was black-holed, was evicted after
    300 s, not 400 s. The whole gap counted: the bracket said 'died after >= 400 s'
    and AWS's 350 s timer was named, which would not have fired yet."""
    conv = pooled(40001, 0.0, 1)   # one exchange, then the probe and the silence
    conv.keepalive("c", at=100.0)
    conv.retransmit_schedule("c", b"GET /b HTTP/1.1\r\n\r\n", 400.0, retries=8)
    stall = analyze_capture(conv).stalls.iloc[0]
    assert stall["class"] == "silent_middlebox_eviction"
    assert stall["idle_before_s"] == pytest.approx(300.0, abs=0.01)
    assert {c["timeout_s"] for c in stall["culprits"]} == {240}
    assert "the last one 300.0 s (5 min 0 s) before the idle ended" in stall["evidence"][0]
    assert "black-holed after 300.0 s (5 min 0 s) idle" in stall["evidence"][-1]
    # the fix: the probes were there, too far apart
    assert "keepalive_too_sparse" in stall["factors"] and "no_keepalive" not in stall["factors"]
    assert stall["remedy"].startswith("Keepalive probes were sent, but the last one 300.0 s")
    assert "idle time below 240 s" in stall["remedy"]


def test_a_black_hole_after_a_kept_alive_idle_is_an_unreachable_peer(analyze_capture):
    """Probes every 75 s kept the path's state alive; then a segment went unanswered
    for 15 retransmissions: no middlebox timer ran out, so the peer (or the path) died.
    Counting the whole 300 s gap, it was called an eviction."""
    conv = pooled(40002, 0.0, 2)
    for at in (75.0, 150.0, 225.0, 300.0):
        conv.keepalive("c", at=at)
    conv.retransmit_schedule("c", b"GET /b HTTP/1.1\r\n\r\n", 300.5)
    stall = analyze_capture(conv).stalls.iloc[0]
    assert stall["class"] == "peer_unreachable"
    assert "4 keepalive probes kept alive" in stall["evidence"][0]
