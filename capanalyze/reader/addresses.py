"""Address interning: 16-byte addresses -> stable small codes -> shared text categories.

Addresses arrive from the decode kernel as two uint64 halves (IPv4 as v4-mapped
::ffff:a.b.c.d, so it prints as dotted quad). Per chunk we take np.unique over the
chunk's addresses and look up only the distinct ones in a dict, so Python work is per
distinct address, never per packet. Codes never change once given, so each chunk's
categories are a prefix of the next chunk's.
"""
from __future__ import annotations

import ipaddress
import socket
import struct

import numpy as np
import pandas as pd

_V4_PREFIX = 0xFFFF


def address_text(hi: int, lo: int) -> str:
    if hi == 0 and lo >> 32 == _V4_PREFIX:
        return socket.inet_ntoa(struct.pack(">I", lo & 0xFFFFFFFF))
    return str(ipaddress.IPv6Address((hi << 64) | lo))


class AddressInterner:
    def __init__(self):
        self._code: dict[tuple[int, int], int] = {}
        self.labels: list[str] = []
        self._index: pd.Index | None = None

    def codes(self, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
        """int32 code per address (hi, lo), adding unseen addresses to the categories."""
        if hi.shape[0] == 0:
            return np.empty(0, np.int32)
        if not hi.any():                       # IPv4-only chunk: a plain uint64 unique
            uniq_lo, inverse = np.unique(lo, return_inverse=True)
            uniq_hi = np.zeros_like(uniq_lo)
        else:
            pairs = np.empty(hi.shape[0], dtype=[("hi", "u8"), ("lo", "u8")])
            pairs["hi"], pairs["lo"] = hi, lo
            uniq, inverse = np.unique(pairs, return_inverse=True)
            uniq_hi, uniq_lo = uniq["hi"], uniq["lo"]
        lut = np.fromiter((self._lookup(h, l) for h, l in zip(uniq_hi.tolist(), uniq_lo.tolist())),
                          np.int32, count=uniq_lo.shape[0])
        return lut[inverse.reshape(-1)]

    def _lookup(self, hi: int, lo: int) -> int:
        code = self._code.get((hi, lo))
        if code is None:
            code = self._code[(hi, lo)] = len(self.labels)
            self.labels.append(address_text(hi, lo))
            self._index = None
        return code

    def categories(self) -> pd.Index:
        if self._index is None:
            self._index = pd.Index(self.labels, dtype="str")
        return self._index

    def categorical(self, codes: np.ndarray) -> pd.Categorical:
        return pd.Categorical.from_codes(codes, categories=self.categories(), validate=False)
