#!/usr/bin/env python3
"""Time capanalyze against tcptrace and tshark on large captures; write results.md.

    python benchmarks/run.py                        # 100k, 1M, 5M generated captures, 3 runs
    python benchmarks/run.py --sizes 1M --runs 1 --skip-tshark
    python benchmarks/run.py --quick                # 100k and 1M, 1 run each
    python benchmarks/run.py --profile mixed,bulk   # both traffic profiles of gen_capture.py
    python benchmarks/run.py my.pcap other.pcapng   # given files instead of generated ones
    python benchmarks/run.py --sizes 5M,20M --connections 20k   # same connections, more packets

Each command runs as its own process with stdout to /dev/null; wall time is measured
around it and peak RSS is the ru_maxrss that os.wait4 reports for that very child (so
runs never see each other's peaks). The median of --runs runs is reported; on each
capture capanalyze's and tcptrace's runs are taken in turns, then tshark's, each run after
a 1 s pause.
Generated captures are cached in benchmarks/.cache/ (gitignored) as
gen_{size}_seed{seed}[_{profile}][_c{connections}_d{span}][_s{snaplen}].{fmt}; the bulk
profile has no profile part (the names it had before profiles existed).

Realistic captures grow in connections as they grow in packets (a longer capture of the
same traffic); --connections fixes their number and spreads them over the span of the
largest size instead, so memory that grows with packets alone shows apart from memory
that grows with connections.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CACHE = HERE / ".cache"
GEN = HERE / "gen_capture.py"
TINY_PACKETS = 1000

TARGETS = {
    "tcptrace_ratio": 2.0,  # capanalyze at least 2x faster than tcptrace
    "tshark_ratio": 25.0,  # and 25x faster than tshark
    "rss_5m_gib": 1.0,  # peak RSS at 5M packets
    "rss_growth": 0.20,  # 5M -> 20M peak RSS growth
    "tiny_s": 1.5,  # whole-process wall time on a tiny capture
}


def parse_count(text: str) -> int:
    text = text.strip().lower()
    mult = {"k": 10**3, "m": 10**6, "g": 10**9}.get(text[-1:], 1)
    return int(float(text[:-1] if mult > 1 else text) * mult)


def size_label(n: int) -> str:
    for unit, div in (("M", 10**6), ("k", 10**3)):
        if n >= div and n % div == 0:
            return f"{n // div}{unit}"
    return str(n)


# ----------------------------------------------------------------------------- measuring
@dataclass
class Measure:
    wall: list = field(default_factory=list)
    rss_kib: list = field(default_factory=list)
    error: str = ""

    @property
    def ok(self):
        return bool(self.wall) and not self.error

    @property
    def median(self):
        return statistics.median(self.wall)

    @property
    def peak_mib(self):
        return max(self.rss_kib) / 1024


def run_once(cmd, timeout, cwd=None, env=None, ok_codes=(0,)):
    """(wall seconds, peak RSS KiB of this child) or raise RuntimeError."""
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL,
                                cwd=cwd, env=env)
        deadline = t0 + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                os.wait4(proc.pid, 0)
                raise RuntimeError(f"timed out after {timeout:.0f} s")
            time.sleep(0.002)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode not in ok_codes:
            err.seek(0)
            tail = err.read().decode(errors="replace").strip().splitlines()[-3:]
            raise RuntimeError(f"exit {proc.returncode}: {' | '.join(tail)}")
    return wall, usage.ru_maxrss


def measure(cmd, runs, timeout, **kw) -> Measure:
    return measure_interleaved({"": (cmd, kw)}, runs, timeout)[""]


SETTLE_S = 1.0   # pause before each run: the system reclaims what the run before freed


def measure_interleaved(plan: dict, runs: int, timeout) -> dict[str, Measure]:
    """Each tool's runs taken in turns (run 1 of every tool, then run 2 ...), so a VM
    that speeds up or slows down during the benchmark moves every tool alike and the
    ratios compare runs from the same minutes. A tool that fails is not run again.
    Each run starts after a pause: right after tshark freed 1-3.5 GiB, the next run on
    this VM was 20-40 % slower (capanalyze on 1M mixed: 0.83-1.06 s against 0.69-0.77)."""
    measures = {tool: Measure() for tool in plan}
    for _ in range(runs):
        for tool, (cmd, kw) in plan.items():
            m = measures[tool]
            if m.error:
                continue
            time.sleep(SETTLE_S)
            try:
                wall, rss = run_once(cmd, timeout, **kw)
            except (RuntimeError, OSError) as exc:
                m.error = str(exc)
                continue
            m.wall.append(wall)
            m.rss_kib.append(rss)
    return measures


def byte_compile() -> None:
    """Compile the package's modules to bytecode, as `pip install` does for an installed
    package: with an editable install and PYTHONDONTWRITEBYTECODE set (this machine's
    sandbox sets it) Python compiles every module from source on each run, 0.05 s."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "capanalyze")],
                   check=False, stdout=subprocess.DEVNULL)


