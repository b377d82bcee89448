"""An independent, slow reference decoder: plain-Python record framing + dpkt headers.

Used only by the tests to check the compiled reader field by field. It shares no code
with capanalyze.reader: framing is parsed with struct, link/IP/TCP headers with dpkt,
TCP options with a straightforward Python loop over dpkt's `opts` bytes.
"""
from __future__ import annotations

import gzip
import ipaddress
import socket
import struct

import dpkt
from dpkt import ethernet, ip as dip, ip6 as dip6, loopback, sll, sll2, tcp as dtcp

RAW_TYPES = {12, 14, 101, 228, 229}


def load_bytes(path) -> bytes:
    data = open(path, "rb").read()
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


def iter_records(data: bytes):
    """(ts_seconds_float, interface, linktype, caplen, wire_len, packet bytes) per record."""
    magic = data[:4]
    if magic == b"\x0a\x0d\x0d\x0a":
        yield from _pcapng_records(data)
    else:
        yield from _pcap_records(data)


def _pcap_records(data):
    magic = struct.unpack("<I", data[:4])[0]
    order = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    nsec = magic in (0xA1B23C4D, 0x4D3CB2A1)
    linktype = struct.unpack(order + "I", data[20:24])[0] & 0xFFFF
    p = 24
    while p + 16 <= len(data):
        sec, frac, cap, wire = struct.unpack(order + "IIII", data[p:p + 16])
        if p + 16 + cap > len(data):
            return
        yield sec + frac / (1e9 if nsec else 1e6), 0, linktype, cap, wire, data[p + 16:p + 16 + cap]
        p += 16 + cap


def _pcapng_records(data):
    p, order, section_ifs, all_ifs = 0, "<", [], []
    last_ts = 0.0
    while p + 12 <= len(data):
        if data[p:p + 4] == b"\x0a\x0d\x0d\x0a":
            order = "<" if data[p + 8:p + 12] == b"\x4d\x3c\x2b\x1a" else ">"
            section_ifs = []
        btype, blen = struct.unpack(order + "II", data[p:p + 8])
        if p + blen > len(data):
            return
        body = data[p + 8:p + blen - 4]
        p += blen
        if btype == 1:
            linktype, _, snap = struct.unpack(order + "HHI", body[:8])
            div, offset = 1e6, 0
            for code, value in _options(body[8:], order):
                if code == 9:
                    div = (2.0 if value[0] & 0x80 else 10.0) ** (value[0] & 0x7F)
                elif code == 14:
                    offset = struct.unpack(order + "q", value)[0]
            section_ifs.append(len(all_ifs))
            all_ifs.append((linktype, snap, div, offset))
        elif btype in (2, 6):
            if btype == 6:
                ifid, hi, lo, cap, wire = struct.unpack(order + "IIIII", body[:20])
            else:
                ifid, _drops, hi, lo, cap, wire = struct.unpack(order + "HHIIII", body[:20])
            g = section_ifs[ifid]
            linktype, _snap, div, offset = all_ifs[g]
            last_ts = ((hi << 32) | lo) / div + offset
            yield last_ts, g, linktype, cap, wire, body[20:20 + cap]
        elif btype == 3:
            wire = struct.unpack(order + "I", body[:4])[0]
            g = section_ifs[0]
            linktype, snap = all_ifs[g][:2]
            cap = min(wire, len(body) - 4, snap or wire)
            yield last_ts, g, linktype, cap, wire, body[4:4 + cap]
        elif btype in (0xBAD, 0x40000BAD, 9):      # custom / journal: frames in Wireshark
            yield last_ts, -1, -1, 0, 0, b""


def _options(buf, order):
    p = 0
    while p + 4 <= len(buf):
        code, ln = struct.unpack(order + "HH", buf[p:p + 4])
        if code == 0:
            return
        yield code, buf[p + 4:p + 4 + ln]
        p += 4 + ((ln + 3) & ~3)


def ip_layer(linktype: int, pkt: bytes):
    """dpkt IP/IP6 object of a link-layer frame, or None when it is not plain IP."""
    try:
        if linktype == 1:
            frame = ethernet.Ethernet(pkt)
            if getattr(frame, "mpls_labels", None):
                return None
            inner = frame.data
        elif linktype == 113:
            inner = sll.SLL(pkt).data
        elif linktype == 276:
            inner = sll2.SLL2(pkt).data
        elif linktype in RAW_TYPES:
            inner = (dip.IP if pkt[0] >> 4 == 4 else dip6.IP6)(pkt)
        elif linktype in (0, 108):
            inner = loopback.Loopback(pkt).data
        else:
            return None
    except (dpkt.UnpackError, IndexError, struct.error):
        return None
    return inner if isinstance(inner, (dip.IP, dip6.IP6)) else None


