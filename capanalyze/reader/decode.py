"""Compiled header decode: records -> TCP packet columns + an outcome per record.

Every read is bounds-checked against the record's captured length, so a snaplen cut
or a lying header field yields an outcome code, never an out-of-bounds read. Fields of
TCP packets go to compact output rows (only TCP packets become rows); every record gets
an outcome code and an auxiliary number for the skipped-record accounting. decode_one
is one record: the pcap walk calls it on each record as it finds it (its bytes are then
in cache: walk + decode of a 1.9 GB capture 0.45-0.51 -> 0.27 s); pcapng blocks are
walked first, then decoded by decode_records.

Choices worth knowing:
- First fragments of a fragmented TCP segment are decoded (the TCP header is there);
  payload_len then counts this fragment's share only (no reassembly) and `fragment` is
  set. Non-first fragments are counted as "non-first IP fragment".
- A TCP header needs its 20 fixed bytes captured; options are decoded as far as they
  are captured (a cut option reads as absent). Fewer than 20 bytes: "truncated TCP header".
- IP total length 0 (TSO/LRO packets captured on the sending host) and IPv6 payload
  length 0 (jumbograms) fall back to the wire length, as Wireshark does, up to the
  largest TCP window (1 GiB): past it the record header's length is damage, and the
  record is counted as "IP length 0 and a frame over 1 GiB".
- Tunnels (IP-in-IP, GRE, MPLS, PPPoE) are not looked into: counted as not TCP/not IP.
"""
from __future__ import annotations

from collections import namedtuple

import numpy as np
from ..jit import kernel

from . import linktypes as lt
from . import outcomes as oc
from .records import NOT_A_PACKET_BASE

# Names of the per-TCP-packet output arrays, with dtypes, in kernel argument order.
TCP_FIELDS: dict[str, str] = {
    "frame": "int64", "ts_ns": "int64", "interface": "int32", "ip_version": "int8",
    "src_hi": "uint64", "src_lo": "uint64", "dst_hi": "uint64", "dst_lo": "uint64",
    "sport": "uint16", "dport": "uint16", "ttl": "uint8", "ip_id": "int32",
    "tcp_flags": "uint16", "seq": "uint32", "ack": "uint32", "window": "uint16",
    "payload_len": "int32", "mss": "int32", "wscale": "int16", "sack_perm": "bool",
    "sack_blocks": "int8", "sack_left": "int64", "sack_right": "int64", "tsval": "int64",
    "tsecr": "int64", "truncated": "bool", "wire_len": "uint32", "fragment": "bool",
}

TcpRows = namedtuple("TcpRows", list(TCP_FIELDS))


def tcp_rows(n: int) -> TcpRows:
    """Room for n decoded TCP rows."""
    return TcpRows(*(np.empty(n, dtype) for dtype in TCP_FIELDS.values()))


V4_MAPPED = np.uint64(0xFFFF) << np.uint64(32)
# No TCP segment is larger than the largest window (2^30 bytes, RFC 7323), and with this
# bound payload_len fits its int32 column whatever a damaged record header claims.
MAX_SEGMENT = 1 << 30


@kernel(inline="always")
def be16(buf, p):
    return (np.int64(buf[p]) << 8) | np.int64(buf[p + 1])


@kernel(inline="always")
def be32(buf, p):
    return (be16(buf, p) << 16) | be16(buf, p + 2)


@kernel(inline="always")
def be64u(buf, p):
    return (np.uint64(be32(buf, p)) << np.uint64(32)) | np.uint64(be32(buf, p + 4))


@kernel(inline="always")
def _link_header(buf, p, end, linktype):
    """(ip start, expected IP version 0/4/6, outcome, aux) after the link-layer header."""
    if linktype == lt.EN10MB:
        if p + 14 > end:
            return p, 0, oc.TRUNC_LINK, 0
        et = be16(buf, p + 12)
        q = p + 14
    elif linktype == lt.LINUX_SLL2:
        if p + 20 > end:
            return p, 0, oc.TRUNC_LINK, 0
        et = be16(buf, p)
        q = p + 20
    elif linktype == lt.LINUX_SLL:
        if p + 16 > end:
            return p, 0, oc.TRUNC_LINK, 0
        et = be16(buf, p + 14)
        q = p + 16
    elif (linktype == lt.RAW or linktype == lt.RAW_OLD_12 or linktype == lt.RAW_OLD_14
          or linktype == lt.IPV4 or linktype == lt.IPV6):
        return p, 0, oc.TCP, 0
    elif linktype == lt.NULL or linktype == lt.LOOP:
        if p + 4 > end:
            return p, 0, oc.TRUNC_LINK, 0
        if linktype == lt.LOOP:
            af = be32(buf, p)
        else:   # host byte order of the capturing machine: AF values are small
            af = be32(buf, p)
            if af > 0xFFFF:
                af = ((af & 0xFF) << 24) | ((af & 0xFF00) << 8) | ((af >> 8) & 0xFF00) | (af >> 24)
        if af == 2:
            return p + 4, 4, oc.TCP, 0
        if af == 24 or af == 28 or af == 30:
            return p + 4, 6, oc.TCP, 0
        return p, 0, oc.NOT_IP_AF, af
    else:
        return p, 0, oc.UNKNOWN_LINKTYPE, linktype
    # 802.1Q / 802.1ad / legacy QinQ (0x9100, 0x9200) tags, any depth
    while et == 0x8100 or et == 0x88A8 or et == 0x9100 or et == 0x9200:
        if q + 4 > end:
            return p, 0, oc.TRUNC_LINK, 0
        et = be16(buf, q + 2)
        q += 4
    if et == 0x0800:
        return q, 4, oc.TCP, 0
    if et == 0x86DD:
        return q, 6, oc.TCP, 0
    if et < 0x0600:
        return q, 0, oc.NOT_IP_LLC, 0
    return q, 0, oc.NOT_IP_ETHERTYPE, et


