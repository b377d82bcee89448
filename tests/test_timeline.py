"""Derived tables (capanalyze.timeline): idle gaps, backoff chains against the Linux
tcp_retries2 model, RSTs; and the guarantee that chunked (streaming) and whole-file
analysis give the same result."""
from __future__ import annotations

import pandas as pd
import pytest
from helpers import diagnose_json

from capanalyze import spill
from capanalyze.craft import Conversation, linux_backoff, write_pcap
from capanalyze.pipeline import Settings, analyze

CLIENT, SERVER = ("192.0.2.10", 50123), ("198.51.100.20", 80)
T0 = 1_700_000_000.0


def bystander(at: float) -> Conversation:
    """Another connection, active at `at`: the capture goes on until then."""
    other = Conversation(("192.0.2.99", 40000), SERVER, seed=7)
    other.handshake(0.0)
    other.send("c", b"ping", at=at)
    return other


def frame_of(conv: Conversation, pkt) -> int:
    return next(i for i, p in enumerate(conv.packets, start=1) if p is pkt)


# ------------------------------------------------------------ idle gaps
def test_durations_are_the_nanoseconds_subtracted(tmp_path):
    """A gap's and a connection's durations subtract their capture times in nanoseconds:
    subtracting the float epoch times (good to ~0.12 us each) read 25.020382165908813
    for a 25.020382 s gap, and lost a nanosecond capture's last digits."""
    conv = Conversation(CLIENT, SERVER)
    conv.handshake(0.000000017)
    conv.send("c", b"GET", at=0.100000123)
    conv.send("s", b"OK", at=25.123456789)
    conv.close("c", at=25.5)
    path = tmp_path / "nanosecond.pcap"
    write_pcap(path, conv, nanosecond=True)
    analysis = analyze(path, Settings(keep_packets=True))
    ns = analysis.packets.set_index("frame")["ts_ns"]
    gap, flow = analysis.gaps.iloc[0], analysis.flows.iloc[0]
    # from the server's delayed ACK of the request (60 ms after it) to the answer
    assert ns[gap.end_frame] - ns[gap.start_frame] == 24_963_456_666
    assert gap.duration_s == 24.963456666
    assert flow.duration_s == (ns[flow.last_frame] - ns[flow.first_frame]) / 1e9


def test_gap_threshold_is_respected(analyze_capture):
    conv = Conversation(CLIENT, SERVER)
    conv.handshake(0.0)
    conv.send("c", b"GET", at=0.1)
    conv.send("s", b"OK", at=3.1)     # 2.94 s after the client's request was ACKed
    for gap_s, expected in ((2.0, 1), (5.0, 0)):
        gaps = analyze_capture(conv, gap_s=gap_s).gaps
        assert len(gaps) == expected
    gap = analyze_capture(conv, gap_s=2.0).gaps.iloc[0]
    assert gap["duration_s"] == pytest.approx(2.94, abs=1e-3)
    assert gap["ended_by"] == "data_acked" and gap["end_from"] == "server"


def test_keepalives_inside_a_gap_are_counted_and_do_not_end_it(analyze_capture):
    conv = Conversation(CLIENT, SERVER)
    conv.handshake(0.0)
    conv.send("c", b"GET", at=0.1)
    conv.send("s", b"OK", at=0.2)
    probes = conv.keepalive_timer("c", idle=60, until=400)
    (data, _) = conv.send("c", b"more", at=400.0, ack="now")
    a = analyze_capture(conv, gap_s=30.0)

    assert len(a.gaps) == 1
    gap = a.gaps.iloc[0]
    assert gap["keepalives"] == 6 and gap["keepalive_acks"] == 6
    assert gap["keepalive_from"] == "client"
    assert gap["keepalive_interval_s"] == pytest.approx(60.02, abs=1e-3)
    assert gap["end_frame"] == frame_of(conv, data)
    assert gap["start_ts"] < probes[0].time < probes[-1].time < gap["end_ts"]
    assert gap["duration_s"] > 399


def test_unacked_bytes_and_last_data_are_those_at_gap_start(analyze_capture):
    conv = Conversation(CLIENT, SERVER)
    conv.handshake(0.0)
    conv.send("c", b"GET", at=0.1)
    conv.send("s", b"OK", at=10.0)                       # gap 1: answered late
    conv.send("c", b"more", at=20.0)                     # gap 2: client speaks again
    conv.send("c", b"lost", at=30.0, delivered=False, ack=None)
    conv.rst("c", at=50.0)                               # gap 3: never ACKed, then RST
    gaps = analyze_capture(conv, gap_s=5.0).gaps

    assert gaps["ended_by"].tolist() == ["data_acked", "data_acked", "data_unacked", "rst"]
    # nothing was outstanding when gaps 1-3 started: the data that ended them is not counted
    assert gaps["unacked_client_bytes"].tolist() == [0, 0, 0, 4]
    assert gaps["unacked_server_bytes"].tolist() == [0, 0, 0, 0]
    assert gaps["last_data_from"].tolist() == ["client", "server", "client", "client"]