def warm(path: Path):
    """Read the file once so every tool starts from the same (warm) page cache."""
    with open(path, "rb") as f:
        while f.read(1 << 24):
            pass


# ----------------------------------------------------------------------------- tools
class Capanalyze:
    """How to start `capanalyze diagnose`, or why it cannot be benchmarked yet."""

    def __init__(self, override=None):
        self.cmd, self.env, self.why = None, None, ""
        env = dict(os.environ)
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        candidates = []
        if override:
            candidates.append(override.split())
        # the console script of this interpreter's environment, as a user's venv has it
        # (a pyenv shim on PATH would add its own ~60 ms start-up to every run)
        beside = Path(sys.executable).parent / "capanalyze"
        if beside.is_file():
            candidates.append([str(beside)])
        if shutil.which("capanalyze"):
            candidates.append([shutil.which("capanalyze")])
        candidates.append([sys.executable, "-m", "capanalyze"])
        for base in candidates:
            try:
                probe = subprocess.run(base + ["diagnose", "--help"], capture_output=True, env=env,
                                       cwd=REPO, timeout=60)
            except (OSError, subprocess.TimeoutExpired) as exc:
                self.why = str(exc)
                continue
            if probe.returncode == 0:
                self.cmd, self.env = base, env
                return
            msg = (probe.stderr or probe.stdout).decode(errors="replace").strip().splitlines()
            self.why = msg[-1] if msg else f"exit {probe.returncode}"
        self.why = f"capanalyze diagnose not available ({self.why})"

    def command(self, path):
        return self.cmd + ["diagnose", str(path), "--format", "json"]

    def version(self):
        if not self.cmd:
            return "n/a"
        out = subprocess.run(self.cmd + ["--version"], capture_output=True, env=self.env, cwd=REPO)
        text = (out.stdout or out.stderr).decode(errors="replace").strip()
        if out.returncode == 0 and text:
            return text.splitlines()[0]
        # no --version option: ask the package the command imports
        out = subprocess.run([sys.executable, "-c", "import capanalyze; print(capanalyze.__version__)"],
                             capture_output=True, env=self.env, cwd=REPO)
        return out.stdout.decode().strip() or "unknown"


