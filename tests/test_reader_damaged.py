"""Damaged and non-capture input through the CLI: one-line errors (exit 2) or the
records before the damage plus an exact warning (exit 0), never a traceback."""
from __future__ import annotations

import csv
import gzip
import io
import json
import struct
import subprocess
import sys

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.utils import wrpcap

from dpkt_reference import FORMATS
from helpers import run_cli

ETH = FORMATS / "eth_ipv4.pcap"
NG = FORMATS / "eth_nsec.pcapng"


def cli(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "capanalyze", *args], input=stdin,
                          capture_output=True, timeout=120)


def info_json(path) -> dict:
    run = cli("info", str(path), "--format", "json")
    assert run.returncode == 0, run.stderr
    assert b"Traceback" not in run.stderr
    info = json.loads(run.stdout)
    assert info["tcp_packets"] + sum(info["skipped"].values()) == info["records"]
    return info


def assert_error(run: subprocess.CompletedProcess, message: str) -> None:
    assert run.returncode == 2
    assert run.stdout == b""
    assert run.stderr.decode() == f"capanalyze: error: {message}\n"


def pcap_records(data: bytes) -> list[tuple[int, int]]:
    """(offset of the record header, caplen) of each record of a little-endian pcap."""
    out, p = [], 24
    while p + 16 <= len(data):
        cap = struct.unpack("<I", data[p + 8:p + 12])[0]
        out.append((p, cap))
        p += 16 + cap
    return out


def pcapng_blocks(data: bytes) -> list[tuple[int, int, int]]:
    """(offset, type, length) of each block of a little-endian pcapng."""
    out, p = [], 0
    while p + 8 <= len(data):
        btype, blen = struct.unpack("<II", data[p:p + 8])
        out.append((p, btype, blen))
        p += blen
    return out


# ---- not a capture: exit 2 with one line -----------------------------------------------
def test_text_file(tmp_path):
    path = tmp_path / "x.txt"
    path.write_text("Hello, this is not a capture\n")
    assert_error(cli("info", str(path)), f"{path}: not a pcap or pcapng file (starts with 0x48656c6c)")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.pcap"
    path.write_bytes(b"")
    assert_error(cli("info", str(path)), f"{path}: empty file (0 bytes)")


def test_missing_file(tmp_path):
    path = tmp_path / "nope.pcap"
    assert_error(cli("info", str(path)), f"{path}: cannot open (No such file or directory)")


def test_gzip_of_text(tmp_path):
    path = tmp_path / "x.txt.gz"
    path.write_bytes(gzip.compress(b"Hello again\n"))
    assert_error(cli("info", str(path)),
                 f"{path}: gzip data that does not hold a pcap or pcapng file (starts with 0x48656c6c)")


def test_pcap_header_cut_short(tmp_path):
    path = tmp_path / "short.pcap"
    path.write_bytes(ETH.read_bytes()[:10])
    assert_error(cli("info", str(path)), f"{path}: pcap file header cut short (10 of 24 bytes)")


def test_empty_stdin():
    assert_error(cli("info", "-", stdin=b""), "<stdin>: empty file (0 bytes)")


# ---- damaged captures: records before the damage + a warning, exit 0 -------------------
def test_truncated_mid_record(tmp_path):
    data = ETH.read_bytes()
    recs = pcap_records(data)
    path = tmp_path / "cut.pcap"
    path.write_bytes(data[:-37])
    info = info_json(path)
    n, (_, cap) = len(recs), recs[-1]
    assert info["records"] == n - 1
    assert info["warnings"] == [
        f"capture truncated mid-record after frame {n - 1} ({16 + cap - 37} of {16 + cap} "
        "bytes present): the last record was ignored"]
    text = cli("info", str(path)).stdout.decode()
    assert "warning: capture truncated mid-record" in text


def test_truncated_inside_record_header(tmp_path):
    data = ETH.read_bytes()
    last_offset, _ = pcap_records(data)[-1]
    path = tmp_path / "cut_header.pcap"
    path.write_bytes(data[:last_offset + 5])
    info = info_json(path)
    assert info["warnings"] == [
        f"capture truncated mid-record after frame {info['records']} (5 of 16 bytes present): "
        "the last record was ignored"]


def _pcap_with_caplen(tmp_path, value: int):
    """The Ethernet capture with its 5th record's captured length set to `value`."""
    data = bytearray(ETH.read_bytes())
    offset, _ = pcap_records(bytes(data))[4]
    data[offset + 8:offset + 12] = struct.pack("<I", value)
    path = tmp_path / "lying.pcap"
    path.write_bytes(bytes(data))
    return path, offset


@pytest.mark.parametrize("caplen", [262145, 0xFFFFFFFF])
def test_lying_record_length_stops_with_a_warning(tmp_path, caplen):
    path, offset = _pcap_with_caplen(tmp_path, caplen)
    info = info_json(path)
    assert info["records"] == 4
    assert info["warnings"] == [
        f"record 5 at byte {offset} claims {caplen} captured bytes, more than the snaplen "
        "262144 allows: damaged file, stopped reading after frame 4"]


def test_lying_zero_length_desynchronises_safely(tmp_path):
    path, _ = _pcap_with_caplen(tmp_path, 0)               # packet bytes now read as headers
    info = info_json(path)
    assert info["records"] >= 5 and info["skipped"]["empty record (0 bytes captured)"] >= 1
    warning = info["warnings"][0]
    assert len(info["warnings"]) == 1 and ("stopped reading" in warning or "truncated" in warning)


