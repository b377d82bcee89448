"""The evidence for a stall, as sentences an on-call engineer can check frame by frame."""
from __future__ import annotations

from datetime import datetime, timezone

import pandas as pd



def utc_text(ts: float, fmt: str) -> str:
    """strftime of a capture time in UTC. A damaged capture can carry times outside the
    calendar: those are shown as seconds since the epoch instead of failing."""
    try:
        return datetime.fromtimestamp(ts, tz=timezone.utc).strftime(fmt)
    except (OverflowError, OSError, ValueError):
        return f"{ts:.3f} s since the epoch"


def clock(ts: float) -> str:
    """UTC wall-clock time with milliseconds, as in the capture."""
    text = utc_text(ts, "%H:%M:%S.%f")
    return text[:-3] if not text.endswith("epoch") else text


def counted(n: int, noun: str) -> str:
    """'1 keepalive probe', '3 keepalive probes', '0 connections'."""
    return f"{n} {noun}" + ("" if n == 1 else "s")


def duration(s: float) -> str:
    if s >= 120:
        minutes, sec = divmod(int(round(s)), 60)
        return f"{s:.1f} s ({minutes} min {sec} s)"
    return f"{s:.1f} s" if s >= 1 else f"{s * 1000:.0f} ms"


def _at(frame, ts: float) -> str:
    """'frame 63 (22:31:20.030)': where to look in Wireshark, and when in the logs."""
    return f"frame {frame} ({clock(ts)})"


def wireshark_filter(flow) -> str:
    ip = "ipv6" if ":" in str(flow.client_ip) else "ip"
    return (f"{ip}.addr=={flow.client_ip} && tcp.port=={flow.client_port} && "
            f"{ip}.addr=={flow.server_ip} && tcp.port=={flow.server_port}")


def _idle_sentence(gap) -> str:
    ka = ("no keepalive probes" if gap.keepalives == 0
          else f"{counted(gap.keepalives, 'keepalive probe')} from the {gap.keepalive_from}, "
               f"the last one {duration(gap.silence_s)} before the idle ended")
    return (f"{_at(gap.start_frame, gap.start_ts)}: last activity, then the "
            f"connection was idle for {duration(gap.duration_s)} in both directions with {ka}")


def _backoff_sentences(chain) -> list[str]:
    times = ", ".join(f"+{offset_text(t)}" for t in chain.times_s[:8])
    more = f", ... (+{offset_text(chain.times_s[-1])})" if len(chain.times_s) > 8 else ""
    out = [f"frames {chain.frames[0]}-{chain.frames[-1]}: {chain.retransmissions} retransmissions "
           f"at {times}{more} s after the original, intervals doubling "
           f"(growth x{chain.growth:.2f}) from {chain.first_rto_s * 1000:.0f} ms"
           + (", capped at 120 s" if chain.capped else "")]
    out.append(_give_up_sentence(chain))
    return out


def offset_text(t: float) -> str:
    """Seconds to the millisecond, without trailing zeros (a retransmission's offset)."""
    return f"{t:.3f}".rstrip("0").rstrip(".")


def _give_up_sentence(chain) -> str:
    if chain.model == "linux" and chain.give_up_s is not None:
        n = f">= {chain.retries2}" if chain.retries2_at_least else f"{chain.retries2}"
        when = f"{chain.give_up_s:.1f} s after the original ({clock(chain.give_up_ts)})"
        verb = "gave up" if chain.ended_by == "gave_up" else "will give up (tcp_retries2=15)"
        return f"the schedule matches Linux tcp_retries2 {n}: the sender {verb} {when}, sending no RST"
    if chain.model == "windows":
        return "the schedule matches Windows (5 data retransmissions, TcpMaxDataRetransmissions)"
    if chain.ended_by == "gave_up":
        return "the sender stopped retransmitting (gave up) without a RST"
    return f"the chain was still running when the capture ended ({chain.ended_by})"


def eviction_by_backoff(flow, gap, chain) -> list[str]:
    sender = chain.sender
    first = chain.frames[0] if pd.isna(chain.original_frame) else int(chain.original_frame)
    return [
        _idle_sentence(gap),
        f"{_at(first, chain.original_ts)}: the {sender} sends after the idle; "
        f"the {'server' if sender == 'client' else 'client'} never ACKs it",
        *_backoff_sentences(chain),
        f"black-holed after {duration(gap.silence_s)} idle: a middlebox on the path dropped "
        "the connection's state while both ends still believed it open",
    ]


def eviction_by_rst(flow, gap, rst, on_idle: bool = False) -> list[str]:
    out = [_idle_sentence(gap)] if gap is not None else []
    if on_idle:
        out.append(f"{_at(rst.frame, rst.ts)}: RST 'from the {rst.sender}' with "
                   "nothing to answer: something on the path reset the idle connection")
    else:
        out.append(f"{_at(rst.trigger_frame, rst.ts - rst.trigger_delay_s)}: the first "
                   f"packet after {duration(rst.trigger_idle_s)} idle")
        out.append(f"{_at(rst.frame, rst.ts)}: RST 'from the {rst.sender}' "
                   f"{rst.trigger_delay_s * 1000:.1f} ms later")
    for why in rst.forged_reasons:
        out.append(f"the RST looks forged by a middlebox: {why}")
    if rst.peer_kept_sending:
        out.append("the other side kept sending after the RST: it never arrived there")
    return out


