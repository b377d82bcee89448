"""pcapng features no everyday tool writes, on tiny hand-built (crafted) files.

Binary and decimal if_tsresol, if_tsoffset, Simple Packet Blocks (no time, IDB 0's
snaplen), the obsolete Packet Block (type 2), unknown/statistics/name blocks, a
big-endian section after a little-endian one. Packets inside are built with scapy;
the block framing follows the pcapng spec (draft-ietf-opsawg-pcapng) byte by byte.
tshark reads these files too, so where it is installed it checks our reading of them.
Wireshark shows a custom block as a frame, so the reader counts it as a record.
"""
from __future__ import annotations

import csv
import io
import shutil
import struct
import subprocess

import pytest
from scapy.all import IP, TCP, Ether, Raw

from capanalyze.reader import read_capture
from dpkt_reference import reference_table
from helpers import run_cli


class Pcapng:
    """Writes pcapng blocks in one byte order."""

    def __init__(self, big: bool = False):
        self.o = ">" if big else "<"
        self.out = []

    def block(self, btype: int, body: bytes) -> "Pcapng":
        body += b"\0" * (-len(body) % 4)
        n = len(body) + 12
        self.out.append(struct.pack(self.o + "II", btype, n) + body + struct.pack(self.o + "I", n))
        return self

    def option(self, code: int, value: bytes) -> bytes:
        return struct.pack(self.o + "HH", code, len(value)) + value + b"\0" * (-len(value) % 4)

    def shb(self) -> "Pcapng":
        return self.block(0x0A0D0D0A, struct.pack(self.o + "IHHq", 0x1A2B3C4D, 1, 0, -1))

    def idb(self, linktype=1, snaplen=0, tsresol=None, tsoffset=None) -> "Pcapng":
        opts = b""
        if tsresol is not None:
            opts += self.option(9, bytes([tsresol]))
        if tsoffset is not None:
            opts += self.option(14, struct.pack(self.o + "q", tsoffset))
        if opts:
            opts += b"\0\0\0\0"
        return self.block(1, struct.pack(self.o + "HHI", linktype, 0, snaplen) + opts)

    def epb(self, ifid: int, ticks: int, pkt: bytes, wire: int | None = None) -> "Pcapng":
        head = struct.pack(self.o + "IIIII", ifid, ticks >> 32, ticks & 0xFFFFFFFF, len(pkt),
                           wire or len(pkt))
        return self.block(6, head + pkt)

    def pb(self, ifid: int, ticks: int, pkt: bytes) -> "Pcapng":
        head = struct.pack(self.o + "HHIIII", ifid, 0, ticks >> 32, ticks & 0xFFFFFFFF,
                           len(pkt), len(pkt))
        return self.block(2, head + pkt)

    def spb(self, pkt: bytes, wire: int) -> "Pcapng":
        return self.block(3, struct.pack(self.o + "I", wire) + pkt)

    def bytes(self) -> bytes:
        return b"".join(self.out)


def segment(sport: int, seq: int, payload: bytes = b"", flags="PA") -> bytes:
    return bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
                 / IP(src="192.0.2.1", dst="198.51.100.7", id=sport)
                 / TCP(sport=sport, dport=80, seq=seq, ack=1, flags=flags) / Raw(payload))


def raw_segment(sport: int, seq: int) -> bytes:
    return bytes(IP(src="203.0.113.5", dst="192.0.2.1") / TCP(sport=sport, dport=443, seq=seq))


T0 = 1_700_000_000


def crafted_file() -> bytes:
    le = Pcapng()
    le.shb()
    le.block(4, b"\0\0\0\0")                                   # empty name resolution block
    le.idb(1, 0, tsresol=9, tsoffset=1000)                    # ns ticks, +1000 s
    le.idb(101, 0, tsresol=0x80 | 10)                         # raw IP, 1/1024 s ticks
    le.epb(0, T0 * 10**9 + 123_456_789, segment(1001, 10, b"x" * 20))
    le.block(0x777, b"unknown block type, must be skipped")
    le.block(0x0BAD, struct.pack("<I", 32473) + b"custom block: a frame for Wireshark")
    le.epb(1, (T0 << 10) + 512, raw_segment(2002, 20))        # + 0.5 s
    le.pb(1, (T0 << 10) + 768, raw_segment(2003, 30))         # obsolete PB on interface 1
    le.block(5, struct.pack("<IIII", 0, 0, 0, 0))             # interface statistics
    le.spb(segment(1004, 40, b"y" * 100), wire=len(segment(1004, 40, b"y" * 100)))
    be = Pcapng(big=True)
    be.shb()
    be.idb(1, 60)                                             # default usec, snaplen 60
    be.epb(0, T0 * 10**6 + 7, segment(3005, 50, b"z" * 30))
    pkt = segment(3006, 60, b"w" * 40)
    be.spb(pkt[:60], wire=len(pkt))                           # SPB cut to IDB 0's snaplen
    return le.bytes() + be.bytes()


@pytest.fixture()
def crafted(tmp_path):
    path = tmp_path / "crafted.pcapng"
    path.write_bytes(crafted_file())
    return path


def test_crafted_blocks_are_all_read(crafted):
    table, info = read_capture(crafted)
    assert info.records == 7 and info.tcp_packets == 6
    assert info.skipped == {"not a packet: pcapng custom block": 1}
    assert info.sections == 2 and info.linktypes == ["EN10MB", "RAW"]
    assert [i["tsresol"] for i in info.interfaces] == ["10^-9", "2^-10", "10^-6"]
    assert table["sport"].tolist() == [1001, 2002, 2003, 1004, 3005, 3006]