# A record header can claim up to 4 GiB on the wire. The wire length's int32 column took
# 2-4 GiB as an internal error interpreted (small captures) and as a negative length
# compiled; with IP total length 0 the payload length, taken from the wire, did the same.
WIRE_LENGTHS = (0xC9000000, 0x80000000, 0x50000000, 70_000)


def _pcap_with_wire_lengths(tmp_path):
    """Four SYNs claiming WIRE_LENGTHS on the wire; the last two with IP total length 0,
    which sends the decoder to the wire length (TSO packets captured on the sender)."""
    pkts = [Ether() / IP(src="192.0.2.1", dst="198.51.100.2", len=0 if i >= 2 else None)
            / TCP(sport=40000 + i, dport=80, flags="S") for i in range(4)]
    path = tmp_path / "wire.pcap"
    wrpcap(str(path), pkts)
    data = bytearray(path.read_bytes())
    for (offset, _), wire in zip(pcap_records(bytes(data)), WIRE_LENGTHS):
        struct.pack_into("<I", data, offset + 12, wire)
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("jit", ["0", "1"])
def test_wire_lengths_past_2_gib_read_as_the_header_says(tmp_path, jit):
    path = _pcap_with_wire_lengths(tmp_path)
    run = run_cli("packets", str(path), "-f", "csv", jit=jit)
    assert run.stderr == ""
    rows = list(csv.DictReader(io.StringIO(run.stdout)))
    assert [int(r["wire_len"]) for r in rows] == [WIRE_LENGTHS[0], WIRE_LENGTHS[1], WIRE_LENGTHS[3]]
    # a TSO-sized frame still gives the payload; one over 1 GiB is damage, said so
    assert int(rows[2]["payload_len"]) == 70_000 - 14 - 40
    info = json.loads(run_cli("info", str(path), "-f", "json", jit=jit).stdout)
    assert info["skipped"] == {"IP length 0 and a frame over 1 GiB": 1}


def test_gzip_cut_short(tmp_path):
    whole = info_json(FORMATS / "eth_ipv4.pcap.gz")
    data = (FORMATS / "eth_ipv4.pcap.gz").read_bytes()
    path = tmp_path / "cut.pcap.gz"
    path.write_bytes(data[:len(data) * 2 // 3])
    info = info_json(path)
    assert 0 < info["records"] < whole["records"]
    assert any(w.startswith("gzip stream cut short after ") and
               w.endswith(" uncompressed bytes: records read so far are kept")
               for w in info["warnings"])


def _pcapng_with_block_length(tmp_path, which: str, value: int):
    data = bytearray(NG.read_bytes())
    epbs = [b for b in pcapng_blocks(bytes(data)) if b[1] == 6]
    offset, _, blen = epbs[3]                               # the 4th packet block
    at = offset + 4 if which == "leading" else offset + blen - 4
    data[at:at + 4] = struct.pack("<I", value)
    path = tmp_path / "bad.pcapng"
    path.write_bytes(bytes(data))
    return path, offset


@pytest.mark.parametrize("length", [13, 8, 0])
def test_pcapng_impossible_block_length(tmp_path, length):
    path, offset = _pcapng_with_block_length(tmp_path, "leading", length)
    info = info_json(path)
    assert info["records"] == 3
    assert info["warnings"] == [
        f"pcapng block at byte {offset} has an impossible length {length} (must be a multiple "
        "of 4, at least 12): damaged file, stopped reading after frame 3"]


def test_pcapng_trailing_length_mismatch(tmp_path):
    path, offset = _pcapng_with_block_length(tmp_path, "trailing", 4096)
    info = info_json(path)
    assert info["records"] == 3
    assert info["warnings"] == [
        f"pcapng block at byte {offset}: trailing length 4096 differs from its leading length: "
        "damaged file, stopped reading after frame 3"]


def test_pcapng_block_longer_than_the_file(tmp_path):
    path, offset = _pcapng_with_block_length(tmp_path, "leading", 1 << 20)
    info = info_json(path)
    assert info["records"] == 3
    assert info["warnings"][0].startswith("capture truncated mid-block after frame 3 (")


# ---- where bytes come from ------------------------------------------------------------
def test_stdin_gives_the_same_counts():
    direct = info_json(ETH)
    run = cli("info", "-", "--format", "json", stdin=ETH.read_bytes())
    piped = json.loads(run.stdout)
    assert run.returncode == 0 and piped["path"] == "<stdin>"
    for key in ("format", "records", "tcp_packets", "skipped", "first_ts_ns", "last_ts_ns"):
        assert piped[key] == direct[key], key


def test_text_output_lists_outcomes():
    run = cli("info", str(ETH))
    assert run.returncode == 0
    out = run.stdout.decode()
    info = info_json(ETH)
    assert "format:      pcap" in out and "link type:   EN10MB" in out
    assert f"records:     {info['records']}" in out
    assert f"  TCP packets: {info['tcp_packets']}" in out
    for reason, count in info["skipped"].items():
        assert f"  {reason}: {count}" in out
    assert "first:       20" in out and out.count("Z\n") == 2       # ISO UTC times
