"""Every bundled sample capture reads cleanly in tshark: no malformed packet and no
"ACKed unseen segment" (a crafted or lab capture that lost packets would show it)."""
from __future__ import annotations

import subprocess

import pytest

from helpers import sample_pcaps


@pytest.mark.parametrize("path", sample_pcaps(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_tshark_reads_the_sample_cleanly(path, need_tshark):
    out = subprocess.run(["tshark", "-r", str(path), "-Y",
                          "_ws.malformed or tcp.analysis.ack_lost_segment", "-T", "fields",
                          "-e", "frame.number"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == []
