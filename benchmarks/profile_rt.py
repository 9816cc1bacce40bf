"""Where the 1:1 round trip spends its Python: calls and bytecodes per round trip, by function.

Run: ``python -m benchmarks.profile_rt [--top N] [--size BYTES]``.

Theory of operation
-------------------
The floor (:mod:`benchmarks.floor`) and securemsg make the same cryptographic calls per round
trip, so the difference between them is Python work. Timing small functions one by one misleads
(in place, inside a whole round trip, a function costs up to twice what it costs in a tight loop),
so this tool counts instead, for a steady-state 100-byte round trip on an established session
(the ``rt_100b`` scenario of :mod:`benchmarks.compare`):

* **calls**: function calls per round trip (cProfile's call counts, Python and C functions);
* **bytecodes**: bytecode instructions executed per round trip, by the function that ran them
  (``sys.settrace`` with opcode events).

Counts, unlike times, do not move with the machine's load, so two runs (or two commits) can be
compared directly. The report lists the top functions of securemsg and the floor's totals.
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import pstats
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

from benchmarks.bench_peers import PT_100
from benchmarks.compare import securemsg_pair
from benchmarks.floor import FloorPair

_ROUNDS = 50


Key = tuple[str, int]  # (file name, first line): one function, whatever its name


def _key(filename: str, line: int) -> Key:
    return filename.rsplit("/", 1)[-1], line


def count_calls(step: Callable[[], object], rounds: int = _ROUNDS) -> dict[Key, float]:
    """Function calls per ``step()``, by function (C functions have line 0)."""
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(rounds):
        step()
    prof.disable()
    stats: Any = pstats.Stats(prof).stats
    out: dict[Key, float] = collections.defaultdict(float)
    for (filename, line, func), (_cc, ncalls, *_rest) in stats.items():
        if "Profiler" in func:
            continue
        key = _key(filename, line) if line else ("", hash(func))
        out[key] += ncalls / rounds
    return out


def count_bytecodes(
    step: Callable[[], object], rounds: int = _ROUNDS
) -> tuple[dict[Key, float], dict[Key, str]]:
    """Bytecode instructions executed per ``step()`` by each function, and the functions' names."""
    counts: collections.Counter[Key] = collections.Counter()
    names: dict[Key, str] = {}

    def tracer(frame: FrameType, event: str, _arg: object) -> Any:
        frame.f_trace_opcodes = True
        if event == "opcode":
            code = frame.f_code
            key = _key(code.co_filename, code.co_firstlineno)
            counts[key] += 1
            if key not in names:
                names[key] = key[0] + ":" + code.co_qualname
        return tracer

    sys.settrace(tracer)
    try:
        for _ in range(rounds):
            step()
    finally:
        sys.settrace(None)
    return {k: v / rounds for k, v in counts.items()}, names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_rt", description=__doc__)
    parser.add_argument("--top", type=int, default=25, help="functions to list (default 25)")
    args = parser.parse_args(argv)

    alice, bob = securemsg_pair()
    floor = FloorPair()

    def securemsg_rt() -> object:
        return alice.send(bob, PT_100)

    def floor_rt() -> object:
        return floor.round_trip(PT_100)

    for _ in range(5):  # the first messages of a chain take other paths; start steady
        securemsg_rt()
        floor_rt()
    calls = {"securemsg": count_calls(securemsg_rt), "floor": count_calls(floor_rt)}
    codes, names = count_bytecodes(securemsg_rt)
    floor_codes, _ = count_bytecodes(floor_rt)

    print("per 100-byte round trip  (securemsg / floor)")
    for what, ours, theirs in (
        ("function calls", sum(calls["securemsg"].values()), sum(calls["floor"].values())),
        ("bytecodes", sum(codes.values()), sum(floor_codes.values())),
    ):
        print(f"  {what:15s} {ours:8.0f} / {theirs:8.0f}   = {ours / theirs:.2f}x")
    print(f"\nsecuremsg, top {args.top} functions by bytecodes executed [calls]:")
    for key, n in sorted(codes.items(), key=lambda kv: -kv[1])[: args.top]:
        print(f"  {n:7.0f}  [{calls['securemsg'].get(key, 0):4.0f}]  {names[key]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