@kernel(inline="always")
def _tcp_options(buf, o, o_end):
    """TCP options in buf[o:o_end] -> (mss, wscale, sack_perm, sack_blocks, sack_left,
    sack_right, tsval, tsecr); -1/False/0 when absent. A malformed length stops the walk
    (what came before it is kept), so a hostile option cannot loop or overrun."""
    mss = wscale = sack_left = sack_right = tsval = tsecr = np.int64(-1)
    sack_blocks = np.int64(0)
    sack_perm = False
    while o < o_end:
        kind = buf[o]
        if kind == 0:
            break
        if kind == 1:
            o += 1
            continue
        if o + 2 > o_end:
            break
        ln = np.int64(buf[o + 1])
        if ln < 2 or o + ln > o_end:
            break
        if kind == 2 and ln == 4:
            mss = be16(buf, o + 2)
        elif kind == 3 and ln == 3:
            wscale = np.int64(buf[o + 2])
        elif kind == 4 and ln == 2:
            sack_perm = True
        elif kind == 5 and ln >= 10 and (ln - 2) % 8 == 0:
            sack_blocks = (ln - 2) // 8
            sack_left = be32(buf, o + 2)
            sack_right = be32(buf, o + 6)
        elif kind == 8 and ln == 10:
            tsval = be32(buf, o + 2)
            tsecr = be32(buf, o + 6)
        o += ln
    return mss, wscale, sack_perm, sack_blocks, sack_left, sack_right, tsval, tsecr


@kernel(inline="always")
def _ip_header(buf, q, end, version, ip_wire):
    """IPv4/IPv6 header walk. Returns (outcome, aux, tcp start, tcp segment length,
    version, ttl, ip_id, src_hi, src_lo, dst_hi, dst_lo, fragment)."""
    z = np.uint64(0)
    if q + 1 > end:
        return oc.TRUNC_IP, 0, 0, 0, 0, 0, 0, z, z, z, z, False
    v = np.int64(buf[q] >> 4)
    if (version != 0 and v != version) or (v != 4 and v != 6):
        return oc.BAD_IP_VERSION, v, 0, 0, 0, 0, 0, z, z, z, z, False
    if v == 4:
        if q + 20 > end:
            return oc.TRUNC_IP, 0, 0, 0, 0, 0, 0, z, z, z, z, False
        ihl = np.int64(buf[q] & 15) * 4
        if ihl < 20:
            return oc.BAD_IPV4_HLEN, 0, 0, 0, 0, 0, 0, z, z, z, z, False
        if q + ihl > end:
            return oc.TRUNC_IP, 0, 0, 0, 0, 0, 0, z, z, z, z, False
        total = be16(buf, q + 2)
        if total == 0:
            if ip_wire > MAX_SEGMENT:
                return oc.IMPLAUSIBLE_IP_LEN, 0, 0, 0, 0, 0, 0, z, z, z, z, False
            total = ip_wire
        if total < ihl:
            return oc.BAD_IP_LEN, 0, 0, 0, 0, 0, 0, z, z, z, z, False
        frag = be16(buf, q + 6)
        if frag & 0x1FFF:
            return oc.NONFIRST_FRAGMENT, 0, 0, 0, 0, 0, 0, z, z, z, z, False
        proto = np.int64(buf[q + 9])
        if proto != 6:
            return oc.NOT_TCP, proto, 0, 0, 0, 0, 0, z, z, z, z, False
        src = V4_MAPPED | np.uint64(be32(buf, q + 12))
        dst = V4_MAPPED | np.uint64(be32(buf, q + 16))
        return (oc.TCP, 0, q + ihl, total - ihl, 4, np.int64(buf[q + 8]), be16(buf, q + 4),
                z, src, z, dst, (frag & 0x2000) != 0)
    if q + 40 > end:
        return oc.TRUNC_IP, 0, 0, 0, 0, 0, 0, z, z, z, z, False
    plen = be16(buf, q + 4)
    if plen == 0:
        if ip_wire > MAX_SEGMENT:
            return oc.IMPLAUSIBLE_IP_LEN, 0, 0, 0, 0, 0, 0, z, z, z, z, False
        plen = ip_wire - 40
    nh = np.int64(buf[q + 6])
    t = q + 40
    fragment = False
    hops = 0
    while True:
        hops += 1
        if hops > 16:
            return oc.IPV6_EXT_LOOP, 0, 0, 0, 0, 0, 0, z, z, z, z, False
        if nh == 0 or nh == 43 or nh == 60 or nh == 51:
            if t + 2 > end:
                return oc.TRUNC_IPV6_EXT, 0, 0, 0, 0, 0, 0, z, z, z, z, False
            if nh == 51:
                hlen = (np.int64(buf[t + 1]) + 2) * 4
            else:
                hlen = (np.int64(buf[t + 1]) + 1) * 8
            nh = np.int64(buf[t])
            t += hlen
        elif nh == 44:
            if t + 8 > end:
                return oc.TRUNC_IPV6_EXT, 0, 0, 0, 0, 0, 0, z, z, z, z, False
            fo = be16(buf, t + 2)
            if fo >> 3:
                return oc.NONFIRST_FRAGMENT, 0, 0, 0, 0, 0, 0, z, z, z, z, False
            fragment = (fo & 1) != 0
            nh = np.int64(buf[t])
            t += 8
        else:
            break
    if nh != 6:
        return oc.NOT_TCP, nh, 0, 0, 0, 0, 0, z, z, z, z, False
    seg = plen - (t - q - 40)
    if seg < 0:
        return oc.BAD_IP_LEN, 0, 0, 0, 0, 0, 0, z, z, z, z, False
    return (oc.TCP, 0, t, seg, 6, np.int64(buf[q + 7]), -1, be64u(buf, q + 8),
            be64u(buf, q + 16), be64u(buf, q + 24), be64u(buf, q + 32), fragment)