def tool_version(cmd):
    try:
        out = subprocess.run(cmd, capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "not installed"
    lines = [ln for ln in (out.stdout + out.stderr).decode(errors="replace").splitlines()
             if ln.strip() and "dangerous" not in ln]
    return lines[0].strip() if lines else "unknown"


# ----------------------------------------------------------------------------- captures
PROFILES = ("mixed", "bulk")  # gen_capture.py --profile


@dataclass
class Capture:
    label: str
    path: Path
    packets: int
    profile: str = ""  # generator profile; "" for given files

    @property
    def mbytes(self):
        return self.path.stat().st_size / 1e6


@dataclass(frozen=True)
class Fixed:
    """A fixed number of connections over a fixed span (gen_capture.py --connections,
    --duration); none: both grow with the packets, the generator's default."""
    connections: int = 0
    span_s: int = 0

    def args(self) -> list[str]:
        return ["--connections", str(self.connections), "--duration", str(self.span_s)] if self.connections else []

    def tag(self) -> str:
        return f"_c{size_label(self.connections)}_d{self.span_s}" if self.connections else ""

    def label(self) -> str:
        return f", {size_label(self.connections)} connections" if self.connections else ""


def cache_path(n, seed, snaplen, fmt="pcap", profile="mixed", fixed=Fixed()) -> Path:
    tag = ("" if profile == "bulk" else f"_{profile}") + fixed.tag()
    suffix = "" if snaplen >= 262144 else f"_s{snaplen}"
    return CACHE / f"gen_{size_label(n)}_seed{seed}{tag}{suffix}.{fmt}"


def generated(n, seed, snaplen, fmt="pcap", profile="mixed", fixed=Fixed()) -> Capture:
    path = cache_path(n, seed, snaplen, fmt, profile, fixed)
    if not path.exists():
        CACHE.mkdir(exist_ok=True)
        print(f"generating {path.name} ...", flush=True)
        tmp = path.with_suffix(".partial")
        t0 = time.perf_counter()
        subprocess.run([sys.executable, str(GEN), "--packets", str(n), "--seed", str(seed),
                        "--profile", profile, "--snaplen", str(snaplen), "--format", fmt,
                        *fixed.args(), "-o", str(tmp), "--quiet"], check=True)
        tmp.rename(path)
        print(f"  {time.perf_counter() - t0:.1f} s, {path.stat().st_size / 1e6:,.0f} MB", flush=True)
    group = profile + fixed.label()   # RSS growth is judged within a group
    return Capture(f"{size_label(n)} {group}", path, n, group)


def given(path: Path) -> Capture:
    out = subprocess.run(["capinfos", "-T", "-r", "-c", str(path)], capture_output=True, text=True)
    fields = out.stdout.strip().split("\t")
    packets = int(fields[-1]) if out.returncode == 0 and fields[-1].isdigit() else 0
    return Capture(path.name, path, packets)


# ----------------------------------------------------------------------------- report
TOOLS = ("capanalyze", "tcptrace", "tshark")


def fmt_time(m: Measure):
    if m is None:
        return "skipped"
    if not m.ok:
        return "n/a"
    spread = f" ({min(m.wall):.2f}-{max(m.wall):.2f})" if len(m.wall) > 1 else ""
    return f"{m.median:.2f} s{spread}"


def fmt_rate(m: Measure, amount, unit):
    if m is None or not m.ok or not amount:
        return "-"
    v = amount / m.median
    return f"{v / 1e6:.2f} M{unit}" if unit == "pkt/s" else f"{v:,.0f} {unit}"


def fmt_rss(m: Measure):
    return f"{m.peak_mib:,.0f} MiB" if m is not None and m.ok else "-"


def fmt_ratio(r):
    return "n/a" if r is None else f"{r:.1f}x" if r >= 1 else f"{r:.2f}x"


def ratio(other: Measure, ours: Measure):
    if other is None or ours is None or not (other.ok and ours.ok):
        return None
    return other.median / ours.median


def results_table(rows):
    head = ("| capture | packets | MB | tool | wall: median (min-max) | packets/s | MB/s | peak RSS |\n"
            "|---|---:|---:|---|---:|---:|---:|---:|")
    lines = [head]
    for cap, res in rows:
        for tool in TOOLS:
            m = res.get(tool)
            lines.append(f"| {cap.label} | {cap.packets:,} | {cap.mbytes:,.0f} | {tool} | {fmt_time(m)} | "
                         f"{fmt_rate(m, cap.packets, 'pkt/s')} | {fmt_rate(m, cap.mbytes, 'MB/s')} | {fmt_rss(m)} |")
    return "\n".join(lines)


def ratio_table(rows):
    lines = ["| capture | tcptrace / capanalyze | tshark / capanalyze |", "|---|---:|---:|"]
    for cap, res in rows:
        r1, r2 = ratio(res.get("tcptrace"), res.get("capanalyze")), ratio(res.get("tshark"), res.get("capanalyze"))
        lines.append(f"| {cap.label} | {fmt_ratio(r1)} | {fmt_ratio(r2)} |")
    return "\n".join(lines)


def verdicts(rows, tiny: Measure):
    """(target, measured, status) for each target."""
    out = []
    ours = [(cap, res.get("capanalyze")) for cap, res in rows]
    r_tt = [ratio(res.get("tcptrace"), res.get("capanalyze")) for _, res in rows]
    r_ts = [ratio(res.get("tshark"), res.get("capanalyze")) for _, res in rows]
    big = [(cap, r) for (cap, _), r in zip(rows, r_tt) if r is not None and cap.packets >= 10**6]
    # the targets are for large captures; a quick run without one is judged on all
    scope = ("captures >= 1M packets" if any(cap.packets >= 10**6 for cap, _ in rows)
             else "all captures: none has 1M packets")

    def judge(values, ok):
        values = [v for v in values if v is not None]
        if not values:
            return "n/a", "n/a"
        return ", ".join(fmt_ratio(v) for v in values), "PASS" if all(ok(v) for v in values) else "FAIL"

    m, s = judge([r for _, r in big] or [r for r in r_tt if r is not None], lambda v: v >= TARGETS["tcptrace_ratio"])
    out.append((f">= 2x faster than tcptrace ({scope})", m, s))
    big_ts = [r for (cap, _), r in zip(rows, r_ts) if r is not None and cap.packets >= 10**6]
    m, s = judge(big_ts or [r for r in r_ts if r is not None], lambda v: v >= TARGETS["tshark_ratio"])
    out.append((f">= 25x faster than tshark ({scope})", m, s))
    out += rss_verdicts(ours)
    if tiny is not None and tiny.ok:
        out.append((f"tiny capture ({TINY_PACKETS} packets) < 1.5 s", f"{tiny.median:.2f} s",
                    "PASS" if tiny.median < TARGETS["tiny_s"] else "FAIL"))
    else:
        out.append((f"tiny capture ({TINY_PACKETS} packets) < 1.5 s", "n/a", "n/a"))
    return out


def rss_verdicts(ours):
    """Peak RSS at 5M packets and its growth to 20M, per generator profile (a given file
    counts by its packet count under the profile "")."""
    at = {(cap.profile, cap.packets): meas for cap, meas in ours if meas is not None and meas.ok}
    profiles = sorted({p for p, _ in at}) or [""]
    out = []
    for prof in profiles:
        tag = f" ({prof})" if prof else ""
        m5, m20 = at.get((prof, 5 * 10**6)), at.get((prof, 20 * 10**6))
        if m5 is not None:
            gib = m5.peak_mib / 1024
            out.append((f"peak RSS <= 1 GiB at 5M packets{tag}", f"{gib:.2f} GiB", "PASS" if gib <= 1 else "FAIL"))
        else:
            out.append((f"peak RSS <= 1 GiB at 5M packets{tag}", "n/a", "n/a"))
        if m5 is not None and m20 is not None:
            growth = m20.peak_mib / m5.peak_mib - 1
            out.append((f"peak RSS flat within 20% from 5M to 20M{tag}", f"{growth:+.0%}",
                        "PASS" if growth <= TARGETS["rss_growth"] else "FAIL"))
        else:
            out.append((f"peak RSS flat within 20% from 5M to 20M{tag}", "n/a (needs 5M and 20M)", "n/a"))
    return out


def machine_info(cap: Capanalyze):
    mem_kib = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return [
        ("date (UTC)", dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M")),
        ("machine", f"{os.cpu_count()} CPUs ({cpu}), {mem_kib / 2**20:.1f} GiB RAM, {platform.platform()}"),
        ("python", platform.python_version()),
        ("capanalyze", cap.version() if cap.cmd else cap.why),
        ("git commit", (commit.stdout.strip() or "none yet") + dirty_note()),
        ("tcptrace", tool_version(["tcptrace", "-v"]).removeprefix("Version: ")
         if shutil.which("tcptrace") else "not installed"),
        ("tshark", tool_version(["tshark", "--version"]) if shutil.which("tshark") else "not installed"),
    ]


def dirty_note():
    out = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "capanalyze"],
                         capture_output=True, text=True)
    return " (capanalyze/ has uncommitted changes)" if out.stdout.strip() else ""


