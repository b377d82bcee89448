"""Address interning: 16-byte addresses -> stable small codes -> shared text categories.

Addresses arrive from the decode kernel as two uint64 halves (IPv4 as v4-mapped
::ffff:a.b.c.d, so it prints as dotted quad). A compiled open-addressing hash table,
kept for the reader's life, maps each address to its code in one pass (no sort); Python
work is per distinct address (its text), never per packet. Codes never change once
given, so each chunk's categories are a prefix of the next chunk's.
"""
from __future__ import annotations

import ipaddress
import socket
import struct

import numpy as np
import pandas as pd
from ..jit import kernel

_V4_PREFIX = 0xFFFF


def address_text(hi: int, lo: int) -> str:
    if hi == 0 and lo >> 32 == _V4_PREFIX:
        return socket.inet_ntoa(struct.pack(">I", lo & 0xFFFFFFFF))
    return str(ipaddress.IPv6Address((hi << 64) | lo))


@kernel(inline="always")
def _slot(hi, lo, mask):
    # 32-bit halves times 32-bit odd constants never overflow 64 bits, so the compiled
    # and interpreted kernels hash alike and numpy has nothing to warn about.
    m32, s32 = np.uint64(0xFFFFFFFF), np.uint64(32)
    h = ((hi & m32) * np.uint64(0x9E3779B1)) ^ ((hi >> s32) * np.uint64(0x85EBCA77)) \
        ^ ((lo & m32) * np.uint64(0xC2B2AE3D)) ^ ((lo >> s32) * np.uint64(0x27D4EB2F))
    return np.int64((h ^ (h >> np.uint64(29))) & np.uint64(mask))


@kernel
def _intern(hi, lo, start, t_hi, t_lo, t_code, n_codes, codes, new_rows):
    """Codes for addresses hi/lo[start:] via an open-addressing table; new addresses get
    the next codes and new_rows[k] = the row where the k-th new one first appeared.
    Returns (index reached, codes in use): stops early when the table is half full so
    the caller can grow it and call again."""
    mask = t_hi.shape[0] - 1
    base = n_codes
    for i in range(start, hi.shape[0]):
        j = _slot(hi[i], lo[i], mask)
        while True:
            c = t_code[j]
            if c < 0:
                if 2 * (n_codes + 1) > t_hi.shape[0]:
                    return i, n_codes
                t_hi[j], t_lo[j], t_code[j] = hi[i], lo[i], n_codes
                codes[i] = n_codes
                new_rows[n_codes - base] = i
                n_codes += 1
                break
            if t_hi[j] == hi[i] and t_lo[j] == lo[i]:
                codes[i] = c
                break
            j = (j + 1) & mask
    return hi.shape[0], n_codes


class AddressInterner:
    def __init__(self):
        self._table = self._empty_table(1 << 12)
        self._hi = np.empty(0, np.uint64)     # address of each code, in code order
        self._lo = np.empty(0, np.uint64)
        self.labels: list[str] = []
        self._index: pd.Index | None = None

    @staticmethod
    def _empty_table(size: int):
        return np.zeros(size, np.uint64), np.zeros(size, np.uint64), np.full(size, -1, np.int32)

    def codes(self, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
        """int32 code per address (hi, lo), adding unseen addresses to the categories."""
        codes = np.empty(hi.shape[0], np.int32)
        start = 0
        while True:
            new_rows = np.empty(self._table[0].shape[0] // 2 + 1, np.int64)
            known = len(self.labels)
            start, n_codes = _intern(hi, lo, start, *self._table, known, codes, new_rows)
            self._learn(hi, lo, new_rows[:n_codes - known])
            if start == hi.shape[0]:
                return codes
            self._grow()

    def _learn(self, hi, lo, rows) -> None:
        """Keep the addresses that just got codes (and their text), in code order."""
        if rows.shape[0] == 0:
            return
        new_hi, new_lo = hi[rows], lo[rows]
        self._hi = np.concatenate([self._hi, new_hi])
        self._lo = np.concatenate([self._lo, new_lo])
        self.labels += [address_text(h, l) for h, l in zip(new_hi.tolist(), new_lo.tolist())]
        self._index = None

    def _grow(self) -> None:
        size = self._table[0].shape[0] * 4
        self._table = self._empty_table(size)
        n = self._hi.shape[0]
        _intern(self._hi, self._lo, 0, *self._table, 0, np.empty(n, np.int32),
                np.empty(n + 1, np.int64))                        # codes come out in order

    def categories(self) -> pd.Index:
        if self._index is None:
            self._index = pd.Index(self.labels, dtype="str")
        return self._index

    def categorical(self, codes: np.ndarray) -> pd.Categorical:
        return pd.Categorical.from_codes(codes, categories=self.categories(), validate=False)