def test_crafted_timestamps(crafted):
    table, _ = read_capture(crafted)
    ts = dict(zip(table["sport"], table["ts_ns"]))
    assert ts[1001] == (T0 + 1000) * 10**9 + 123_456_789        # ns resolution + tsoffset
    assert ts[2002] == T0 * 10**9 + 500_000_000                  # 2^-10 resolution
    assert ts[2003] == T0 * 10**9 + 750_000_000
    assert ts[1004] == ts[2003]                  # SPB: no time of its own, keeps the last
    assert ts[3005] == T0 * 10**9 + 7_000


def test_crafted_interfaces_and_snaplen(crafted):
    table, _ = read_capture(crafted)
    by_port = table.set_index("sport")
    assert by_port.loc[[1001, 2002, 2003, 1004, 3005, 3006], "interface"].tolist() == [0, 1, 1, 0, 2, 2]
    cut = by_port.loc[3006]
    assert cut["truncated"] and cut["payload_len"] == 40 and cut["wire_len"] == 94
    assert not by_port.loc[1004, "truncated"] and by_port.loc[1004, "payload_len"] == 100


def test_crafted_matches_dpkt_reference(crafted):
    table, info = read_capture(crafted)
    ref, records = reference_table(crafted)
    assert records == info.records
    for row, r in zip(table.to_dict("records"), ref):
        for key in ("frame", "sport", "seq", "ack", "payload_len", "interface", "truncated"):
            assert row[key] == r[key], key
        assert abs(row["ts_ns"] / 1e9 - r["ts"]) < 1e-6


@pytest.mark.tshark
@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
def test_crafted_matches_tshark(crafted):
    out = subprocess.run(["tshark", "-n", "-r", str(crafted), "-T", "fields", "-e", "frame.number",
                          "-e", "tcp.srcport", "-e", "tcp.seq_raw", "-e", "tcp.len",
                          "-e", "frame.interface_id"],
                         capture_output=True, text=True, check=True).stdout
    rows = [line.split("\t") for line in out.splitlines()]
    theirs = [tuple(int(x) for x in r[:4]) for r in rows if r[1]]
    table, info = read_capture(crafted)
    assert info.records == len(rows)
    ours = list(zip(table["frame"], table["sport"], table["seq"], table["payload_len"]))
    assert [tuple(int(v) for v in row) for row in ours] == theirs
    # tshark 4.0 numbers interfaces per section; ours are global across sections
    first_section = [int(r[4]) for r in rows if r[1]][:4]
    assert table["interface"].tolist()[:4] == first_section


def test_undeclared_interface_is_counted_not_fatal(tmp_path):
    f = Pcapng().shb().idb(1).epb(0, 1, segment(1, 1)).epb(5, 2, segment(2, 2))
    path = tmp_path / "undeclared.pcapng"
    path.write_bytes(f.bytes())
    table, info = read_capture(path)
    assert info.records == 2 and table["sport"].tolist() == [1]
    assert info.skipped == {"packet for undeclared interface 5": 1}


@pytest.mark.parametrize("jit", ["0", "1"])
def test_interface_ids_past_32767(tmp_path, jit):
    """The interface column was int16: interface 39999 stopped a small capture with an
    internal error (interpreted) and read as -25537 in a large one (compiled)."""
    f = Pcapng().shb()
    for _ in range(40_000):
        f.idb(1)
    f.epb(39_999, 1, segment(1, 1)).epb(0, 2, segment(2, 2))
    path = tmp_path / "many_interfaces.pcapng"
    path.write_bytes(f.bytes())
    run = run_cli("packets", str(path), "-f", "csv", jit=jit)
    assert run.stderr == ""
    rows = list(csv.DictReader(io.StringIO(run.stdout)))
    assert [(r["frame"], r["interface"], r["sport"]) for r in rows] == [("1", "39999", "1"), ("2", "0", "2")]


@pytest.mark.parametrize("offset", [2**62, -2**62])
def test_a_time_offset_past_any_date_is_left_out_with_a_warning(tmp_path, offset):
    """if_tsoffset is whole seconds; 2^62 of them is no time an int64 of ns can hold.
    It was an internal error ("Python int too large to convert to C long")."""
    f = Pcapng().shb().idb(1, tsoffset=offset).epb(0, T0 * 10**6, segment(1, 1))
    path = tmp_path / "tsoffset.pcapng"
    path.write_bytes(f.bytes())
    table, info = read_capture(path)
    assert table["ts_ns"].tolist() == [T0 * 10**9]
    assert info.interfaces[0]["tsoffset"] == offset
    assert info.warnings == [(f"interface 0: time offset (if_tsoffset) of {offset} s is beyond "
                              "any time the capture could have: its times are read without it")]


def test_unknown_link_type_is_counted(tmp_path):
    f = Pcapng().shb().idb(147).epb(0, 1, b"\x01\x02\x03").idb(1).epb(1, 2, segment(9, 9))
    path = tmp_path / "user0.pcapng"
    path.write_bytes(f.bytes())
    _, info = read_capture(path)
    assert info.skipped == {"unknown link type 147": 1} and info.tcp_packets == 1
    assert info.linktypes == ["USER0", "EN10MB"]