def write_markdown(path, info, rows, tiny, checks, args, notes):
    cmds = ("`capanalyze diagnose FILE --format json > /dev/null`, `tcptrace -l -n FILE > /dev/null`, "
            "`tshark -q -z conv,tcp -r FILE > /dev/null`")
    parts = ["# Benchmark results", "",
             f"Generated by `python benchmarks/run.py {' '.join(args)}`. Commands: {cmds}. "
             "Wall time of the whole process (median of the runs), peak RSS of that process "
             "(max over the runs), page cache warm. Captures come from `benchmarks/gen_capture.py` "
             "(see its docstring for the traffic model) unless named; a capture's label names its "
             "size and generator profile (mixed: API-style, ~384 bytes/packet, TLS/HTTP payloads; "
             "bulk: big downloads, ~894 bytes/packet, zero payloads) and, when it says so, a fixed "
             "number of connections planned over the largest size's span (`--connections`; the "
             "generator's default lets them grow with the packets).", "",
             "## Machine", ""]
    parts += [f"- {k}: {v}" for k, v in info]
    parts += ["", "## Timings", "", results_table(rows), "",
              "## Ratios (how many times faster capanalyze is)", "", ratio_table(rows), "",
              "## Start-up", "",
              f"`capanalyze diagnose` on a {TINY_PACKETS}-packet capture: "
              f"{fmt_time(tiny) if tiny is not None else 'n/a'} wall, {fmt_rss(tiny)} peak RSS.", "",
              "## Targets", "", "| target | measured | status |", "|---|---|---|"]
    parts += [f"| {t} | {m} | {s} |" for t, m, s in checks]
    if notes:
        parts += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    Path(path).write_text("\n".join(parts) + "\n")