def test_gap_with_the_request_still_unacked(analyze_capture):
    conv = Conversation(CLIENT, SERVER)
    conv.handshake(0.0)
    conv.send("c", b"GET /slow", at=0.1, ack=None)    # no ACK for 20 s
    conv.ack("s", at=20.0)
    gap = analyze_capture(conv, gap_s=5.0).gaps.iloc[0]
    assert gap["unacked_client_bytes"] == 9 and gap["last_data_from"] == "client"
    assert gap["ended_by"] == "ack" and gap["end_from"] == "server"


@pytest.mark.parametrize("ending, expected", [
    ("fin", "fin"), ("rst", "rst"), ("capture_end", "capture_end"), ("data", "data_acked"),
])
def test_what_ended_a_gap(analyze_capture, ending, expected):
    conv = Conversation(CLIENT, SERVER)
    conv.handshake(0.0)
    conv.send("c", b"GET", at=0.1)
    conv.send("s", b"OK", at=0.2)
    if ending == "fin":
        conv.close("s", at=100.0)
    elif ending == "rst":
        conv.rst("s", at=100.0)
    elif ending == "data":
        conv.send("s", b"push", at=100.0)
    else:
        conv.keepalive("c", at=100.0)   # the last packets are a keepalive exchange
    gaps = analyze_capture(conv, gap_s=10.0).gaps
    assert len(gaps) == 1
    gap = gaps.iloc[0]
    assert gap["ended_by"] == expected
    if ending == "capture_end":
        assert pd.isna(gap["end_frame"]) and pd.isna(gap["end_from"])
        assert gap["keepalives"] == 1
    else:
        assert gap["end_from"] == "server"
    assert gap["duration_s"] == pytest.approx(99.76, abs=0.05)


# ------------------------------------------------------------ backoff chains
CHAIN = ["retransmissions", "ended_by", "model", "retries2", "retries2_at_least", "capped"]


def test_linux_default_backoff_gives_up_at_924_6_s(analyze_capture):
    conv = Conversation(CLIENT, SERVER)
    conv.handshake(0.0)
    conv.send("c", b"GET", at=0.1)
    pkts = conv.retransmit_schedule("c", b"x" * 100, 1.0)
    times, give_up = linux_backoff()
    a = analyze_capture(conv, bystander(1000.0))   # the capture outlives the give-up

    assert len(a.backoffs) == 1
    ch = a.backoffs.iloc[0]
    assert ch[CHAIN].tolist() == [15, "gave_up", "linux", 15, False, True]
    assert ch["give_up_s"] == pytest.approx(924.6, abs=0.01) == pytest.approx(give_up, abs=0.01)
    assert ch["times_s"] == pytest.approx(times, abs=1e-3)
    assert ch["sender"] == "client" and not ch["syn"]
    assert ch["first_rto_s"] == pytest.approx(0.2, abs=1e-3)
    assert ch["original_frame"] is not None and ch["model_error_s"] < 0.01
    assert ch["give_up_ts"] == pytest.approx(T0 + 1.0 + 924.6, abs=0.01)
    assert len(ch["frames"]) == len(pkts) - 1


def test_backoff_cut_by_the_capture_end(analyze_capture):
    conv = Conversation(CLIENT, SERVER)
    conv.handshake(0.0)
    conv.retransmit_schedule("c", b"x" * 100, 1.0)
    cut = [p for p in conv.packets if p.time < T0 + 1.0 + 300]   # 10 retransmissions seen
    ch = analyze_capture(cut).backoffs.iloc[0]
    assert ch[["retransmissions", "ended_by", "model", "retries2_at_least"]].tolist() == [
        10, "capture_end", "linux", True]
    assert ch["retries2"] <= 15
    assert ch["give_up_s"] == pytest.approx(924.6, abs=0.01)   # what the default predicts


def test_backoff_from_a_one_second_rto(analyze_capture):
    conv = Conversation(CLIENT, SERVER)
    conv.handshake(0.0)
    conv.retransmit_schedule("c", b"x" * 100, 1.0, rto=1.0)
    ch = analyze_capture(conv, bystander(1100.0)).backoffs.iloc[0]
    assert ch[CHAIN].tolist() == [13, "gave_up", "linux", 15, False, True]
    assert ch["give_up_s"] == pytest.approx(967.0, abs=0.01)
    assert ch["first_rto_s"] == pytest.approx(1.0, abs=1e-3)


