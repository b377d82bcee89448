"""The compiled reader against an independent dpkt decoder, on captures from real tools.

Captures: tests/data/formats (made by make_formats.sh), sample_pcaps/ and the shared
real-world set in /work/shared/pcaps/ppa (skipped when absent).
"""
from __future__ import annotations

import io
import struct

import numpy as np
import pandas as pd
import pytest

from capanalyze import schema
from capanalyze.reader import open_capture, read_capture
from dpkt_reference import FORMATS, PPA, SAMPLES, capture_files, reference_table

LOCAL = capture_files(FORMATS, SAMPLES)
SHARED = capture_files(PPA)
ALL = LOCAL + SHARED
ids = [p.name for p in ALL]


def _cases():
    if not SHARED:
        yield pytest.param(None, marks=pytest.mark.skip(reason=f"{PPA} not present"))
    for p in ALL:
        yield pytest.param(p, id=p.name, marks=[pytest.mark.shared] if p in SHARED else [])


@pytest.mark.parametrize("path", list(_cases()))
def test_matches_dpkt_reference_field_by_field(path):
    table, info = read_capture(path)
    ref, records = reference_table(path)
    assert info.records == records
    assert info.tcp_packets == len(table)
    assert info.tcp_packets + sum(info.skipped.values()) == info.records
    assert table["frame"].tolist() == [r["frame"] for r in ref]
    expected = pd.DataFrame(ref)
    for column in expected.columns:
        ours = table[column].astype(object).tolist() if column in ("src", "dst") \
            else table[column].tolist()
        if column == "ts":
            np.testing.assert_allclose(table["ts_ns"].to_numpy() / 1e9, expected["ts"], rtol=0,
                                       atol=1e-6)
            continue
        mismatch = [(f, o, e) for f, o, e in zip(table["frame"], ours, expected[column]) if o != e]
        assert not mismatch, f"{column}: (frame, ours, dpkt) {mismatch[:5]}"


@pytest.mark.parametrize("path", LOCAL, ids=[p.name for p in LOCAL])
def test_table_has_the_schema(path):
    table, _ = read_capture(path)
    assert list(table.columns) == list(schema.PACKET_COLUMNS)
    for name, dtype in schema.PACKET_COLUMNS.items():
        assert str(table[name].dtype) == dtype, name
    assert (table["flags"].astype(str) == [schema.flags_text(int(v)) for v in table["tcp_flags"]]).all()
    # the nanoseconds in seconds, rounded once (Python's int / int is correctly rounded)
    assert table["ts"].tolist() == [ns / 10**9 for ns in table["ts_ns"].tolist()]


@pytest.mark.parametrize("name", ["eth_ipv4.pcap", "two_if.pcapng", "sections.pcapng",
                                  "ipv6.pcap", "bigendian.pcapng", "eth_ipv4.pcap.gz"])
@pytest.mark.parametrize("chunk_bytes", [64, 1000, 4096])
def test_tiny_chunks_give_the_same_table(name, chunk_bytes):
    """Records split across chunk boundaries are carried over, not lost or doubled."""
    whole, info = read_capture(FORMATS / name)
    small, small_info = read_capture(FORMATS / name, chunk_bytes=chunk_bytes)
    pd.testing.assert_frame_equal(whole, small)
    assert small_info.records == info.records and small_info.skipped == info.skipped


def test_chunks_share_address_categories():
    reader = open_capture(FORMATS / "sections.pcapng", chunk_bytes=512)
    chunks = list(reader.chunks())
    assert len(chunks) > 3
    final = list(reader.addresses.categories())
    for chunk in chunks:
        cats = list(chunk["src"].cat.categories)
        assert cats == final[:len(cats)]            # a prefix: codes never change
        assert list(chunk["dst"].cat.categories) == cats
    whole, _ = read_capture(FORMATS / "sections.pcapng")
    assert list(whole["src"].cat.categories) == final
    assert [str(a) for c in chunks for a in c["src"]] == whole["src"].astype(str).tolist()


EXPECTED_FORMATS = {
    "eth_ipv4.pcap": ("pcap", ["EN10MB"]),
    "eth_nsec.pcap": ("pcap (nanosecond)", ["EN10MB"]),
    "bigendian.pcap": ("pcap", ["EN10MB"]),
    "eth_ipv4.pcap.gz": ("pcap (gzip)", ["EN10MB"]),
    "sll.pcap": ("pcap", ["LINUX_SLL"]),
    "sll2.pcap": ("pcap", ["LINUX_SLL2"]),
    "rawip_101.pcap": ("pcap", ["RAW"]),
    "rawip4_228.pcap": ("pcap", ["IPV4"]),
    "rawip6_229.pcap": ("pcap", ["IPV6"]),
    "null.pcap": ("pcap", ["NULL"]),
    "loop.pcap": ("pcap", ["LOOP"]),
    "eth_nsec.pcapng": ("pcapng", ["EN10MB"]),
    "two_if.pcapng": ("pcapng", ["EN10MB", "LINUX_SLL"]),
    "two_if.pcapng.gz": ("pcapng (gzip)", ["EN10MB", "LINUX_SLL"]),
    "bigendian.pcapng": ("pcapng", ["EN10MB", "LINUX_SLL"]),
}


