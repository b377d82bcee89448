"""Known middlebox timeouts and keepalive remedies, loaded from data/middleboxes.toml.

The numbers live in data so they can be corrected without touching the logic.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib


@dataclass(frozen=True)
class Middlebox:
    name: str
    timeout_s: float
    kind: str       # "silent" drops state; "closes" terminates TCP itself
    applies: str    # "idle" (since the last packet) or "age" (since start/request)
    note: str


@lru_cache(maxsize=1)
def _data() -> dict:
    text = resources.files("capanalyze").joinpath("data/middleboxes.toml").read_text()
    return tomllib.loads(text)


@lru_cache(maxsize=1)
def middleboxes() -> tuple[Middlebox, ...]:
    """Every known middlebox (immutable, so made once: the diagnosis asks for each stall)."""
    return tuple(Middlebox(**entry) for entry in _data()["middlebox"])


def server_remedies() -> dict[int, dict]:
    return {entry["port"]: entry for entry in _data().get("server", [])}


@lru_cache(maxsize=1)
def silent_timeouts() -> tuple[Middlebox, ...]:
    return tuple(m for m in middleboxes() if m.kind == "silent")


def smallest_silent_timeout() -> float:
    """The shortest idle after which some common middlebox silently drops a connection."""
    return min(m.timeout_s for m in silent_timeouts())


def fitting_idle(idle_s: float, low_s: float = 0.0, slack_s: float = 5.0) -> list[Middlebox]:
    """Silent idle timeouts an eviction after `idle_s` idle (survived `low_s`) fits,
    closest first. Timers fire a little late, hence the slack."""
    fits = [m for m in silent_timeouts() if low_s < m.timeout_s <= idle_s + slack_s]
    return sorted(fits, key=lambda m: idle_s - m.timeout_s)


def fitting_cut(age_s: float, tol_s: float = 0.1) -> list[Middlebox]:
    """Proxies/LBs that close at this connection or request age (timers fire on time)."""
    return [m for m in middleboxes() if m.kind == "closes" and abs(m.timeout_s - age_s) <= tol_s]


def below_wait(wait_s: float) -> list[Middlebox]:
    """Proxies that would have given up on a wait this long (504s on the way)."""
    return [m for m in middleboxes() if m.kind == "closes" and m.applies == "idle"
            and m.timeout_s < wait_s]