def test_syn_retries(analyze_capture, segment):
    conv = Conversation(CLIENT, SERVER)
    syns = [segment(conv, "c", at, "S", 0) for at in (0, 1, 3, 7, 15, 31)]
    a = analyze_capture(syns, bystander(40.0))
    assert len(a.backoffs) == 1
    ch = a.backoffs.iloc[0]
    assert ch["syn"] and ch["model"] == "linux-syn"
    assert ch["times_s"] == pytest.approx([1, 3, 7, 15, 31], abs=1e-3)
    assert ch["ended_by"] == "capture_end" and ch["original_frame"] == 1
    assert ch["give_up_s"] == pytest.approx(127.0, abs=0.01)


def test_backoff_that_is_finally_acked(analyze_capture):
    conv = Conversation(CLIENT, SERVER)
    conv.handshake(0.0)
    pkts = conv.retransmit_schedule("c", b"x" * 100, 1.0, delivered_on=4)
    ch = analyze_capture(conv).backoffs.iloc[0]
    assert ch["retransmissions"] == 4 and ch["ended_by"] == "acked"
    assert ch["end_frame"] == frame_of(conv, pkts[-1])
    assert ch["model"] == "linux" and ch["retries2_at_least"]


def test_windows_five_retransmissions(analyze_capture):
    conv = Conversation(CLIENT, SERVER, client_os="windows")
    conv.handshake(0.0)
    conv.retransmit_schedule("c", b"x" * 100, 1.0, rto=0.3, retries=5)  # 0.3 s doubling, 5 tries
    ch = analyze_capture(conv, bystander(60.0)).backoffs.iloc[0]
    assert ch["retransmissions"] == 5 and ch["ended_by"] == "gave_up"
    assert ch["model"] == "windows"
    assert ch["give_up_s"] == pytest.approx(18.9, abs=0.01)


def test_tcp_retries2_is_a_whole_number_next_to_an_unknown_one(tmp_path):
    """A Linux chain (tcp_retries2 15) next to one no Linux schedule fits (Windows):
    the column held 15.0 and NaN, and the evidence read "tcp_retries2 15.0"."""
    linux = Conversation(CLIENT, SERVER)
    linux.handshake(0.0)
    linux.send("c", b"GET", at=0.1)
    linux.retransmit_schedule("c", b"x" * 100, 30.0)
    windows = Conversation(("192.0.2.11", 50124), SERVER, client_os="windows")
    windows.handshake(0.0)
    windows.send("c", b"GET", at=0.1)
    windows.retransmit_schedule("c", b"x" * 100, 30.0, rto=0.3, retries=5)
    path = tmp_path / "two_stacks.pcap"
    write_pcap(path, linux, windows, bystander(1000.0))
    report = diagnose_json(str(path))
    chains = {s["backoff"]["model"]: s for s in report["stalls"] if s["backoff"]}
    assert repr(chains["linux"]["backoff"]["retries2"]) == "15"
    assert chains["windows"]["backoff"]["retries2"] is None
    assert "tcp_retries2 15:" in " ".join(chains["linux"]["evidence"])


def test_a_single_retransmission_is_not_a_chain(analyze_capture):
    conv = Conversation(CLIENT, SERVER)
    conv.handshake(0.0)
    conv.retransmit_schedule("c", b"x" * 100, 1.0, delivered_on=1)
    a = analyze_capture(conv)
    assert a.packets["retransmission"].sum() == 1 and len(a.backoffs) == 0


# ------------------------------------------------------------ RSTs
def talked(client=CLIENT) -> Conversation:
    conv = Conversation(client, SERVER)
    conv.handshake(0.0)
    conv.send("c", b"GET", at=0.1)
    conv.send("s", b"OK", at=0.2)
    return conv


def test_forged_rst_from_a_middlebox(analyze_capture):
    conv = talked()
    (rst,) = conv.rst("s", at=700.0, ttl=254)   # the middlebox, in the server's name
    conv.send("c", b"still here?", at=701.0, ack=None)
    a = analyze_capture(conv)
    assert len(a.rsts) == 1
    r = a.rsts.iloc[0]
    assert r["frame"] == frame_of(conv, rst) and r["sender"] == "server"
    assert (r["ttl"], r["expected_ttl"]) == (254, 52)
    assert r["ttl_mismatch"] and r["forged"]
    assert any("TTL 254" in why for why in r["forged_reasons"])
    assert r["peer_kept_sending"]


def test_genuine_rst_from_the_server(analyze_capture):
    conv = talked()
    (rst,) = conv.rst("s", at=5.0)
    a = analyze_capture(conv)
    r = a.rsts.iloc[0]
    assert r["frame"] == frame_of(conv, rst) and r["sender"] == "server"
    assert not r["ttl_mismatch"] and not r["ip_id_jump"] and r["seq_offset"] == 0
    assert not r["forged"] and r["forged_reasons"] == []
    assert not r["peer_kept_sending"]
    assert a.flows.loc[0, "state"] == "reset by server"


