"""Our keepalive / retransmission flags against tshark's, packet by packet.

Every disagreement must fall in a category we name and explain; the overall agreement
on TCP packets must be >= 99.5 %. The categories are deliberate corrections of
Wireshark's rules (see capanalyze/tcpstate.py), each recognisable by its event bit.
"""
from __future__ import annotations

import subprocess

import numpy as np
import pandas as pd
import pytest

from capanalyze import tcpstate as ts
from capanalyze.pipeline import Settings, analyze

from helpers import sample_pcaps, shared_pcaps

FIELDS = ["frame.number", "tcp.analysis.keep_alive", "tcp.analysis.retransmission",
          "tcp.analysis.fast_retransmission", "tcp.analysis.spurious_retransmission"]

CATEGORIES = {
    "tshark calls a Linux zero-window probe (0 bytes at next_seq-1 while the peer's "
    "window is 0) a keepalive": lambda m: ~m.keepalive & m.ts_ka & m.zero_window_probe,
    "tshark calls the segment at our own FIN's sequence number (an ACK around the FIN) "
    "a keepalive": lambda m: ~m.keepalive & m.ts_ka & _bit(m, ts.EV_KA_AFTER_FIN),
    "tshark calls a next_seq-1 segment that followed other traffic in its direction "
    "within 0.5 s a keepalive": lambda m: ~m.keepalive & m.ts_ka & _bit(m, ts.EV_KA_NOT_SILENT),
    "tshark calls the same packet captured twice (same IP ID, seq, ack, length within "
    "2 ms) a retransmission": lambda m: ~m.retransmission & m.ts_retx & m.duplicate_capture,
}


def _bit(m, bit):
    return (m.events.to_numpy() & bit) != 0


def tshark_flags(path) -> pd.DataFrame:
    out = subprocess.run(["tshark", "-r", str(path), "-Y", "tcp", "-T", "fields",
                          "-E", "separator=,", "-E", "occurrence=f",
                          *sum((["-e", f] for f in FIELDS), [])],
                         capture_output=True, text=True, check=True).stdout
    rows = [line.split(",") for line in out.splitlines() if line]
    df = pd.DataFrame(rows, columns=["frame", "ka", "re", "fre", "sre"])
    flags = df[["ka", "re", "fre", "sre"]] != ""
    return pd.DataFrame({"frame": df["frame"].astype(np.int64), "ts_ka": flags["ka"],
                         "ts_retx": flags["re"] | flags["fre"] | flags["sre"]})


def compare(path) -> pd.DataFrame:
    ours = analyze(path, Settings(keep_packets=True)).packets
    return ours.merge(tshark_flags(path), on="frame", how="inner")


def explain(m: pd.DataFrame) -> dict[str, int]:
    """Disagreements per category; 'unexplained' must stay empty."""
    differ = (m.keepalive != m.ts_ka) | (m.retransmission != m.ts_retx)
    counts, explained = {}, np.zeros(len(m), bool)
    for name, rule in CATEGORIES.items():
        hit = differ & rule(m)
        counts[name] = int(hit.sum())
        explained |= hit.to_numpy()
    counts["unexplained"] = int((differ & ~explained).sum())
    return counts


CAPTURES = shared_pcaps() + sample_pcaps()


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_every_disagreement_is_explained(path, need_tshark):
    m = compare(path)
    counts = explain(m)
    unexplained = m[((m.keepalive != m.ts_ka) | (m.retransmission != m.ts_retx))]
    assert counts["unexplained"] == 0, unexplained[["frame", "flags", "payload_len", "keepalive",
                                                     "ts_ka", "retransmission", "ts_retx", "events"]]


def test_overall_agreement_is_at_least_99_5_percent(need_tshark, need_shared):
    total = differ = 0
    per_category: dict[str, int] = {}
    for path in CAPTURES:
        m = compare(path)
        total += len(m)
        differ += int(((m.keepalive != m.ts_ka) | (m.retransmission != m.ts_retx)).sum())
        for name, n in explain(m).items():
            per_category[name] = per_category.get(name, 0) + n
    agreement = 1 - differ / total
    print(f"\nkeepalive+retransmission agreement with tshark: {agreement:.4%} of {total} TCP packets "
          f"in {len(CAPTURES)} captures; disagreements by category: {per_category}")
    assert total > 5000
    assert agreement >= 0.995


def test_flow_ids_are_wiresharks_tcp_streams(need_tshark, need_shared):
    for path in shared_pcaps():
        ours = analyze(path, Settings(keep_packets=True)).packets[["frame", "flow_id"]]
        out = subprocess.run(["tshark", "-r", str(path), "-Y", "tcp", "-T", "fields", "-E",
                              "occurrence=f", "-e", "frame.number", "-e", "tcp.stream"],
                             capture_output=True, text=True, check=True).stdout
        theirs = pd.DataFrame([l.split("\t") for l in out.splitlines()], columns=["frame", "stream"]).astype(np.int64)
        m = ours.merge(theirs, on="frame")
        assert (m.flow_id == m.stream).all(), path.name