def unreachable(flow, chain, gap=None) -> list[str]:
    first = chain.frames[0] if pd.isna(chain.original_frame) else int(chain.original_frame)
    if chain.syn:
        what = "opens the connection (SYN); no SYN-ACK ever comes"
    elif gap is not None and gap.keepalives:
        what = (f"sends a segment after {duration(gap.duration_s)} idle that "
                f"{counted(gap.keepalives, 'keepalive probe')} kept alive (the last one "
                f"{duration(gap.silence_s)} before): no middlebox timer ran out")
    else:
        what = "sends a segment in the middle of the conversation (no idle period before it)"
    opening = f"{_at(first, chain.original_ts)}: the {chain.sender} {what}"
    return [opening,
            *_backoff_sentences(chain),
            "no answer at all: the peer host or the path to it stopped responding"]


def missing_keepalive(flow, gap, timeout) -> list[str]:
    end = (f"the capture ended still waiting ({clock(gap.end_ts)})" if gap.ended_by == "capture_end"
           else f"{_at(gap.end_frame, gap.end_ts)}: the client gave up ({gap.ended_by.upper()})")
    return [
        f"{_at(gap.start_frame, gap.start_ts)}: the client's request was ACKed; the "
        "server owed an answer",
        _idle_sentence(gap),
        f"silent for {duration(gap.duration_s)}, longer than the {timeout:g} s idle timeout "
        "that middleboxes on such paths apply, and nothing kept it alive",
        end,
    ]


def slow_answer(flow, gap) -> list[str]:
    how = (f"{counted(gap.keepalives, 'keepalive probe')} answered kept the path alive"
           if gap.keepalives else "no keepalives were needed")
    end = (f"{_at(gap.end_frame, gap.end_ts)}: the server answered after "
           f"{duration(gap.duration_s)}" if gap.ended_by == "data_acked"
           else f"{_at(gap.end_frame, gap.end_ts)}: the server side closed ({gap.ended_by.upper()}) "
                f"after {duration(gap.duration_s)} without answering")
    return [f"{_at(gap.start_frame, gap.start_ts)}: the client's request was ACKed at once "
            "(the network delivered it)",
            f"the server took {duration(gap.duration_s)} to answer; {how}", end]


def zero_window(flow, ep, probes: int) -> list[str]:
    out = [f"{_at(ep.start_frame, ep.start_ts)}: the {ep.side} advertises a zero "
           "window: its application stopped reading",
           _probes_sentence(probes)]
    if ep.reopened:
        out.append(f"{_at(ep.end_frame, ep.end_ts)}: the window reopened after "
                   f"{duration(ep.duration_s)}")
    else:
        out.append(f"the window was still closed after {duration(ep.duration_s)} when the capture ended")
    return out


def _probes_sentence(probes: int) -> str:
    if not probes:
        return "the other side sent no zero-window probes while the window was closed"
    were = "was" if probes == 1 else "were"
    return f"{counted(probes, 'zero-window probe')} from the other side {were} answered (the transport was alive)"


def _cadence(flow) -> str:
    mean, cv = flow.server_data_interval_s, flow.server_data_cv
    if mean != mean or cv != cv:
        return ""
    return f", sending data every {mean:.2f} s (spread {cv:.0%})"


def cut(flow, pk, age, kind, side) -> list[str]:
    return [f"{_at(flow.first_frame, flow.start_ts)}: the connection starts",
            f"traffic was steady: never more than {flow.max_idle_s:.1f} s without a packet, "
            f"{counted(flow.packets_s2c, 'packet')} from the server side" + _cadence(flow),
            f"{_at(pk.frame, pk.ts)}: {kind.upper()} from the {side} side at "
            f"{age:.2f} s of age, although the link was not idle",
            "a fixed age, not an idle time: something that terminates TCP (a proxy or load "
            "balancer) enforces a timeout on the connection or request"]


def inconsistent_bracket_text(high: float, longest: float) -> str:
    return (f"evicted after {high:.1f} s idle, yet other connections survived {longest:.1f} s "
            "idle without keepalives: no single idle timeout explains the evictions "
            "(several boxes, per-flow timers, or peers losing state)")


def bracket_text(low: float, high: float, matches: list[str]) -> str:
    if low <= 0:
        text = (f"died after >= {high:.1f} s idle; no connection survived a shorter idle "
                f"without keepalives in this capture: threshold <= {high:.1f} s")
    else:
        text = f"died after >= {high:.1f} s idle; survived {low:.1f} s: threshold in ({low:.1f}, {high:.1f}] s"
    if matches:
        text += ": consistent with " + " / ".join(matches)
    return text
