#!/usr/bin/env python3
"""Fuzz the property tests with random seeds for a while, then list what failed.

``make fuzz`` runs this. The tests marked ``hypothesis`` (every ``@given`` test, and the
schemathesis one) run under the ``fuzz`` Hypothesis profile (tests/support/
hypothesis_profiles.py: random seeds, ten times the examples of ``make test``), one test file per
round and a fresh seed per round, files in turn, until the time is up; the round running then
is interrupted. Each failure is printed once with the seeds that found it and the command that
reproduces it. Logs and JUnit files of every round are kept under ``var/fuzz/<time>/``.

Usage: ``python scripts/fuzz.py [--minutes 10] [PATH ...]`` (default path: tests). Exit
status 1 when something was found, 2 when nothing could be fuzzed.
"""

from __future__ import annotations

import argparse
import re
import secrets
import shlex
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = Path(sys.executable)
PYTEST = [
    str(PYTHON.relative_to(ROOT) if PYTHON.is_relative_to(ROOT) else PYTHON),
    *("-m", "pytest", "-p", "tests.support.hypothesis_profiles"),
]
PROFILE = "--hypothesis-profile=fuzz"
GRACE_S = 90.0
"""How long an interrupted round has to stop (fixtures stop their services) before it is killed."""
_STATS = re.compile(r"- (\d+) passing(?: examples?)?, (\d+) failing(?: examples?)?,")


@dataclass(frozen=True)
class Round:
    """One pytest run: a test file under one seed."""

    number: int
    target: str
    seed: int
    folder: Path

    @property
    def junit(self) -> Path:
        """Its JUnit XML report."""
        return self.folder / f"round-{self.number:03d}.xml"

    @property
    def log(self) -> Path:
        """Its pytest output."""
        return self.folder / f"round-{self.number:03d}.log"

    def command(self, *, node: str | None = None) -> list[str]:
        """The pytest command of this round (of one of its tests with ``node``)."""
        return [
            *PYTEST,
            node or self.target,
            "-m",
            "hypothesis",
            PROFILE,
            f"--hypothesis-seed={self.seed}",
        ]


@dataclass
class Finding:
    """A distinct failure: a test and the first line of what it raised."""

    node: str
    headline: str
    excerpt: str
    rounds: list[Round] = field(default_factory=list)


@dataclass
class Tally:
    """What a fuzz session ran and found."""

    rounds: list[Round] = field(default_factory=list)
    tests: int = 0
    examples: int = 0
    interrupted: int = 0
    findings: dict[tuple[str, str], Finding] = field(default_factory=dict)


def collect(paths: list[str]) -> tuple[list[str], list[str]]:
    """The test files holding ``hypothesis`` tests (fewest tests first) and collection errors."""
    command = [
        *PYTEST,
        "--collect-only",
        "-q",
        "-m",
        "hypothesis",
        "--continue-on-collection-errors",
        *paths,
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)  # noqa: S603
    counts: dict[str, int] = {}
    for line in done.stdout.splitlines():
        if "::" in line and not line.startswith(("ERROR", " ")):
            file = line.split("::", 1)[0]
            counts[file] = counts.get(file, 0) + 1
    errors = [line for line in done.stdout.splitlines() if line.startswith("ERROR ")]
    return sorted(counts, key=lambda file: (counts[file], file)), errors


