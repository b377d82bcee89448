"""Helpers for make_formats.sh (documented there): send odd packets, rewrite captures.

    craft.py send-ipv6 IFACE PEER_MAC      scapy: TCP behind IPv6 extension headers, ...
    craft.py send-ipv4 IFACE PEER_MAC      scapy: IPv4 options, fragmented TCP, odd options
    craft.py ping DST SIZE                 scapy: one echo request (fragmented if large)
    craft.py send-vlan IFACE PCAP          scapy: re-send a capture's TCP frames VLAN-tagged
    craft.py bigendian-pcap IN OUT         byte-swap a pcap's headers (no tool writes BE)
    craft.py bigendian-pcapng IN OUT       re-encode pcapng blocks big-endian
    craft.py null RAW4 RAW6 OUT            raw-IP captures -> BSD NULL (AF in host order)
    craft.py loop RAW4 RAW6 OUT            raw-IP captures -> OpenBSD LOOP (AF big-endian)
"""
from __future__ import annotations

import struct
import sys

SRC4, DST4, SRC6, DST6 = "10.99.0.1", "10.99.0.2", "fd99::1", "fd99::2"
SYN_OPTS = [("MSS", 1400), ("SAckOK", b""), ("Timestamp", (12345, 0)), ("NOP", None),
            ("WScale", 7)]


def send_ipv6(iface: str, mac: str) -> None:
    from scapy.all import (IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop,
                           IPv6ExtHdrRouting, Ether, Raw, TCP, fragment6, sendp)
    from scapy.layers.ipsec import AH

    e, ip = Ether(dst=mac), IPv6(src=SRC6, dst=DST6)
    tcp = lambda port, **kw: TCP(sport=port, dport=8080, **kw)  # noqa: E731
    pkts = [
        e / ip / IPv6ExtHdrHopByHop() / tcp(41001, flags="S", seq=1001, options=SYN_OPTS),
        e / ip / IPv6ExtHdrDestOpt() / tcp(41002, flags="S", seq=2002, options=SYN_OPTS),
        e / ip / IPv6ExtHdrRouting(addresses=[]) / tcp(41003, flags="S", seq=3003),
        e / ip / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() / IPv6ExtHdrRouting(addresses=[])
        / IPv6ExtHdrDestOpt() / tcp(41004, flags="PA", seq=4004, ack=7) / Raw(b"chain"),
        e / ip / AH(nh=6, payloadlen=4, spi=0x100, seq=1, icv=b"\0" * 12)
        / tcp(41005, flags="PA", seq=5005, ack=9) / Raw(b"ah"),
        e / ip / tcp(41006, flags="A", seq=6006, ack=11,
                     options=[("NOP", None), ("NOP", None), ("SAck", (5000, 6000, 7000, 8000))]),
        e / ip / tcp(41007, flags=0x1C2, seq=7007),     # SYN with ECE, CWR and NS bits
    ]
    frags = fragment6(ip / IPv6ExtHdrFragment(id=77) / tcp(41008, flags="PA", seq=8008, ack=1)
                      / Raw(b"f" * 2000), 1000)
    pkts += [e / f for f in frags]
    pkts.append(e / IPv6(src=SRC6, dst=DST6, nh=6) / bad_options(tcp(41009, flags="A", seq=9009, ack=1)))
    sendp(pkts, iface=iface, verbose=False)


def bad_options(tcp):
    """A TCP header whose options have broken lengths (0, then past the header), as Raw:
    the IP header around it must say proto/nh 6 itself."""
    from scapy.all import Raw
    t = tcp.copy()
    t.options = [("NOP", None)] * 12
    raw = bytearray(bytes(t))
    raw[20:32] = bytes([1, 2, 0, 1, 8, 40, 0, 0, 0, 0, 0, 0])  # MSS len 0; TS len 40
    return Raw(bytes(raw))