# ----------------------------------------------------------------------------- main
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("files", nargs="*", type=Path, help="captures to time (default: generated ones)")
    ap.add_argument("--sizes", default="100k,1M,5M", help="generated capture sizes, e.g. 100k,1M,5M,20M")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--skip-tshark", action="store_true", help="tshark takes ~1 min per 5M packets")
    ap.add_argument("--skip-tcptrace", action="store_true")
    ap.add_argument("--quick", action="store_true", help="100k and 1M, one run each")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--snaplen", type=int, default=262144, help="for generated captures (e.g. 128)")
    ap.add_argument("--profile", default="mixed",
                    help="generator profile(s) for generated captures: mixed, bulk or mixed,bulk")
    ap.add_argument("--connections", type=parse_count, default=0,
                    help="generate every size with this many connections (e.g. 20k) over the "
                         "largest size's span, instead of connections growing with packets")
    ap.add_argument("--capanalyze", help="command to run instead of `capanalyze` (e.g. 'python -m capanalyze')")
    ap.add_argument("--timeout", type=float, default=3600, help="per run, seconds")
    ap.add_argument("-o", "--output", type=Path, default=HERE / "results.md")
    args = ap.parse_args(argv)
    profiles = [p.strip() for p in args.profile.split(",") if p.strip()]
    bad = [p for p in profiles if p not in PROFILES]
    if bad or not profiles:
        ap.error(f"--profile: unknown {', '.join(bad) or 'empty'} (choose from {', '.join(PROFILES)})")
    if args.quick:
        args.sizes, args.runs = "100k,1M", 1
    argv_text = sys.argv[1:] if argv is None else list(argv)

    sizes = [parse_count(s) for s in args.sizes.split(",") if s]
    # the generator's default span for the largest size (gen_capture.py: packets / 1000 s)
    fixed = Fixed(args.connections, int(max(600, max(sizes) / 1000))) if args.connections else Fixed()
    cap = Capanalyze(args.capanalyze)
    notes = []
    if not cap.cmd:
        print(f"capanalyze: n/a - {cap.why}")
        notes.append(f"capanalyze could not be timed: {cap.why}")
    captures = ([given(p) for p in args.files] if args.files else
                [generated(n, args.seed, args.snaplen, profile=prof, fixed=fixed)
                 for prof in profiles for n in sizes])
    tiny_cap = generated(TINY_PACKETS, args.seed, 262144, profile=profiles[0])

    tiny = first = None
    if cap.cmd:
        byte_compile()
        # an untimed first run fills numba's on-disk cache; what it cost is reported apart
        first = measure(cap.command(tiny_cap.path), 1, args.timeout, env=cap.env, cwd=REPO, ok_codes=(0,))
        print(f"first run (may compile): capanalyze {fmt_time(first)}")
        tiny = measure(cap.command(tiny_cap.path), args.runs, args.timeout, env=cap.env, cwd=REPO, ok_codes=(0,))
        print(f"tiny capture: capanalyze {fmt_time(tiny)} {fmt_rss(tiny)} {tiny.error}")

    rows = []
    for c in captures:
        warm(c.path)
        plan = {
            "capanalyze": (cap.command(c.path), dict(env=cap.env, cwd=REPO, ok_codes=(0,))) if cap.cmd else None,
            "tcptrace": None if args.skip_tcptrace else (["tcptrace", "-l", "-n", str(c.path)], {}),
            "tshark": None if args.skip_tshark else (["tshark", "-q", "-z", "conv,tcp", "-r", str(c.path)], {}),
        }
        res = {tool: None if tool != "capanalyze" else Measure(error="n/a")
               for tool, spec in plan.items() if spec is None}
        # tcptrace in turns with capanalyze; tshark (15-90 s a run) after both
        for group in (("capanalyze", "tcptrace"), ("tshark",)):
            res.update(measure_interleaved({tool: plan[tool] for tool in group if plan[tool]},
                                           args.runs, args.timeout))
        for tool in plan:
            m = res[tool]
            if plan[tool] is None:
                continue
            if m.error:
                notes.append(f"{tool} on {c.label}: {m.error}")
            print(f"{c.label:>10} {tool:<10} {fmt_time(m):>22} {fmt_rss(m):>10} "
                  f"{fmt_rate(m, c.packets, 'pkt/s'):>12} {m.error}", flush=True)
        rows.append((c, res))

    checks = verdicts(rows, tiny)
    print()
    print(results_table(rows))
    print()
    print(ratio_table(rows))
    print()
    for t, m, s in checks:
        print(f"{s:>5}  {t}: {m}")
    if first is not None and first.ok:
        notes.append(f"the first capanalyze run after a code change (numba compiling into its cache) took "
                     f"{first.median:.2f} s on the tiny capture; it is not counted above")
    write_markdown(args.output, machine_info(cap), rows, tiny, checks, argv_text, notes)
    print(f"\nwrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
