"""The address interner: stable codes across calls, growth past its first table size."""
from __future__ import annotations

import numpy as np

from capanalyze.reader.addresses import AddressInterner, address_text


def test_codes_are_stable_and_text_is_right():
    rng = np.random.default_rng(7)
    interner, seen = AddressInterner(), {}
    for _ in range(4):                                   # several chunks, 20k distinct
        hi = np.where(rng.random(30_000) < 0.3, rng.integers(1, 50, 30_000), 0).astype(np.uint64)
        lo = ((np.uint64(0xFFFF) << np.uint64(32)) | rng.integers(0, 20_000, 30_000).astype(np.uint64))
        codes = interner.codes(hi, lo)
        for h, l, c in zip(hi.tolist(), lo.tolist(), codes.tolist()):
            assert seen.setdefault((h, l), c) == c
    assert len(interner.labels) == len(seen) > 4096
    for (h, l), c in list(seen.items())[:500]:
        assert interner.labels[c] == address_text(h, l)


def test_address_text():
    v4 = (0xFFFF << 32) | 0xC0000201
    assert address_text(0, v4) == "192.0.2.1"
    assert address_text(0xFD99 << 48, 1) == "fd99::1"
