"""Link-layer header types (LINKTYPE_* values from tcpdump.org) the reader knows.

Only the numbers matter to the decoder; the names are what `info` shows, spelled as
tcpdump's `-y` option and tshark's link-type list spell them.
"""
from __future__ import annotations

NULL = 0          # BSD loopback: 4-byte address family in the capturing host's byte order
EN10MB = 1        # Ethernet
RAW_OLD_12 = 12   # raw IP on some BSDs (DLT_RAW there)
RAW_OLD_14 = 14   # raw IP on OpenBSD
RAW = 101         # raw IPv4/IPv6, version from the first nibble
LOOP = 108        # OpenBSD loopback: address family in network byte order
LINUX_SLL = 113   # Linux "cooked" capture (tcpdump -i any, old)
IPV4 = 228
IPV6 = 229
LINUX_SLL2 = 276  # Linux cooked capture v2 (tcpdump -i any, libpcap >= 1.10)

# Values a pcap file header may carry in the upper bits of the link type field (FCS
# length etc.): only the low 16 bits name the link type.
LINKTYPE_MASK = 0xFFFF

_NAMES = {
    NULL: "NULL", EN10MB: "EN10MB", 6: "IEEE802", 9: "PPP", RAW_OLD_12: "RAW",
    RAW_OLD_14: "RAW", 50: "PPP_HDLC", 51: "PPP_ETHER", RAW: "RAW", 105: "IEEE802_11",
    LOOP: "LOOP", LINUX_SLL: "LINUX_SLL", 119: "PRISM_HEADER", 127: "IEEE802_11_RADIO",
    143: "DOCSIS", 192: "PPI", 195: "IEEE802_15_4", 201: "BLUETOOTH_HCI_H4_WITH_PHDR",
    215: "IEEE802_15_4_NONASK_PHY", 220: "USB_LINUX_MMAPPED", 227: "CAN_SOCKETCAN",
    IPV4: "IPV4", IPV6: "IPV6", 249: "USBPCAP", 252: "WIRESHARK_UPPER_PDU",
    253: "NETLINK", LINUX_SLL2: "LINUX_SLL2",
}

# The ones the decoder turns into packets; every other type is counted as
# "unknown link type N" in the record accounting.
DECODED = frozenset({NULL, EN10MB, RAW_OLD_12, RAW_OLD_14, RAW, LOOP, LINUX_SLL, IPV4,
                     IPV6, LINUX_SLL2})


def linktype_name(linktype: int) -> str:
    """tcpdump's name for a link type, or LINKTYPE_<n> for one without a known name."""
    if 147 <= linktype <= 162:
        return f"USER{linktype - 147}"
    return _NAMES.get(linktype, f"LINKTYPE_{linktype}")
