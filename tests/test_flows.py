"""Connections: one flow per TCP conversation, roles, the flows table (capanalyze.flows).

Every capture is crafted (capanalyze.craft) and analysed from its written bytes.
"""
from __future__ import annotations

import pandas as pd
import pytest
from helpers import SAMPLES

from capanalyze import events, flows, pipeline
from capanalyze.craft import Conversation
from capanalyze.pipeline import Settings, analyze

CLIENT, SERVER = ("192.0.2.10", 50123), ("198.51.100.20", 80)
T0 = 1_700_000_000.0


def test_both_directions_are_one_flow_with_the_flows_table_columns(analyze_capture):
    conv = Conversation(CLIENT, SERVER)
    conv.handshake(0.0)
    conv.send("c", b"GET / HTTP/1.1\r\n\r\n", at=0.1)
    conv.send("s", b"x" * 3000, at=0.3)
    conv.close("c", at=5.0)
    a = analyze_capture(conv)
    p = a.packets

    assert len(a.flows) == 1 and (p["flow_id"] == 0).all()
    from_client = p["sport"] == CLIENT[1]
    assert (p.loc[from_client, "dir"] == 0).all() and (p.loc[~from_client, "dir"] == 1).all()
    f = a.flows.loc[0]
    assert f["client"] == "192.0.2.10:50123" and f["server"] == "198.51.100.20:80"
    assert not f["role_inferred"] and f["handshake"]
    assert (f["first_frame"], f["last_frame"]) == (1, len(p))
    assert f["packets_c2s"] == from_client.sum() and f["packets_s2c"] == (~from_client).sum()
    assert (f["bytes_c2s"], f["bytes_s2c"]) == (18, 3000)
    assert f["state"] == "closed" and f["fin_from"] == "both" and f["rst_from"] == ""
    # the longest silence: the ~4.7 s before the FIN
    assert f["max_idle_s"] == pytest.approx(p["ts"].diff().max(), abs=1e-6)
    assert 4.5 < f["max_idle_s"] < 5.0


def test_port_reuse_after_fin_with_a_new_isn_is_a_new_flow(analyze_capture):
    first = Conversation(CLIENT, SERVER, seed=0)
    first.handshake(0.0)
    first.send("c", b"a" * 100, at=0.1)
    first.close("c", at=1.0)
    second = Conversation(CLIENT, SERVER, t0=T0 + 100, seed=1)
    second.handshake(0.0)
    second.send("c", b"b" * 200, at=0.1)
    assert first.c.isn != second.c.isn
    a = analyze_capture(first, second)

    assert list(a.flows["flow_id"]) == [0, 1]
    n_first = len(first.packets)
    assert (a.packets["flow_id"] == (a.packets["frame"] > n_first).astype(int)).all()
    assert list(a.flows["state"]) == ["closed", "open"]
    assert list(a.flows["bytes_c2s"]) == [100, 200]
    assert a.flows.loc[1, "first_frame"] == n_first + 1 and a.flows.loc[1, "handshake"]
    # each connection's sequence numbers are relative to its own ISN
    assert not a.packets["retransmission"].any() and not a.packets["lost_segment"].any()


@pytest.mark.parametrize("server_isn", [5, 2**31 + 5])
def test_syn_retried_with_the_same_isn_after_a_rst_stays_one_flow(analyze_capture, segment,
                                                                  server_isn):
    conv = Conversation(CLIENT, SERVER, isn_server=server_isn)
    refused_then_accepted = [
        segment(conv, "c", 0.0, "S", 0),
        segment(conv, "s", 0.02, "RA", -server_isn, 1, window=0),  # seq 0, as Linux refuses
        segment(conv, "c", 1.0, "S", 0),                           # same ISN, 1 s later
        segment(conv, "s", 1.02, "SA", 0, 1),
        segment(conv, "c", 1.04, "A", 1, 1),
        segment(conv, "s", 1.10, "PA", 1, 1, b"hello"),
        segment(conv, "c", 1.12, "A", 1, 6),
    ]
    a = analyze_capture(refused_then_accepted)
    p = a.packets

    assert len(a.flows) == 1 and (p["flow_id"] == 0).all()
    assert a.flows.loc[0, "handshake"]
    # the retried SYN is the only retransmission; the accepted connection is clean
    assert p.loc[p["retransmission"], "frame"].tolist() == [3]
    assert not (p["lost_segment"] | p["out_of_order"]).any()
    assert p.loc[p["frame"] == 6, "rel_seq"].item() == 1
    assert a.flows.loc[0, "state"] == "open"
    assert len(a.rsts) == 1 and a.rsts.loc[0, "frame"] == 2


