"""The data contracts every stage agrees on: packet-table columns, flag bits, outcomes.

Stages exchange pandas DataFrames. Their column names and dtypes are fixed here so a
reader, the TCP state machine and the reports can be changed one at a time.
"""
from __future__ import annotations

import numpy as np


def epoch_seconds(ns):
    """Nanoseconds since the epoch as float seconds, for one value or an array. A time
    of ~1.7e18 ns made a float first loses ~100 ns, and 1700000001.002 s read back as
    1700000001.0019999; whole seconds and the nanoseconds left are converted apart."""
    if isinstance(ns, (int, np.integer)):
        return int(ns) / 10**9   # int / int is correctly rounded
    ns = np.asarray(ns, dtype=np.int64)
    return (ns // 10**9).astype(np.float64) + (ns % 10**9) / 1e9


def seconds_between(start_ts, end_ts):
    """Seconds from one float epoch time to another, to the microsecond. Each float is
    within ~0.12 µs of its capture time, so the plain difference carries noise digits
    (1079.8970398902893 for 1079.89704); to the microsecond, the difference is exact
    for a microsecond capture. Where both ends' nanoseconds are at hand, subtract those."""
    if np.ndim(start_ts) == 0 and np.ndim(end_ts) == 0:
        return round(float(end_ts) - float(start_ts), 6)
    return np.round(np.asarray(end_ts, dtype=np.float64) - start_ts, 6)


# TCP header flag bits, as in the wire header (NS/AE is the 9th bit).
FIN, SYN, RST, PSH, ACK, URG, ECE, CWR, NS = 1, 2, 4, 8, 16, 32, 64, 128, 256

# Packet table written by the reader: one row per TCP packet, in file order.
# Absent optional TCP fields are -1 (mss, wscale, tsval, tsecr, sack edges).
PACKET_COLUMNS: dict[str, str] = {
    "frame": "int64",         # 1-based record number in the file, as Wireshark shows it
    "ts_ns": "int64",         # nanoseconds since the epoch, exact
    "ts": "float64",          # seconds since the epoch
    "interface": "int32",     # pcapng interface id (0 for classic pcap)
    "ip_version": "int8",     # 4 or 6
    "src": "category",        # text address
    "dst": "category",
    "sport": "uint16",
    "dport": "uint16",
    "ttl": "uint8",           # hop limit for IPv6
    "ip_id": "int32",         # -1 for IPv6 (no IP ID)
    "tcp_flags": "uint16",    # bitmask of the constants above
    "flags": "category",      # tcpdump-style text: "S", "S.", "P.", "F.", "R", "R."
    "seq": "uint32",
    "ack": "uint32",
    "window": "uint16",       # raw, unscaled
    "payload_len": "int32",   # from the IP length, so right for snaplen-cut packets
    "mss": "int32",
    "wscale": "int16",        # the option's shift as sent (0-255); the TCP rules cap it at 14
    "sack_perm": "bool",
    "sack_blocks": "int8",    # number of SACK blocks in the option
    "sack_left": "int64",     # first SACK block's edges, -1 when absent
    "sack_right": "int64",
    "tsval": "int64",
    "tsecr": "int64",
    "truncated": "bool",      # caplen < wire length: payload partly or wholly missing
    "wire_len": "uint32",     # original length on the wire, as the record header says
    "fragment": "bool",       # first fragment of a fragmented IP datagram: payload_len
                              # counts this fragment's share only (no reassembly)
}

# Columns the connection/TCP-state stage adds (issue 3). Listed so reports and tests
# agree on names; tcpstate.py owns their meaning.
FLOW_COLUMNS: dict[str, str] = {
    "flow_id": "int64",
    "dir": "int8",            # 0 = client->server, 1 = server->client
}
EVENT_COLUMNS: tuple[str, ...] = (
    "syn", "fin", "rst", "keepalive", "keepalive_ack", "retransmission", "dup_ack",
    "zero_window", "zero_window_probe", "zero_window_probe_ack", "window_full",
    "duplicate_capture",
)


def flags_text(tcp_flags: int) -> str:
    """tcpdump's rendering of TCP flags: 'S', 'S.', 'P.', 'F.', 'R', 'SEW' ..."""
    out = ""
    for bit, ch in ((SYN, "S"), (FIN, "F"), (PSH, "P"), (RST, "R"), (URG, "U"),
                    (ECE, "E"), (CWR, "W")):
        if tcp_flags & bit:
            out += ch
    if tcp_flags & ACK:
        out += "."
    return out or "none"


def flags_text_column(tcp_flags: np.ndarray):
    """Vectorised flags_text as a pandas Categorical (few distinct values, many rows)."""
    import pandas as pd

    uniq, inverse = np.unique(tcp_flags, return_inverse=True)
    cats = [flags_text(int(v)) for v in uniq]
    # Distinct bitmasks can render the same (NS bit is not shown), so map via labels.
    labels = pd.Index(cats)
    if labels.is_unique:
        return pd.Categorical.from_codes(inverse.astype(np.int32), categories=labels)
    return pd.Categorical(np.asarray(cats, dtype=object)[inverse])
