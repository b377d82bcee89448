"""How TCP stacks back off and give up: Linux tcp_retries2 / tcp_syn_retries, Windows.

Linux (net/ipv4/tcp_timer.c, tcp_model_timeout): unacknowledged data is abandoned when
the time since its first transmission reaches the time `tcp_retries2` doublings would
take from TCP_RTO_MIN, each interval capped at TCP_RTO_MAX:

    T(N) = 0.2 * (2^(N+1) - 1)                   N <= 9
    T(N) = 0.2 * (2^10 - 1) + (N - 9) * 120      N >  9      (T(15) = 924.6 s)

The check happens when the retransmission timer fires, and the timer starts from the
connection's measured RTO, so a larger RTO fits fewer retransmissions in the same budget.
Linux sends no RST when it gives up.
"""
from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from functools import lru_cache
from itertools import accumulate
from operator import sub

RTO_MIN = 0.2
RTO_MAX = 120.0
LINUX_DEFAULT_RETRIES2 = 15
LINUX_SYN_RETRIES = 6
WINDOWS_DATA_RETRIES = 5


def linux_budget(retries2: int, rto_base: float = RTO_MIN) -> float:
    """Seconds after the first transmission at which Linux gives up (T(N) above)."""
    thresh = 9  # ilog2(TCP_RTO_MAX / TCP_RTO_MIN)
    if retries2 <= thresh:
        return ((2 << retries2) - 1) * rto_base
    return ((2 << thresh) - 1) * rto_base + (retries2 - thresh) * RTO_MAX


@dataclass
class Schedule:
    retransmits: list[float]   # seconds after the original transmission
    give_up: float             # when the sender abandons the segment


def linux_schedule(first_rto: float, retries2: int = LINUX_DEFAULT_RETRIES2) -> Schedule:
    """Retransmission times Linux produces from a first RTO, until tcp_retries2 gives up."""
    times = _backoff_times(first_rto)
    k = _retransmitting_timers(times, retries2)   # the next timer gives up
    if k < len(times):
        return Schedule(list(times[:k]), times[k])
    return Schedule(list(times), times[-1])


def _retransmitting_timers(expiries: tuple[float, ...], retries2: int) -> int:
    """How many of the expiries retransmit before tcp_retries2's budget is spent; the
    one at the budget gives up (1e-9: a float sum landing on the budget is on it)."""
    return bisect_left(expiries, linux_budget(retries2) - 1e-9)


@lru_cache(maxsize=4096)
def _backoff_times(first_rto: float) -> tuple[float, ...]:
    """The first 64 timer expiries (s after the original): doubling, capped at RTO_MAX.
    Cached: fitting one chain tries every tcp_retries2 against the same expiries."""
    intervals, rto = [], first_rto
    while len(intervals) < 64 and rto != RTO_MAX:
        intervals.append(rto)
        rto = min(2 * rto, RTO_MAX)
    intervals += [RTO_MAX] * (64 - len(intervals))   # capped, it stays capped
    return tuple(accumulate(intervals))               # summed in order, as t += rto


def syn_schedule(first_rto: float = 1.0, retries: int = LINUX_SYN_RETRIES) -> Schedule:
    """SYN retries double from 1 s: 1, 3, 7, 15, 31, 63 s; give up at 127 s."""
    times, t, rto = [], 0.0, first_rto
    for _ in range(retries):
        t += rto
        times.append(t)
        rto = min(2 * rto, RTO_MAX)
    return Schedule(times, t + rto)


@dataclass
class Fit:
    model: str                 # "linux", "linux-syn", "windows", "unknown"
    retries2: int | None       # the tcp_retries2 whose schedule fits (Linux data)
    at_least: bool             # the chain was cut short: retries2 >= this value
    give_up_s: float | None    # predicted give-up, seconds after the original
    max_error_s: float         # worst gap between observed and modelled retransmissions


def fit_chain(times: list[float], is_syn: bool, gave_up: bool) -> Fit:
    """Match observed retransmission times (s after the original) to a stack's model."""
    if not times:
        return Fit("unknown", None, False, None, 0.0)
    first_rto = estimate_first_rto(times)
    if is_syn:
        sched = syn_schedule(first_rto)
        return Fit("linux-syn", None, not gave_up, sched.give_up, _error(times, sched))
    if gave_up and len(times) == WINDOWS_DATA_RETRIES and first_rto < 1.0:
        windows = _doubling(first_rto, WINDOWS_DATA_RETRIES)
        if _error(times, windows) < _tolerance(times):
            return Fit("windows", None, False, windows.give_up, _error(times, windows))
    return _fit_linux(times, first_rto, gave_up)


def _fit_linux(times, first_rto, gave_up):
    n = _smallest_fitting_retries2(times, first_rto, gave_up)
    if n is None:
        return Fit("unknown", None, not gave_up, None, 0.0)
    sched = linux_schedule(first_rto, n)
    best = Fit("linux", n, not gave_up, sched.give_up, _error(times, sched))
    if best.max_error_s > _tolerance(times):
        return Fit("unknown", None, not gave_up, None, best.max_error_s)
    if not gave_up:
        default = linux_schedule(first_rto, LINUX_DEFAULT_RETRIES2)
        if len(default.retransmits) >= len(times):
            best.give_up_s = default.give_up   # what the default tcp_retries2 predicts
    return best


def _smallest_fitting_retries2(times, first_rto, gave_up) -> int | None:
    """The smallest tcp_retries2 whose schedule has as many retransmissions as seen
    (exactly when the sender gave up, at least when the chain was cut short). A larger
    one fits no better: every schedule from the same RTO shares the part seen."""
    expiries = _backoff_times(first_rto)
    for n in range(1, 31):
        fired = _retransmitting_timers(expiries, n)
        if fired == len(times) or (not gave_up and fired > len(times)):
            return n
    return None


def estimate_first_rto(times: list[float]) -> float:
    """The RTO the doubling started from: the median of interval_k / 2^k over the
    uncapped intervals, robust to an original captured a little late or early."""
    intervals = [b - a for a, b in zip([0.0] + times[:-1], times)]
    scaled = sorted(iv / 2 ** k for k, iv in enumerate(intervals) if iv < RTO_MAX * 0.95)
    if not scaled:
        return times[0]
    return scaled[len(scaled) // 2]


def _doubling(first_rto, count):
    times, t, rto = [], 0.0, first_rto
    for _ in range(count):
        t += rto
        times.append(t)
        rto *= 2
    return Schedule(times, t + rto)


def _error(times, sched):
    return max(map(abs, map(sub, times, sched.retransmits)), default=0.0)


def _tolerance(times):
    """Timers fire late by scheduling jitter and RTT variance: allow 10% of the span."""
    return max(0.05, 0.1 * times[-1])