def test_syn_refused_every_time_ends_reset_by_server(analyze_capture, segment):
    conv = Conversation(CLIENT, SERVER, client_os="windows")
    pkts = []
    for at in (0.0, 0.5, 1.0):
        pkts += [segment(conv, "c", at, "S", 0),
                 segment(conv, "s", at + 0.02, "RA", -conv.s.isn, 1, window=0)]
    a = analyze_capture(pkts)
    assert len(a.flows) == 1
    assert a.flows.loc[0, "state"] == "reset by server"
    assert a.flows.loc[0, "rst_from"] == "server" and a.flows.loc[0, "rsts"] == 3
    assert not a.flows.loc[0, "handshake"]


def test_a_two_hour_idle_connection_is_never_split(analyze_capture):
    # tcptrace would start a new connection after 240 s of silence; one flow here
    conv = Conversation(CLIENT, SERVER)
    conv.handshake(0.0)
    conv.send("c", b"GET", at=0.1)
    conv.send("s", b"OK", at=0.2)
    conv.send("c", b"GET again", at=7200.0)
    conv.send("s", b"OK again", at=7200.1)
    a = analyze_capture(conv)

    assert len(a.flows) == 1 and (a.packets["flow_id"] == 0).all()
    assert a.flows.loc[0, "max_idle_s"] == pytest.approx(7199.76, abs=0.01)
    assert not a.packets["retransmission"].any()
    assert len(a.gaps) == 1 and a.gaps.loc[0, "duration_s"] == pytest.approx(7199.76, abs=0.01)


def test_a_connection_silent_until_the_capture_ends_is_idle_to_the_end(analyze_capture):
    # max_idle_s counts gaps between packets: a connection that hangs until the capture
    # is stopped has none, so idle_at_end_s carries that silence, for open and
    # half-closed connections; a closed or reset one is gone, not idle
    def conversation(port, start):
        conv = Conversation((CLIENT[0], port), SERVER)
        conv.handshake(start)
        conv.send("c", b"GET", at=start + 0.1)
        return conv

    hanging, closed, half, reset, last = (conversation(50000 + k, k) for k in range(5))
    closed.close("c", at=10.0)
    half.fin("s", at=20.0)
    reset.rst("c", at=30.0)
    last.send("s", b"OK", at=400.0)
    a = analyze_capture(hanging, closed, half, reset, last)

    f = a.flows.set_index("client_port")
    assert list(f["state"]) == ["open", "closed", "half-closed by server", "reset by client", "open"]
    capture_end = a.info.last_ts
    for port in (50000, 50002):
        assert f.loc[port, "idle_at_end_s"] == pytest.approx(capture_end - f.loc[port, "end_ts"], abs=1e-6)
    assert 399 < f.loc[50000, "idle_at_end_s"] and f.loc[50000, "max_idle_s"] < 1
    assert 379 < f.loc[50002, "idle_at_end_s"] < 381
    assert f.loc[50001, "idle_at_end_s"] == f.loc[50003, "idle_at_end_s"] == 0.0
    assert f.loc[50004, "idle_at_end_s"] == 0.0   # its last packet ends the capture


def test_roles_come_from_the_handshake_not_the_ports(analyze_capture):
    # a client on a low port talking to a server on a high one (e.g. active FTP data)
    conv = Conversation(("192.0.2.10", 20), ("198.51.100.20", 50000))
    conv.handshake(0.0)
    conv.send("c", b"data", at=0.1)
    a = analyze_capture(conv)
    f = a.flows.loc[0]
    assert f["client"] == "192.0.2.10:20" and f["server"] == "198.51.100.20:50000"
    assert not f["role_inferred"]
    assert a.packets.loc[a.packets["flags"] == "S", "dir"].tolist() == [0]
    assert a.packets.loc[a.packets["flags"] == "S.", "dir"].tolist() == [1]


