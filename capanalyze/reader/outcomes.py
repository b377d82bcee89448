"""What happened to each record: a TCP packet, or the reason it is not in the table.

The decode kernel writes one small integer code per record plus an auxiliary number
(the ethertype, IP protocol, link type ... the reason depends on); `reason_text` turns the
pair into the human-readable key of CaptureInfo.skipped. Codes are stable numbers so the
compiled kernel and Python agree without sharing objects.
"""
from __future__ import annotations

import numpy as np

from ..jit import kernel

TCP = 0
NOT_TCP = 1             # aux: IP protocol / IPv6 next header
NOT_IP_ETHERTYPE = 2    # aux: ethertype (or SLL protocol)
NOT_IP_LLC = 3          # 802.3 frame (length field instead of an ethertype)
NOT_IP_AF = 4           # aux: BSD address family (NULL/LOOP link types)
UNKNOWN_LINKTYPE = 5    # aux: link type
EMPTY_RECORD = 6        # caplen 0
TRUNC_LINK = 7
TRUNC_IP = 8
BAD_IP_VERSION = 9      # aux: version nibble
BAD_IPV4_HLEN = 10
BAD_IP_LEN = 11         # IP total/payload length shorter than the headers it carries
TRUNC_IPV6_EXT = 12
NONFIRST_FRAGMENT = 13
TRUNC_TCP = 14
BAD_TCP_HLEN = 15
UNDECLARED_INTERFACE = 16  # aux: interface id of a pcapng packet with no matching IDB
IPV6_EXT_LOOP = 17      # more IPv6 extension headers than any real packet carries
NOT_A_PACKET = 18       # pcapng block Wireshark counts as a frame; aux 0 custom, 1 journal
IMPLAUSIBLE_IP_LEN = 19  # IP length 0 (taken from the frame) and a frame over 1 GiB

IP_PROTOCOLS = {
    0: "IPv6 hop-by-hop", 1: "ICMP", 2: "IGMP", 4: "IP-in-IP", 17: "UDP", 33: "DCCP",
    41: "IPv6-in-IP", 47: "GRE", 50: "ESP", 58: "ICMPv6", 59: "no next header",
    88: "EIGRP", 89: "OSPF", 103: "PIM", 112: "VRRP", 132: "SCTP", 136: "UDP-Lite",
}

_FIXED = {
    NOT_IP_LLC: "not IP: 802.3/LLC frame",
    EMPTY_RECORD: "empty record (0 bytes captured)",
    TRUNC_LINK: "truncated link-layer header",
    TRUNC_IP: "truncated IP header",
    BAD_IPV4_HLEN: "bad IPv4 header length",
    BAD_IP_LEN: "bad IP length (shorter than its headers)",
    TRUNC_IPV6_EXT: "truncated IPv6 extension header",
    NONFIRST_FRAGMENT: "non-first IP fragment",
    TRUNC_TCP: "truncated TCP header",
    BAD_TCP_HLEN: "bad TCP header length",
    IPV6_EXT_LOOP: "too many IPv6 extension headers",
    IMPLAUSIBLE_IP_LEN: "IP length 0 and a frame over 1 GiB",
}


def reason_text(code: int, aux: int) -> str:
    """The CaptureInfo.skipped key for one (code, aux) pair."""
    if code in _FIXED:
        return _FIXED[code]
    if code == NOT_TCP:
        return f"not TCP: {IP_PROTOCOLS.get(aux, f'IP protocol {aux}')}"
    if code == NOT_IP_ETHERTYPE:
        if aux == 0x0806:
            return "not TCP: ARP"
        return f"not IP: ethertype 0x{aux:04x}"
    if code == NOT_IP_AF:
        return f"not IP: address family {aux}"
    if code == UNKNOWN_LINKTYPE:
        return f"unknown link type {aux}"
    if code == BAD_IP_VERSION:
        return f"bad IP version {aux}"
    if code == NOT_A_PACKET:
        return "not a packet: pcapng " + ("systemd journal entry" if aux == 1 else "custom block")
    if code == UNDECLARED_INTERFACE:
        return f"packet for undeclared interface {aux}"
    return f"outcome {code}/{aux}"


NO_TIME = -(1 << 63)   # walk_summary's `before` when no record came before


@kernel
def walk_summary(ts_ns, codes, aux, before, skipped_keys):
    """One pass over a walk's records: (earliest time, latest time, times earlier than
    the record before, starting from `before`, records that are not TCP packets), and
    the (outcome, detail) key of each of those in skipped_keys[:skipped]. As numpy
    passes with their temporaries: 0.04-0.1 s of the reader thread per 5M packets, and
    0.03 s more to pick out the keys."""
    lo, hi, backwards, skipped = ts_ns[0], ts_ns[0], 0, 0
    last = before
    for i in range(len(ts_ns)):
        t = ts_ns[i]
        lo, hi = min(lo, t), max(hi, t)
        if t < last:
            backwards += 1
        last = t
        if codes[i] != TCP:
            skipped_keys[skipped] = (np.int64(codes[i]) << 32) | (aux[i] & 0xFFFFFFFF)
            skipped += 1
    return lo, hi, backwards, skipped


def skipped_reasons(keys: np.ndarray) -> dict[str, int]:
    """Reason -> count, from walk_summary's keys of the records that are not TCP packets."""
    uniq, counts = np.unique(keys, return_counts=True)
    out: dict[str, int] = {}
    for key, count in zip(uniq.tolist(), counts.tolist()):
        reason = reason_text(key >> 32, key & 0xFFFFFFFF)
        out[reason] = out.get(reason, 0) + count
    return out