@kernel
def decode_records(buf, off, cap, wire, ts_ns, iface, linktype, n, frame_base,
                   outcome, aux, out):
    """Decode records 0..n-1; fills outcome/aux for all, `out` rows for TCP ones.

    Returns the number of TCP rows written."""
    k = 0
    for i in range(n):
        outcome[i], aux[i], written = decode_one(buf, off[i], cap[i], wire[i], ts_ns[i], iface[i],
                                                 linktype[i], frame_base + i + 1, out, k)
        k += written
    return k


@kernel(inline="always")
def decode_one(buf, p, cap, wire, ts_ns, iface, linktype, frame, out, k):
    """One record at buf[p:p+cap] -> (outcome, aux, rows written): row k of `out` when TCP."""
    end = p + cap
    if linktype < 0:
        if iface <= NOT_A_PACKET_BASE:
            return oc.NOT_A_PACKET, NOT_A_PACKET_BASE - iface, 0
        return oc.UNDECLARED_INTERFACE, -1 - iface, 0
    if cap == 0:
        return oc.EMPTY_RECORD, 0, 0
    q, version, code, extra = _link_header(buf, p, end, linktype)
    if code != oc.TCP:
        return code, extra, 0
    ip_wire = wire - (q - p)
    (code, extra, t, seg, v, ttl, ip_id, shi, slo, dhi, dlo,
     fragment) = _ip_header(buf, q, end, version, ip_wire)
    if code == oc.TCP:
        if t + 20 > end:
            code = oc.TRUNC_TCP
        else:
            doff = np.int64(buf[t + 12] >> 4) * 4
            if doff < 20 or doff > seg:
                code = oc.BAD_TCP_HLEN
    if code != oc.TCP:
        return code, extra, 0
    out.frame[k] = frame
    out.ts_ns[k] = ts_ns
    out.interface[k] = iface
    out.ip_version[k] = v
    out.src_hi[k] = shi
    out.src_lo[k] = slo
    out.dst_hi[k] = dhi
    out.dst_lo[k] = dlo
    out.sport[k] = be16(buf, t)
    out.dport[k] = be16(buf, t + 2)
    out.ttl[k] = ttl
    out.ip_id[k] = ip_id
    out.seq[k] = be32(buf, t + 4)
    out.ack[k] = be32(buf, t + 8)
    out.tcp_flags[k] = be16(buf, t + 12) & 0x1FF
    out.window[k] = be16(buf, t + 14)
    out.payload_len[k] = seg - doff
    (out.mss[k], out.wscale[k], out.sack_perm[k], out.sack_blocks[k], out.sack_left[k],
     out.sack_right[k], out.tsval[k], out.tsecr[k]) = _tcp_options(buf, t + 20,
                                                                  min(t + doff, end))
    out.truncated[k] = cap < wire
    out.wire_len[k] = wire
    out.fragment[k] = fragment
    return oc.TCP, extra, 1