def test_mid_stream_start_infers_the_well_known_port_as_server(analyze_capture):
    conv = Conversation(CLIENT, SERVER)
    conv.handshake(0.0, captured=False)
    conv.send("s", b"x" * 500, at=5.0)     # the server speaks first in the capture
    conv.send("c", b"y" * 10, at=6.0)
    a = analyze_capture(conv)
    f = a.flows.loc[0]

    assert f["role_inferred"] and not f["handshake"] and not f["syn_seen"]
    assert f["server"] == "198.51.100.20:80" and f["client"] == "192.0.2.10:50123"
    p = a.packets
    assert (p.loc[p["sport"] == 80, "dir"] == 1).all() and (p.loc[p["sport"] != 80, "dir"] == 0).all()
    assert (f["bytes_c2s"], f["bytes_s2c"]) == (10, 500)
    assert p.loc[p["payload_len"] > 0, "rel_seq"].tolist() == [1, 1]


@pytest.mark.parametrize("client_port, server_port", [
    (50123, 8080),   # one side in the ephemeral range: it is the client
    (6000, 5000),    # neither: the lower port serves
])
def test_mid_stream_start_without_a_well_known_port(analyze_capture, client_port, server_port):
    conv = Conversation(("192.0.2.10", client_port), ("198.51.100.20", server_port))
    conv.handshake(0.0, captured=False)
    conv.send("s", b"z" * 100, at=1.0)
    a = analyze_capture(conv)
    assert a.flows.loc[0, "role_inferred"]
    assert a.flows.loc[0, "server"] == f"198.51.100.20:{server_port}"


def test_flow_states_and_counts(analyze_capture):
    closed = Conversation(("192.0.2.1", 40001), SERVER)
    closed.handshake(0.0)
    closed.send("c", b"q", at=0.1)
    closed.close("s", at=1.0)
    reset = Conversation(("192.0.2.2", 40002), SERVER)
    reset.handshake(0.0)
    reset.send("c", b"q", at=0.1)
    reset.rst("s", at=1.0)
    idle = Conversation(("192.0.2.3", 40003), SERVER)
    idle.handshake(0.0)
    idle.send("c", b"q", at=0.1)
    idle.keepalive("c", at=60.0)
    idle.keepalive("c", at=120.0)
    idle.retransmit_schedule("c", b"r" * 10, 130.0, delivered_on=2)
    a = analyze_capture(closed, reset, idle)
    by_client = a.flows.set_index("client")

    assert by_client.loc["192.0.2.1:40001", "state"] == "closed"
    assert by_client.loc["192.0.2.2:40002", "state"] == "reset by server"
    assert by_client.loc["192.0.2.2:40002", "rsts"] == 1
    f = by_client.loc["192.0.2.3:40003"]
    assert f["state"] == "open"
    assert (f["keepalives"], f["retransmissions"], f["rsts"]) == (2, 2, 0)
    assert f["packets"] == len(idle.packets)


def test_connection_state_grown_from_one_connection_keeps_every_connection(monkeypatch):
    """The per-connection state and the flow table grow (in place) as connections
    appear, chunk after chunk: starting with room for one connection gives the same
    analysis as starting with room for all."""
    path = SAMPLES / "lab" / "mixed.client.pcap"
    settings = Settings(chunk_bytes=4096)   # ~20 chunks: it grows while connections are open
    roomy = analyze(path, settings)
    monkeypatch.setattr(events.TcpState, "INITIAL_FLOWS", 1)
    monkeypatch.setattr(pipeline, "FlowKeys", lambda: flows.FlowKeys(capacity=1))
    grown = analyze(path, settings)
    assert len(grown.flows) > 20
    for name in ("flows", "notable", "gaps", "backoffs", "rsts", "stalls"):
        pd.testing.assert_frame_equal(getattr(grown, name), getattr(roomy, name), obj=name)