def test_rst_from_the_client(analyze_capture):
    conv = talked()
    conv.rst("c", at=5.0)
    r = analyze_capture(conv).rsts.iloc[0]
    assert r["sender"] == "client" and not r["forged"] and r["has_ack"]


# ------------------------------------------------------------ streaming == whole file
def mixed_capture(path) -> None:
    """Many behaviours at once, over 10 chunks of 4 KiB."""
    a = Conversation(CLIENT, SERVER)
    a.handshake(0.0)
    a.send("c", b"GET", at=0.1)
    a.send("s", b"x" * 20_000, at=0.2)
    a.keepalive_timer("c", idle=60, until=400)
    a.send("c", b"more", at=400.0)
    a.retransmit_schedule("c", b"y" * 100, 401.0)
    reuse = Conversation(CLIENT, SERVER, t0=T0 + 2000, seed=1)
    reuse.handshake(0.0)
    reuse.send("c", b"hi", at=0.1)
    reuse.rst("s", at=30.0, ttl=250)
    win = Conversation(("192.0.2.11", 50000), SERVER, client_os="windows",
                       isn_client=2**32 - 100)
    win.handshake(0.0)
    win.send("c", b"a" * 5000, at=1.0)
    win.keepalive("c", at=30.0)
    win.send("s", b"b" * 3000, at=600.0)
    win.close("s", at=900.0)
    mid = Conversation(("192.0.2.12", 50001), SERVER)
    mid.handshake(0.0, captured=False)
    mid.send("s", b"z" * 3000, at=5.0)
    mid.zero_window("c", at=6.0)
    mid.zero_window_probe("s", at=6.3)
    mid.window_update("c", at=10.0)
    mid.duplicate()
    write_pcap(path, a, reuse, win, mid)


def comparable(df: pd.DataFrame) -> pd.DataFrame:
    """Address categories are interned in reading order, which chunking may change."""
    out = df.copy()
    for col in out.columns:
        if isinstance(out[col].dtype, pd.CategoricalDtype) and col in ("src", "dst"):
            out[col] = out[col].astype(str)
    return out


def test_chunked_and_whole_file_analysis_agree(tmp_path, monkeypatch):
    path = tmp_path / "mixed.pcap"
    mixed_capture(path)
    whole = analyze(path, Settings(keep_packets=True))
    # chunk by chunk the kept and notable rows are appended, their columns grown in place
    monkeypatch.setattr(spill.RowBuffer, "INITIAL_ROWS", 1)
    chunked = analyze(path, Settings(keep_packets=True, chunk_bytes=4096))
    streamed = analyze(path, Settings(chunk_bytes=4096))   # the CLI path: no packet table

    assert path.stat().st_size > 8 * 4096
    p = whole.packets
    assert p["flow_id"].nunique() == 4 and p["keepalive"].any() and p["retransmission"].any()
    assert p["duplicate_capture"].any() and p["zero_window_probe"].any()
    assert len(whole.stalls) > 0 and len(whole.backoffs) == 1 and len(whole.rsts) == 1

    pd.testing.assert_frame_equal(comparable(whole.packets), comparable(chunked.packets))
    for other in (chunked, streamed):
        for name in ("flows", "backoffs", "rsts", "zero_windows", "stalls"):
            pd.testing.assert_frame_equal(getattr(whole, name), getattr(other, name), obj=name)
        pd.testing.assert_frame_equal(comparable(whole.notable), comparable(other.notable))
    pd.testing.assert_frame_equal(whole.gaps, chunked.gaps)
    # the CLI path keeps the gaps the diagnosis reads (tests/test_cli_path_gaps.py)
    kept = whole.gaps.merge(streamed.gaps, how="inner")
    assert 0 < len(kept) == len(streamed.gaps) < len(whole.gaps)


@pytest.mark.parametrize("name", ["sse_proxy_cut_15s.pcap", "nlb_350s.pcap"])
def test_record_buffers_filling_up_mid_chunk_change_nothing(monkeypatch, name):
    """The kernel stops when its gap/RST rows run out and resumes with more: the tables
    must not depend on where it stopped."""
    from helpers import SAMPLES

    from capanalyze import events

    path = SAMPLES / "crafted" / name
    every_gap = Settings(keep_packets=True)
    roomy = analyze(path, every_gap)
    monkeypatch.setattr(events, "MIN_ROOM", 1)
    cramped = analyze(path, every_gap)
    assert len(roomy.gaps) >= 3   # more records than one cramped call has room for
    for table in ("gaps", "rsts", "stalls"):
        pd.testing.assert_frame_equal(getattr(roomy, table), getattr(cramped, table))