def send_ipv4(iface: str, mac: str) -> None:
    from scapy.all import IP, IPOption_RR, Ether, Raw, TCP, fragment, sendp

    e = Ether(dst=mac)
    ip = lambda **kw: IP(src=SRC4, dst=DST4, **kw)  # noqa: E731
    tcp = lambda port, **kw: TCP(sport=port, dport=8080, **kw)  # noqa: E731
    pkts = [
        e / ip(options=[IPOption_RR(routers=["0.0.0.0"] * 3)])
        / tcp(42001, flags="S", seq=1, options=SYN_OPTS),
        e / ip() / tcp(42002, flags="A", seq=2, ack=3,
                       options=[("NOP", None), ("NOP", None),
                                ("SAck", (100, 200, 300, 400, 500, 600))]),
        e / ip(proto=6) / bad_options(tcp(42003, flags="A", seq=3, ack=4)),
        e / ip() / tcp(42004, flags=0x1C2, seq=4),
        e / ip(ihl=4) / tcp(42005, flags="S", seq=5),          # bad IPv4 header length
        e / ip(proto=6) / Raw(bytes(tcp(42006, flags="S", seq=6, dataofs=3))),  # bad TCP hdr len
    ]
    frags = fragment(ip(flags=0, id=4242) / tcp(42007, flags="PA", seq=7, ack=1)
                     / Raw(b"z" * 1500), fragsize=600)
    pkts += [e / f for f in frags]
    sendp(pkts, iface=iface, verbose=False)


def ping(dst: str, size: str) -> None:
    from scapy.all import (ICMP, IP, ICMPv6EchoRequest, IPv6, IPv6ExtHdrFragment, Raw,
                           fragment, fragment6, send)

    data = Raw(b"p" * int(size))
    if ":" in dst:
        pkt = IPv6(dst=dst) / IPv6ExtHdrFragment(id=99) / ICMPv6EchoRequest(id=7) / data
        send(fragment6(pkt, 1280) if int(size) > 1200 else pkt, verbose=False)
    else:
        pkt = IP(dst=dst, flags=0) / ICMP(id=7) / data
        send(fragment(pkt, 1400) if int(size) > 1400 else pkt, verbose=False)
    import time
    time.sleep(0.3)


def send_vlan(iface: str, pcap: str) -> None:
    """Each TCP frame of `pcap` twice: tagged 802.1Q 100, and 802.1ad 200 + 802.1Q 300."""
    from scapy.all import TCP, Dot1AD, Dot1Q, Ether, rdpcap, sendp

    out = []
    for frame in rdpcap(pcap):
        if TCP not in frame:
            continue
        head, inner = frame[Ether], frame[Ether].payload
        mk = lambda: Ether(src=head.src, dst=head.dst)  # noqa: E731
        out.append(mk() / Dot1Q(vlan=100) / inner.copy())
        out.append(mk() / Dot1AD(vlan=200) / Dot1Q(vlan=300) / inner.copy())
    sendp(out, iface=iface, verbose=False)


# ---- rewriting captures --------------------------------------------------------------
def read_pcap(path: str):
    data = open(path, "rb").read()
    assert data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"), "little-endian pcap expected"
    hdr, p, recs = data[:24], 24, []
    while p + 16 <= len(data):
        sec, frac, cap, wire = struct.unpack("<IIII", data[p:p + 16])
        recs.append((sec, frac, wire, data[p + 16:p + 16 + cap]))
        p += 16 + cap
    return hdr, recs


def bigendian_pcap(src: str, dst: str) -> None:
    hdr, recs = read_pcap(src)
    fields = struct.unpack("<IHHiIII", hdr)
    out = [struct.pack(">IHHiIII", *fields)]
    for sec, frac, wire, pkt in recs:
        out.append(struct.pack(">IIII", sec, frac, len(pkt), wire) + pkt)
    open(dst, "wb").write(b"".join(out))


