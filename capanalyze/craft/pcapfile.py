"""Writing conversations (or raw packets) to a time-ordered pcap."""
from __future__ import annotations

import struct
from pathlib import Path
from typing import Iterable

from scapy.packet import Packet

from .stacks import NS
from .conversation import Conversation


def records_of(source) -> list[tuple[int, bytes]]:
    """(epoch ns, frame bytes) of a Conversation, scapy packets or such tuples."""
    if isinstance(source, Conversation):
        return source.records()
    out = []
    for item in source:
        if isinstance(item, Packet):
            out.append((round(float(item.time) * 1e6) * 1000, bytes(item)))
        else:
            out.append((int(item[0]), bytes(item[1])))
    return out


def write_pcap(path: str | Path, *sources, linktype: str = "ethernet",
               nanosecond: bool = False, snaplen: int = 262144) -> int:
    """Write Conversations and/or packet lists into one classic pcap, merged by time
    (stable for equal times). linktype "ethernet" (1) or "raw" (101, IP only).
    Returns the number of frames written."""
    if linktype not in ("ethernet", "raw"):
        raise ValueError("linktype must be 'ethernet' or 'raw'")
    recs = [r for src in sources for r in records_of(src)]
    recs.sort(key=lambda r: r[0])
    magic = 0xA1B23C4D if nanosecond else 0xA1B2C3D4
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", magic, 2, 4, 0, 0, snaplen,
                            1 if linktype == "ethernet" else 101))
        for t_ns, frame in recs:
            if linktype == "raw":
                frame = frame[14:]
            sec, frac = divmod(t_ns, NS)
            sub = frac if nanosecond else round(frac / 1000)
            if not nanosecond and sub == 1_000_000:
                sec, sub = sec + 1, 0
            cap = frame[:snaplen]
            f.write(struct.pack("<IIII", sec, sub, len(cap), len(frame)))
            f.write(cap)
    return len(recs)


def merge(*sources: Iterable) -> list[tuple[int, bytes]]:
    """All records of several sources in time order (for writing elsewhere)."""
    return sorted((r for s in sources for r in records_of(s)), key=lambda r: r[0])
