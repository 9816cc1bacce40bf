"""Running the scenario suite between two peers, and the reports.

Theory of operation: :func:`run_suite` starts peer A and peer B once, then for every selected
scenario runs two calls: A initiates (role ``A->B``), then B initiates (``B->A``). Each call
has its own ``random.Random`` seeded from (seed, scenario, role), so one seed reproduces a
whole run and any single call. A peer that broke the protocol is started again before the next
call (its parties are gone; every call makes fresh ones). Results become a :class:`Report`,
which writes JSON (:meth:`Report.to_json`, format ``securemsg-interop-report/1``, documented in
docs/interop-protocol.md) and JUnit XML (:meth:`Report.to_junit`).
"""

from __future__ import annotations

import dataclasses
import datetime
import random
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from securemsg.interop.driver import PROTOCOL, PeerCrashed, PeerProcess
from securemsg.interop.scenarios import (
    SCENARIOS,
    Params,
    ScenarioContext,
    Side,
    run_scenario,
)

__all__ = ["REPORT_FORMAT", "ROLES", "Report", "Result", "run_suite", "select"]

REPORT_FORMAT = "securemsg-interop-report/1"
ROLES = ("A->B", "B->A")
_STDERR_CHARS = 4000


@dataclass
class Result:
    """One scenario in one role."""

    scenario: str
    role: str
    status: str  # "pass" | "fail" | "unsupported"
    seconds: float
    divergence: str | None = None
    stderr: str | None = None


@dataclass
class Report:
    peer_a: dict[str, Any]
    peer_b: dict[str, Any]
    seed: int
    params: Params
    started: str
    seconds: float = 0.0
    results: list[Result] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.status != "fail" for r in self.results)

    def counts(self) -> dict[str, int]:
        out = {"pass": 0, "fail": 0, "unsupported": 0}
        for r in self.results:
            out[r.status] += 1
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "format": REPORT_FORMAT,
            "protocol": PROTOCOL,
            "a": self.peer_a,
            "b": self.peer_b,
            "seed": self.seed,
            "params": dataclasses.asdict(self.params),
            "started": self.started,
            "seconds": round(self.seconds, 3),
            "summary": self.counts(),
            "results": [
                {
                    "scenario": r.scenario,
                    "role": r.role,
                    "status": r.status,
                    "seconds": round(r.seconds, 3),
                    "divergence": r.divergence,
                    "stderr": r.stderr,
                }
                for r in self.results
            ],
        }

    def to_junit(self) -> bytes:
        counts = self.counts()
        total = str(len(self.results))
        suites = ET.Element(
            "testsuites",
            name="securemsg interop",
            tests=total,
            failures=str(counts["fail"]),
            errors="0",
            skipped=str(counts["unsupported"]),
            time=f"{self.seconds:.3f}",
        )
        suite = ET.SubElement(
            suites,
            "testsuite",
            name=f"{self.peer_a['peer']} vs {self.peer_b['peer']}",
            tests=total,
            failures=str(counts["fail"]),
            errors="0",
            skipped=str(counts["unsupported"]),
            time=f"{self.seconds:.3f}",
            timestamp=self.started[:19],
        )
        props = ET.SubElement(suite, "properties")
        for name, value in (
            ("seed", str(self.seed)),
            ("a", self.peer_a["peer"]),
            ("b", self.peer_b["peer"]),
            ("protocol", PROTOCOL),
        ):
            ET.SubElement(props, "property", name=name, value=value)
        for r in self.results:
            case = ET.SubElement(
                suite,
                "testcase",
                classname=f"interop.{r.scenario}",
                name=f"{r.scenario}[{r.role}]",
                time=f"{r.seconds:.3f}",
            )
            if r.status == "fail":
                failure = ET.SubElement(
                    case, "failure", message=_xml_text(r.divergence or "failed"), type="divergence"
                )
                failure.text = _xml_text(r.stderr or "")
            elif r.status == "unsupported":
                ET.SubElement(case, "skipped", message=_xml_text(f"not supported: {r.divergence}"))
        data: bytes = ET.tostring(suites, encoding="utf-8", xml_declaration=True)
        return data


#: Characters XML 1.0 cannot hold, even escaped (controls other than tab, newline and
#: carriage return; lone surrogates; U+FFFE and U+FFFF).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _xml_text(text: str) -> str:
    """A peer's text as XML can hold it: each impossible character becomes U+FFFD."""
    return _NOT_XML.sub("\ufffd", text)


def select(only: Iterable[str] | None) -> list[str]:
    """The scenario names to run (all, in suite order, when ``only`` is empty).

    Raises:
        ValueError: an unknown scenario name.
    """
    names = list(only or ())
    if not names:
        return list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise ValueError(
            f"unknown scenario(s): {', '.join(unknown)}; known: {', '.join(SCENARIOS)}"
        )
    return [n for n in SCENARIOS if n in names]


def _describe(spec: str, peer: PeerProcess) -> dict[str, Any]:
    return {
        "peer": spec,
        "implementation": dict(peer.implementation),
        "capabilities": sorted(peer.capabilities),
    }


def run_suite(
    a: tuple[str, Sequence[str]],
    b: tuple[str, Sequence[str]],
    *,
    only: Iterable[str] | None = None,
    seed: int | None = None,
    params: Params | None = None,
    on_result: Callable[[Result], None] | None = None,
    timeout: float = 60.0,
) -> Report:
    """Run the suite between peer ``a`` and peer ``b``, each ``(name, argv)``.

    Raises:
        PeerCrashed: a peer cannot start or says hello wrong.
        ValueError: an unknown scenario in ``only``.
    """
    names = select(only)
    params = params or Params()
    seed = random.SystemRandom().randrange(1 << 32) if seed is None else seed
    started = datetime.datetime.now(datetime.UTC).isoformat()
    t0 = time.monotonic()
    peers = {
        "A": PeerProcess(a[1], label=f"{a[0]}[A]", timeout=timeout).start(),
    }
    try:
        peers["B"] = PeerProcess(b[1], label=f"{b[0]}[B]", timeout=timeout).start()
    except PeerCrashed:
        peers["A"].close()
        raise
    report = Report(_describe(a[0], peers["A"]), _describe(b[0], peers["B"]), seed, params, started)
    try:
        for name in names:
            scenario = SCENARIOS[name]
            for role in ROLES:
                for key in ("A", "B"):
                    if not peers[key].alive:
                        old = peers[key]
                        old.close()
                        peers[key] = PeerProcess(old.argv, label=old.label, timeout=timeout).start()
                first, second = ("A", "B") if role == "A->B" else ("B", "A")
                ctx = ScenarioContext(random.Random(f"{seed}:{name}:{role}"), params)
                x = Side(peers[first], ctx, first)
                y = Side(peers[second], ctx, second)
                c0 = time.monotonic()
                status, words = run_scenario(scenario, ctx, x, y)
                stderr = None
                if status == "fail":
                    tails = [
                        f"--- {p.label} stderr ---\n{p.stderr_tail[-_STDERR_CHARS:]}"
                        for p in (peers["A"], peers["B"])
                        if p.stderr_tail
                    ]
                    stderr = "\n".join(tails) or None
                result = Result(name, role, status, time.monotonic() - c0, words, stderr)
                report.results.append(result)
                if on_result is not None:
                    on_result(result)
    finally:
        for p in peers.values():
            p.close()
        report.seconds = time.monotonic() - t0
    return report