def run_round(spec: Round, *, deadline: float) -> int | None:
    """Run one round until it ends or the deadline; its exit status, None when cut short."""
    with spec.log.open("w") as out:
        command = [
            *spec.command(),
            "--hypothesis-show-statistics",
            f"--junitxml={spec.junit}",
            "-q",
        ]
        process = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)  # noqa: S603
        try:
            return process.wait(timeout=max(deadline - time.monotonic(), 1.0))
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGINT)  # pytest stops after the running test, tears down
        try:
            process.wait(timeout=GRACE_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        return None


def record(spec: Round, tally: Tally, *, status: int | None) -> None:
    """Add a finished (or cut) round's tests, examples and failures to ``tally``."""
    tally.rounds.append(spec)
    tally.interrupted += status is None
    if status not in (None, 0, 1):  # 1: tests failed, read below; else pytest itself did
        headline = f"pytest exited with status {status} (not a test failure)"
        _found(tally, spec, node=spec.target, headline=headline, text=spec.log.read_text())
    tally.examples += sum(int(ok) + int(bad) for ok, bad in _STATS.findall(spec.log.read_text()))
    if not spec.junit.exists():
        return
    module = spec.target.removesuffix(".py").replace("/", ".")
    for case in ElementTree.parse(spec.junit).iter("testcase"):  # noqa: S314 - our own file
        if case.find("skipped") is not None:
            continue
        tally.tests += 1
        tally.examples += sum(
            int(prop.get("value", "0"))
            for prop in case.iter("property")
            if prop.get("name") == "examples"
        )
        failure = case.find("failure")
        failure = failure if failure is not None else case.find("error")
        if failure is None:
            continue
        owner = case.get("classname", "").removeprefix(module).strip(".")
        node = "::".join(part for part in (spec.target, owner, case.get("name", "")) if part)
        text = failure.text or ""
        _found(
            tally, spec, node=node, headline=_headline(failure.get("message", ""), text), text=text
        )


def _found(tally: Tally, spec: Round, *, node: str, headline: str, text: str) -> None:
    """Count a failure of ``node`` in round ``spec``, once per node and headline."""
    finding = tally.findings.setdefault((node, headline), Finding(node, headline, _excerpt(text)))
    finding.rounds.append(spec)


def _headline(message: str, text: str) -> str:
    """The first line of a failure, without the parts that change from seed to seed."""
    line = (message or text).strip().splitlines()[0] if (message or text).strip() else "failed"
    return re.sub(r"0x[0-9a-f]+", "0x…", line)[:200]


def _excerpt(text: str, *, lines: int = 30) -> str:
    """The part of a failure report a reader needs: the falsifying example, else the end."""
    rows = text.splitlines()
    for marker in ("Falsifying example", "Failing test case", "Reproduce with", "- ST", "[5"):
        starts = [n for n, row in enumerate(rows) if marker in row]
        if starts:
            return "\n".join(rows[max(starts[0] - 4, 0) : starts[0] + lines])
    return "\n".join(rows[-lines:])


def summary(tally: Tally, *, minutes: float, folder: Path, errors: list[str]) -> str:
    """The readable report of a session."""
    files = len({spec.target for spec in tally.rounds})
    out = [
        f"make fuzz: {minutes:.1f} minutes, {len(tally.rounds)} rounds over {files} test files "
        f"({tally.interrupted} cut at the deadline), {tally.tests} test runs, "
        f"{tally.examples} examples",
        f"logs: {folder.relative_to(ROOT)}",
        f"seeds: {', '.join(f'{spec.target}={spec.seed}' for spec in tally.rounds)}",
    ]
    out += [f"NOT FUZZED (collection error): {error}" for error in errors]
    out.append(f"findings: {len(tally.findings)}")
    for number, finding in enumerate(tally.findings.values(), start=1):
        first = finding.rounds[0]
        seeds = ", ".join(f"{spec.seed} (round {spec.number})" for spec in finding.rounds)
        out += [
            "",
            f"{number}. {finding.node}",
            f"   {finding.headline}",
            f"   found by seed {seeds}",
            f"   reproduce: {shlex.join(first.command(node=finding.node))}",
            f"   (or the round, if the test alone passes: {shlex.join(first.command())})",
            *(f"   | {row}" for row in finding.excerpt.splitlines()),
        ]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    """Fuzz for ``--minutes``; print and keep the summary; 1 if anything was found."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long to fuzz (10)")
    parser.add_argument("paths", nargs="*", default=["tests"], help="where the tests are")
    args = parser.parse_args(argv)
    started = time.monotonic()
    deadline = started + args.minutes * 60
    folder = ROOT / "var" / "fuzz" / datetime.now().strftime("%Y%m%d-%H%M%S")
    folder.mkdir(parents=True, exist_ok=True)
    targets, errors = collect(args.paths)
    if not targets:
        print("make fuzz: no hypothesis tests collected", *errors, sep="\n", file=sys.stderr)
        return 2
    tally = Tally()
    while time.monotonic() < deadline:
        target = targets[len(tally.rounds) % len(targets)]
        spec = Round(len(tally.rounds) + 1, target, secrets.randbits(64), folder)
        print(f"round {spec.number}: {target} seed {spec.seed}", flush=True)
        record(spec, tally, status=run_round(spec, deadline=deadline))
    minutes = (time.monotonic() - started) / 60
    report = summary(tally, minutes=minutes, folder=folder, errors=errors)
    (folder / "summary.txt").write_text(report + "\n")
    print(report)
    return 1 if tally.findings else 0


if __name__ == "__main__":
    sys.exit(main())
