"""The reader against tshark: frame counts and per-packet TCP fields, frame by frame.

tshark runs with IP defragmentation off so a fragmented TCP segment is shown on its
first fragment, as the reader does; ICMP errors quoting a TCP header are not TCP
packets. tshark's tcp.len is empty for a first fragment (no reassembly): not compared.
"""
from __future__ import annotations

import shutil
import subprocess

import pytest

from capanalyze.reader import read_capture
from dpkt_reference import FORMATS, PPA, SAMPLES, capture_files

pytestmark = [pytest.mark.tshark,
              pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")]

FIELDS = ["frame.number", "ip.src", "ipv6.src", "tcp.srcport", "tcp.seq_raw", "tcp.ack_raw",
          "tcp.window_size_value", "tcp.len", "tcp.flags", "tcp.hdr_len"]
CAPTURES = capture_files(FORMATS, SAMPLES) + capture_files(PPA)


def tshark(path, *args: str) -> list[list[str]]:
    cmd = ["tshark", "-n", "-r", str(path), "-o", "ip.defragment:FALSE",
           "-o", "ipv6.defragment:FALSE", *args, "-T", "fields", "-E", "separator=\t"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return [line.split("\t") for line in out.splitlines()]


def tshark_frame_count(path) -> int:
    return len(tshark(path, "-e", "frame.number"))


def tshark_tcp(path) -> dict[int, list[str]]:
    args = ["-Y", "tcp && !icmp && !icmpv6"]
    for f in FIELDS:
        args += ["-e", f]
    return {int(r[0]): r for r in tshark(path, *args)}


def _first(value: str, base: int = 10):
    return None if value == "" else int(value.split(",")[0], base)


@pytest.mark.parametrize("path", CAPTURES, ids=[p.name for p in CAPTURES])
def test_agrees_with_tshark(path):
    table, info = read_capture(path)
    assert info.records == tshark_frame_count(path)
    theirs = tshark_tcp(path)
    ours = set(table["frame"])
    # tshark shows ports of a TCP header it calls bogus (data offset < 20): we skip those
    missing = [f for f, r in theirs.items() if f not in ours and (_first(r[9]) or 0) >= 20]
    assert not missing, f"TCP in tshark, not in ours: {missing[:10]}"
    assert ours <= set(theirs)
    mismatches = []
    for row in table.itertuples():
        r = theirs[row.frame]
        expect = ((r[1] or r[2]).split(",")[0], _first(r[3]), _first(r[4]), _first(r[5]),
                  _first(r[6]), _first(r[7]), _first(r[8], 16) & 0x1FF)
        got = (row.src, row.sport, row.seq, row.ack, row.window,
               None if expect[5] is None else row.payload_len, row.tcp_flags)
        if expect[5] is None:
            assert row.fragment, f"frame {row.frame}: tshark has no tcp.len"
        if got != expect:
            mismatches.append((row.frame, expect, got))
    assert not mismatches, mismatches[:5]


def test_there_are_captures_to_compare():
    assert len(capture_files(FORMATS)) >= 15