def write_pcap(dst: str, linktype: int, recs, snaplen=262144) -> None:
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen, linktype)]
    for sec, frac, wire, pkt in recs:
        out.append(struct.pack("<IIII", sec, frac, len(pkt), wire) + pkt)
    open(dst, "wb").write(b"".join(out))


def bsd_loopback(raw4: str, raw6: str, dst: str, linktype: int) -> None:
    """Merge two raw-IP captures by time; prepend the 4-byte address family."""
    recs = sorted(read_pcap(raw4)[1] + read_pcap(raw6)[1], key=lambda r: (r[0], r[1]))
    out, v6_families = [], (24, 28, 30)   # AF_INET6 on OpenBSD/NetBSD, FreeBSD, macOS
    for i, (sec, frac, wire, pkt) in enumerate(recs):
        af = 2 if pkt[0] >> 4 == 4 else v6_families[i % 3]
        if linktype == 108:
            af = 24 if af != 2 else 2
        head = struct.pack(">I" if linktype == 108 else "<I", af)
        out.append((sec, frac, wire + 4, head + pkt))
    write_pcap(dst, linktype, out)


# numeric options whose values change with byte order; other options are kept only when
# they are strings (if_name, if_description, comments), the rest are dropped
_NUMERIC = {1: {9: "B", 14: "q"}, 6: {2: "I"}}
_STRINGS = {1, 2, 3}


def bigendian_pcapng(src: str, dst: str) -> None:
    data, p, out = open(src, "rb").read(), 0, []
    while p + 12 <= len(data):
        btype, blen = struct.unpack("<II", data[p:p + 8])
        body = data[p + 8:p + blen - 4]
        p += blen
        if btype == 0x0A0D0D0A:
            _bom, vmaj, vmin, slen = struct.unpack("<IHHq", body[:16])
            fixed = struct.pack(">IHHq", 0x1A2B3C4D, vmaj, vmin, -1)
            opts = body[16:]
        elif btype == 1:
            linktype, _r, snaplen = struct.unpack("<HHI", body[:8])
            fixed, opts = struct.pack(">HHI", linktype, 0, snaplen), body[8:]
        elif btype == 6:
            ifid, hi, lo, cap, wire = struct.unpack("<IIIII", body[:20])
            padded = (cap + 3) & ~3
            fixed = struct.pack(">IIIII", ifid, hi, lo, cap, wire) + body[20:20 + padded]
            opts = body[20 + padded:]
        else:
            continue                       # statistics etc.: not needed by the tests
        new_body = fixed + swap_options(opts, _NUMERIC.get(btype, {}))
        total = len(new_body) + 12
        out.append(struct.pack(">II", btype, total) + new_body + struct.pack(">I", total))
    open(dst, "wb").write(b"".join(out))


def swap_options(opts: bytes, numeric: dict) -> bytes:
    out, p = [], 0
    while p + 4 <= len(opts):
        code, ln = struct.unpack("<HH", opts[p:p + 4])
        if code == 0:
            break
        value = opts[p + 4:p + 4 + ln]
        p += 4 + ((ln + 3) & ~3)
        if code in numeric:
            fmt = numeric[code]
            value = struct.pack(">" + fmt, *struct.unpack("<" + fmt, value))
        elif code not in _STRINGS:
            continue
        out.append(struct.pack(">HH", code, ln) + value + b"\0" * (-ln % 4))
    if out:
        out.append(b"\0\0\0\0")
    return b"".join(out)


def main(argv: list[str]) -> None:
    cmd, args = argv[0], argv[1:]
    {"send-ipv6": send_ipv6, "send-ipv4": send_ipv4, "send-vlan": send_vlan, "ping": ping, "bigendian-pcap": bigendian_pcap,
     "bigendian-pcapng": bigendian_pcapng,
     "null": lambda a, b, c: bsd_loopback(a, b, c, 0),
     "loop": lambda a, b, c: bsd_loopback(a, b, c, 108)}[cmd](*args)


if __name__ == "__main__":
    main(sys.argv[1:])
