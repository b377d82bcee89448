"""Marker kinds, colours and text helpers shared by the charts.

Every packet kind differs in shape as well as colour, so a chart printed in grayscale
(or read by a colour-blind engineer) still tells a retransmission from a keepalive.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..evidence import duration

# Sub-rows inside a direction's lane: control on top, plain ACKs at the bottom, so a
# data segment and the ACK 40 ms later do not hide each other on a long time axis.
ROW_CONTROL, ROW_DATA, ROW_KEEPALIVE, ROW_ACK = 0.28, 0.10, -0.10, -0.28
LANE_Y = {0: 1.0, 1: 0.0}          # dir 0 = client->server above, 1 = server->client below


@dataclass(frozen=True)
class Kind:
    name: str
    label: str
    marker: str
    color: str
    row: float
    size: float = 36
    filled: bool = True


# In priority order: a packet is drawn as the first kind it matches.
KINDS = (
    Kind("rst", "RST", "*", "#d62728", ROW_CONTROL, 110),
    Kind("retransmission", "retransmission", "X", "#e6550d", ROW_DATA, 60),
    Kind("syn", "SYN", ">", "#2ca02c", ROW_CONTROL, 50),
    Kind("fin", "FIN", "<", "#7b3294", ROW_CONTROL, 50),
    Kind("keepalive", "keepalive probe", "D", "#1f77b4", ROW_KEEPALIVE, 40, False),
    Kind("keepalive_ack", "keepalive ACK", "d", "#1f77b4", ROW_KEEPALIVE, 40),
    Kind("zero_window_probe", "zero-window probe", "P", "#8c564b", ROW_DATA, 50),
    Kind("zero_window", "zero window", "s", "#8c564b", ROW_ACK, 40, False),
    Kind("data", "data", "o", "#333333", ROW_DATA, 26),
    Kind("ack", "pure ACK", "|", "#888888", ROW_ACK, 40),
)
KIND = {k.name: k for k in KINDS}

CLASS_COLORS = {
    "silent_middlebox_eviction": "#d62728",
    "missing_keepalive": "#ff7f0e",
    "middlebox_cut": "#9467bd",
    "peer_unreachable": "#8c564b",
    "app_slowness": "#1f77b4",
    "healthy": "#2ca02c",
}
GAP_COLOR = "#c7c7c7"
TIMEOUT_COLOR = "#6a3d9a"
GIVE_UP_COLOR = "#b10026"


def packet_kinds(packets: pd.DataFrame) -> np.ndarray:
    """One kind name per packet (vectorised; priority as in KINDS)."""
    flags = packets["tcp_flags"].to_numpy()
    col = {name: packets[name].to_numpy(dtype=bool) for name in
           ("rst", "retransmission", "syn", "fin", "keepalive", "keepalive_ack",
            "zero_window_probe", "zero_window")}
    data = packets["payload_len"].to_numpy() > 0
    conditions = [col[k.name] for k in KINDS[:8]] + [data, flags >= 0]
    return np.select(conditions, [k.name for k in KINDS], default="ack")


def plain(text) -> str:
    """Capture-derived text for matplotlib: '$' would start mathtext."""
    return str(text).replace("$", r"\$")


def seconds(s: float) -> str:
    """Short duration for a chart label: '1800.0 s (30 min)'."""
    if s >= 120:
        minutes = s / 60
        whole = abs(minutes - round(minutes)) < 0.05
        return f"{s:.1f} s ({minutes:.0f} min)" if whole else f"{s:.1f} s ({minutes:.1f} min)"
    return duration(s)


def short_names(names: list[str], limit: int = 2) -> str:
    names = [n.split(" (")[0] for n in names]
    more = f" +{len(names) - limit}" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def present(x) -> bool:
    """Not None / NaN / NA (table cells that may be missing)."""
    return x is not None and not pd.isna(x)
