"""What the side-by-side speed benchmarks (``fuse_speed.py``, ``train_speed.py``) share: the clock, the options
they both take, the per-method loop that prints each method's rows as they come, and the closing report (table,
load average, optional JSON)."""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

from fusebench.cpu import set_threads

#: timings use process CPU time by default: on a machine shared with other jobs it counts this process's work and
#: not its waits for a core (both sides run single-threaded); ``--clock wall`` for wall time (several threads)
CLOCKS: dict[str, Callable[[], float]] = {"cpu": time.process_time, "wall": time.perf_counter}
_clock: list[Callable[[], float]] = [time.process_time]


def now() -> float:
    """Seconds on the clock ``--clock`` chose."""
    return _clock[0]()


def timed(func: Callable[..., Any], *args: Any) -> tuple[float, Any]:
    """Seconds ``func(*args)`` took, and what it returned."""
    start = now()
    value = func(*args)
    return now() - start, value


def add_common_options(parser: argparse.ArgumentParser, official_names: Iterable[str]) -> None:
    names = ", ".join(official_names)
    parser.add_argument(
        "--official",
        action="append",
        default=[],
        metavar="NAME=FOLDER",
        help=f"the official code of NAME ({names}); repeatable",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads for both sides")
    parser.add_argument(
        "--clock",
        choices=list(CLOCKS),
        default="cpu",
        help="cpu: process CPU time (default; right for --threads 1 on a shared machine); wall",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")


def parse_official(items: list[str], valid: Iterable[str]) -> dict[str, Path]:
    """``--official NAME=FOLDER`` items as {name: folder}; exits with the valid names on a bad item."""
    valid = list(valid)
    out = {}
    for item in items:
        name, sep, folder = item.partition("=")
        if not sep or name not in valid:
            raise SystemExit(f"--official {item!r}: expected NAME=FOLDER with NAME one of {', '.join(valid)}")
        out[name] = Path(folder)
    return out


def start(args: argparse.Namespace) -> tuple[float, float, float]:
    """Apply ``--clock`` and ``--threads`` (as ``fusebench fuse/train --threads``: also huge pages and allocator
    reuse, for both sides), print the setting, and return the load average before the run."""
    _clock[0] = CLOCKS[args.clock]
    set_threads(args.threads)
    print(f"torch threads {torch.get_num_threads()}, cpu count {os.cpu_count()}, fp32, cpu, {args.clock} clock")
    return os.getloadavg()


def run_methods(names: Iterable[str], run_one: Callable[[str], Any], markdown: Callable[[dict], str]) -> dict:
    """``run_one(name)`` for each method, printing its table rows as soon as they are known."""
    results = {}
    for name in names:
        print(f"{name} ...", flush=True)
        results[name] = run_one(name)
        print("\n".join(markdown({name: results[name]}).splitlines()[2:]), flush=True)  # rows, without the header
    return results


def report(args: argparse.Namespace, table: str, load_before: tuple[float, float, float], payload: dict) -> None:
    """Print the table and the load average; write ``payload`` (plus the clock, threads and load) to ``--json``."""
    load_after = os.getloadavg()
    print(table)
    print(f"load average before {load_before[0]:.2f} / after {load_after[0]:.2f} (1-min)")
    if args.json:
        common = {"clock": args.clock, "threads": args.threads, "load_before": load_before, "load_after": load_after}
        args.json.write_text(json.dumps(common | payload, indent=2))