def tcp_row(ip, wire_ip_len: int):
    """Reference packet-table fields from a dpkt IP/IP6 packet, or None if not TCP."""
    if isinstance(ip, dip.IP):
        if ip.offset != 0 or ip.p != 6:
            return None
        seg_len = (ip.len or wire_ip_len) - ip.hl * 4
        row = dict(ip_version=4, src=socket.inet_ntoa(ip.src), dst=socket.inet_ntoa(ip.dst),
                   ttl=ip.ttl, ip_id=ip.id, fragment=bool(ip.mf))
    else:
        exts = getattr(ip, "all_extension_headers", [])
        frag = ip.extension_hdrs.get(44)
        if frag is not None and frag.frag_off != 0:
            return None
        if ip.p != 6:
            return None
        seg_len = (ip.plen or wire_ip_len - 40) - sum(e.length for e in exts)
        row = dict(ip_version=6, src=str(ipaddress.IPv6Address(ip.src)),
                   dst=str(ipaddress.IPv6Address(ip.dst)), ttl=ip.hlim, ip_id=-1,
                   fragment=bool(frag is not None and frag.m_flag))
    seg = ip.data
    if not isinstance(seg, dtcp.TCP):
        try:
            seg = dtcp.TCP(bytes(seg))
        except (dpkt.UnpackError, dpkt.NeedData):
            return None
    if seg.off * 4 > seg_len:
        return None
    row.update(sport=seg.sport, dport=seg.dport, seq=seg.seq, ack=seg.ack, window=seg.win,
               tcp_flags=seg.flags | ((seg.off_x2 & 1) << 8) if hasattr(seg, "off_x2")
               else seg.flags, payload_len=seg_len - seg.off * 4)
    row.update(tcp_options(bytes(seg.opts)))
    return row


def tcp_options(opts: bytes) -> dict:
    out = dict(mss=-1, wscale=-1, sack_perm=False, sack_blocks=0, sack_left=-1,
               sack_right=-1, tsval=-1, tsecr=-1)
    i = 0
    while i < len(opts):
        kind = opts[i]
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        if i + 1 >= len(opts) or opts[i + 1] < 2 or i + opts[i + 1] > len(opts):
            break                     # broken length: stop, like Wireshark
        ln, val = opts[i + 1], opts[i + 2:i + opts[i + 1]]
        if kind == 2 and ln == 4:
            out["mss"] = struct.unpack(">H", val)[0]
        elif kind == 3 and ln == 3:
            out["wscale"] = val[0]
        elif kind == 4 and ln == 2:
            out["sack_perm"] = True
        elif kind == 5 and ln >= 10 and (ln - 2) % 8 == 0:
            out["sack_blocks"] = (ln - 2) // 8
            out["sack_left"], out["sack_right"] = struct.unpack(">II", val[:8])
        elif kind == 8 and ln == 10:
            out["tsval"], out["tsecr"] = struct.unpack(">II", val)
        i += ln
    return out


LINK_HEADER = {113: 16, 276: 20, 0: 4, 108: 4, **{t: 0 for t in RAW_TYPES}}


def reference_table(path) -> tuple[list[dict], int]:
    """(one dict per TCP packet, number of records) for a capture file."""
    rows, n = [], 0
    for n, (ts, iface, linktype, cap, wire, pkt) in enumerate(iter_records(load_bytes(path)), 1):
        ip = ip_layer(linktype, pkt)
        if ip is None:
            continue
        link_len = _ethernet_header_len(pkt) if linktype == 1 else LINK_HEADER[linktype]
        try:
            row = tcp_row(ip, wire - link_len)
        except (dpkt.UnpackError, dpkt.NeedData, IndexError, struct.error):
            row = None
        if row is None:
            continue
        row.update(frame=n, ts=ts, interface=iface, truncated=cap < wire, wire_len=wire)
        rows.append(row)
    return rows, n


def _ethernet_header_len(pkt: bytes) -> int:
    n, et = 14, struct.unpack(">H", pkt[12:14])[0]
    while et in (0x8100, 0x88A8, 0x9100, 0x9200):
        et = struct.unpack(">H", pkt[n + 2:n + 4])[0]
        n += 4
    return n


# ---- which captures the reader tests run on ------------------------------------------
from pathlib import Path  # noqa: E402

TESTS = Path(__file__).resolve().parent
FORMATS = TESTS / "data" / "formats"
SAMPLES = TESTS.parent / "sample_pcaps"
PPA = Path("/work/shared/pcaps/ppa")
CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".pcap.gz", ".pcapng.gz", ".cap")


def capture_files(*dirs: Path) -> list[Path]:
    """Capture files under the given directories (recursively), sorted."""
    out = []
    for d in dirs:
        if d.is_dir():
            out += [p for p in d.rglob("*") if p.is_file() and p.name.endswith(CAPTURE_SUFFIXES)]
    return sorted(out)
