"""Test helpers: where the captures are, and running the real command line."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_pcaps"
SHARED_PCAPS = ROOT.parent / "shared" / "pcaps" / "ppa"


def shared_pcaps() -> list[Path]:
    return sorted(SHARED_PCAPS.glob("*.pcapng")) if SHARED_PCAPS.is_dir() else []


def sample_pcaps() -> list[Path]:
    return sorted(p for p in SAMPLES.rglob("*.pcap*") if p.suffix in (".pcap", ".pcapng", ".gz"))


def run_cli(*args: str, check_exit: int | None = 0, jit: str | None = None) -> subprocess.CompletedProcess:
    """Run the real command line, as a user would; `jit` "0"/"1" forces the kernels
    interpreted or compiled (CAPANALYZE_JIT)."""
    env = dict(os.environ, CAPANALYZE_JIT=jit) if jit is not None else None
    proc = subprocess.run([sys.executable, "-m", "capanalyze", *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=600, env=env)
    if check_exit is not None:
        assert proc.returncode == check_exit, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def diagnose_json(*args: str) -> dict:
    return json.loads(run_cli("diagnose", *args, "--format", "json").stdout)