@pytest.mark.parametrize("name", sorted(EXPECTED_FORMATS))
def test_format_and_link_types_are_reported(name):
    fmt, linktypes = EXPECTED_FORMATS[name]
    _, info = read_capture(FORMATS / name)
    assert (info.format, info.linktypes) == (fmt, linktypes)
    assert info.complete and info.records > 0 and info.warnings == []


def test_pcapng_sections_and_interfaces():
    _, info = read_capture(FORMATS / "sections.pcapng")
    assert info.sections == 2
    assert [(i["id"], i["section"], i["linktype"]) for i in info.interfaces] == [
        (0, 0, "EN10MB"), (1, 1, "EN10MB"), (2, 1, "LINUX_SLL")]
    table, _ = read_capture(FORMATS / "sections.pcapng")
    assert set(table["interface"]) == {0, 1, 2}


def test_nanosecond_timestamps_are_exact():
    pcap, _ = read_capture(FORMATS / "eth_nsec.pcap")
    ng, _ = read_capture(FORMATS / "eth_nsec.pcapng")   # editcap: if_tsresol = 9
    assert (pcap["ts_ns"] % 1000 != 0).any()
    assert pcap["ts_ns"].tolist() == ng["ts_ns"].tolist()


def test_skip_reasons_on_real_traffic():
    _, info = read_capture(FORMATS / "eth_ipv4.pcap")
    assert {"not TCP: ARP", "not TCP: ICMP", "not TCP: UDP", "not TCP: ICMPv6"} <= set(info.skipped)
    _, odd = read_capture(FORMATS / "ipv4_odd.pcap")
    for reason in ("non-first IP fragment", "bad IPv4 header length", "bad TCP header length"):
        assert odd.skipped.get(reason, 0) >= 1, reason


def test_snaplen_cut_packets():
    table, info = read_capture(FORMATS / "snap64.pcap")
    assert info.snaplen == 64 and table["truncated"].all()
    data = table[table["payload_len"] > 0]
    assert len(data) >= 2                        # payload lengths come from the IP header
    assert (table["wire_len"] > 64).any()


def test_fragmented_tcp_first_fragment_is_decoded():
    for name in ("ipv4_odd.pcap", "ipv6.pcap"):
        table, info = read_capture(FORMATS / name)
        first = table[table["fragment"]]
        assert len(first) == 1 and first["payload_len"].iloc[0] > 0, name
        assert info.skipped["non-first IP fragment"] >= 2


def test_ipv6_extension_header_chains_reach_tcp():
    table, _ = read_capture(FORMATS / "ipv6.pcap")
    crafted = table[(table["sport"] > 41000) & (table["sport"] < 41010)]
    assert set(crafted["sport"]) == set(range(41001, 41010))   # HBH, DO, RH, chain, AH ...
    syn = crafted[crafted["sport"] == 41001].iloc[0]
    assert (syn["mss"], syn["wscale"], syn["sack_perm"], syn["tsval"]) == (1400, 7, True, 12345)
    sack = crafted[crafted["sport"] == 41006].iloc[0]
    assert (sack["sack_blocks"], sack["sack_left"], sack["sack_right"]) == (2, 5000, 6000)


def test_vlan_and_qinq_frames():
    table, _ = read_capture(FORMATS / "vlan.pcap")
    plain, _ = read_capture(FORMATS / "eth_ipv4.pcap")
    # each TCP frame of eth_ipv4.pcap re-sent twice: 802.1Q, and 802.1ad + 802.1Q
    assert len(table) == 2 * len(plain)
    assert table["seq"].tolist()[::2] == plain["seq"].tolist()
    assert table["seq"].tolist()[1::2] == plain["seq"].tolist()


def test_file_object_and_gzip_give_the_same_table():
    path = FORMATS / "eth_ipv4.pcap"
    direct, _ = read_capture(path)
    from_obj, info = read_capture(io.BytesIO(path.read_bytes()))
    gz, gz_info = read_capture(FORMATS / "eth_ipv4.pcap.gz")
    pd.testing.assert_frame_equal(direct, from_obj)
    pd.testing.assert_frame_equal(direct, gz)
    assert info.bytes_total is None and gz_info.bytes_read == gz_info.bytes_total


def _pcap_with_a_giant_record(path, giant: int = 300_000):
    """Classic pcap (snaplen 512 KiB): small TCP packets around one frame of `giant`
    bytes (a TCP packet followed by an Ethernet trailer), as a capture card with a
    large snaplen can write."""
    from scapy.all import IP, TCP, Ether, raw

    def frame(i, pad=0):
        pkt = raw(Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=40000, dport=443, seq=i))
        return pkt + bytes(pad)

    return _write_pcap(path, [frame(1), frame(2), frame(3, giant - 54), frame(4), frame(5)],
                       snaplen=512 << 10)


def _write_pcap(path, frames, snaplen: int = 65535):
    """Classic little-endian Ethernet pcap of whole frames, one every millisecond."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen, 1)]
    for i, data in enumerate(frames):
        out.append(struct.pack("<IIII", 1_700_000_000 + i // 1000, (i % 1000) * 1000,
                               len(data), len(data)) + data)
    path.write_bytes(b"".join(out))
    return path


@pytest.mark.parametrize("chunk_bytes", [1 << 16, 1 << 20])
def test_a_record_larger_than_the_block_room_is_read_whole(tmp_path, chunk_bytes):
    path = _pcap_with_a_giant_record(tmp_path / "giant.pcap")
    table, info = read_capture(path, chunk_bytes=chunk_bytes)
    assert info.records == 5 and info.tcp_packets == 5 and not info.warnings
    assert table["frame"].tolist() == [1, 2, 3, 4, 5]
    assert table["seq"].tolist() == [1, 2, 3, 4, 5]
    whole, _ = read_capture(path)
    pd.testing.assert_frame_equal(table, whole)


def _pcap_of_runs(path, runs):
    """Classic pcap of small frames made with scapy: runs of (count, "tcp" or "udp")."""
    from scapy.all import IP, TCP, UDP, Ether, raw

    tcp = raw(Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=40000, dport=443))
    udp = raw(Ether() / IP(src="10.0.0.1", dst="10.0.0.53") / UDP(sport=40000, dport=53))
    kinds = [kind for count, kind in runs for _ in range(count)]
    return _write_pcap(path, [tcp[:38] + struct.pack(">I", i) + tcp[42:] if kind == "tcp" else udp
                              for i, kind in enumerate(kinds)])


@pytest.mark.parametrize("chunk_bytes", [1 << 20, 8 << 20])
def test_blocks_denser_in_tcp_than_the_ones_before_are_read_whole(tmp_path, chunk_bytes):
    """The TCP rows of a block are allotted from the block before (or 32k for the first
    one); a block with more, after a block of UDP or as the first of 40k small packets,
    is decoded in several goes: every packet once, in order, as dpkt reads them."""
    path = _pcap_of_runs(tmp_path / "dense.pcap",
                         [(20_000, "udp"), (40_000, "tcp"), (20_000, "udp"), (30_000, "tcp")])
    table, info = read_capture(path, chunk_bytes=chunk_bytes)
    ref, records = reference_table(path)
    assert info.records == records == 110_000
    assert info.tcp_packets == len(table) == 70_000 and info.skipped == {"not TCP: UDP": 40_000}
    assert table["frame"].tolist() == [r["frame"] for r in ref]
    assert table["seq"].tolist() == [r["seq"] for r in ref] == list(range(20_000, 60_000)) \
        + list(range(80_000, 110_000))


def test_after_a_block_decoded_in_several_goes_the_next_blocks_come_whole(tmp_path):
    """The rows allotted to a block follow the whole block before, not its last go: a
    capture that turns from UDP to TCP is cut into small chunks once (1024, 2048 ...
    rows), not for the rest of the file (each chunk costs both threads a round of
    calls; 5M mixed packets came out in 320 chunks instead of 230)."""
    from capanalyze import jit

    jit.compile_all()
    path = _pcap_of_runs(tmp_path / "turns.pcap", [(20_000, "udp"), (150_000, "tcp")])
    sizes = [len(c["frame"]) for c in open_capture(path, chunk_bytes=1 << 20).columns()]
    assert sum(sizes) == 150_000
    assert sizes[:3] == [1024, 2048, 4096]   # the block where TCP starts, in goes
    whole_block = (1 << 20) // 70            # 70-byte records (16 header + 54 frame)
    assert all(n >= whole_block for n in sizes[4:-1]) and len(sizes) == 14, sizes


def test_info_on_a_large_capture_runs_the_compiled_reader(tmp_path):
    """`capanalyze info` chooses compiled kernels above 1 MiB as `diagnose` does: the
    interpreted ones read ~30k packets/s, minutes for a multi-GB capture."""
    import os
    import subprocess
    import sys

    path = _pcap_of_runs(tmp_path / "big.pcap", [(10_000, "udp"), (10_000, "tcp")])
    assert path.stat().st_size > 1 << 20
    code = ("from typer.testing import CliRunner\n"
            "from capanalyze import cli, jit\n"
            f"run = CliRunner().invoke(cli.app, ['info', {str(path)!r}])\n"
            "print(run.exit_code, jit.is_compiled())\n"
            "print(run.output)\n")
    env = {k: v for k, v in os.environ.items() if k != "CAPANALYZE_JIT"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=600, check=False)
    first, _, output = proc.stdout.partition("\n")
    assert first == "0 True", proc.stdout + proc.stderr
    assert "records:     20000" in output and "TCP packets: 10000" in output
