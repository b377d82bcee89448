"""Damaged-capture generators shared by the fuzz tests and the soak run.

Each mutation models a real way captures break: tcpdump killed mid-record, a disk
filling up, a lying record length, bit rot in a header, blocks reordered by a bad
merge. They operate on bytes and are deterministic given their parameters.
"""
from __future__ import annotations

import random
import struct

PCAP_MAGICS = (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")


def truncate(data: bytes, at: int) -> bytes:
    return data[: max(0, min(at, len(data)))]


def flip(data: bytes, offset: int, value: int) -> bytes:
    if not data:
        return data
    offset %= len(data)
    return data[:offset] + bytes([value & 0xFF]) + data[offset + 1:]


def record_offsets(data: bytes) -> list[int]:
    """Offsets of classic-pcap record headers (empty for pcapng or garbage)."""
    if data[:4] not in PCAP_MAGICS:
        return []
    little = data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1")
    fmt = "<I" if little else ">I"
    out, pos = [], 24
    while pos + 16 <= len(data) and len(out) < 100000:
        out.append(pos)
        caplen = struct.unpack_from(fmt, data, pos + 8)[0]
        pos += 16 + caplen
    return out


def lie_about_length(data: bytes, record: int, value: int) -> bytes:
    """Set a pcap record's caplen (or a pcapng block's length) to `value`."""
    offs = record_offsets(data)
    if offs:
        pos = offs[record % len(offs)] + 8
        little = data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1")
        return data[:pos] + struct.pack("<I" if little else ">I", value & 0xFFFFFFFF) + data[pos + 4:]
    blocks = pcapng_blocks(data)
    if not blocks:
        return data
    pos = blocks[record % len(blocks)][0] + 4
    return data[:pos] + struct.pack("<I", value & 0xFFFFFFFF) + data[pos + 4:]


def pcapng_blocks(data: bytes) -> list[tuple[int, int]]:
    """(offset, length) of each little-endian pcapng block, as far as they parse."""
    if data[:4] != b"\x0a\x0d\x0d\x0a" or data[8:12] != b"\x4d\x3c\x2b\x1a":
        return []
    out, pos = [], 0
    while pos + 12 <= len(data) and len(out) < 100000:
        length = struct.unpack_from("<I", data, pos + 4)[0]
        if length < 12 or pos + length > len(data):
            break
        out.append((pos, length))
        pos += length
    return out


def shuffle_blocks(data: bytes, seed: int) -> bytes:
    """Reorder a pcapng's blocks after the section header (a bad merge)."""
    blocks = pcapng_blocks(data)
    if len(blocks) < 3:
        return data
    head, rest = blocks[0], blocks[1:]
    random.Random(seed).shuffle(rest)
    return b"".join(data[o:o + n] for o, n in [head] + rest)


def mutate(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    """One random damage, described; used by the soak run."""
    kind = rng.choice(["truncate", "flip_header", "flip_any", "lie_zero", "lie_big",
                       "lie_huge", "shuffle", "flips"])
    if kind == "truncate":
        return kind, truncate(data, rng.randrange(len(data) + 1))
    if kind == "flip_header":
        return kind, flip(data, rng.randrange(min(len(data), 128) or 1), rng.randrange(256))
    if kind == "flip_any":
        return kind, flip(data, rng.randrange(len(data) or 1), rng.randrange(256))
    if kind == "flips":
        for _ in range(rng.randrange(2, 20)):
            data = flip(data, rng.randrange(len(data) or 1), rng.randrange(256))
        return kind, data
    if kind.startswith("lie"):
        value = {"lie_zero": 0, "lie_big": 65536 + rng.randrange(1 << 20), "lie_huge": 0xFFFFFFF0}[kind]
        return kind, lie_about_length(data, rng.randrange(1 << 16), value)
    return kind, shuffle_blocks(data, rng.randrange(1 << 30))
