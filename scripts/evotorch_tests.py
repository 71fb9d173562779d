"""Run EvoTorch 0.6.1's own tests against hpcne, with only ``evotorch`` renamed to ``hpcne`` in imports.

Usage::

    python scripts/evotorch_tests.py                 # the files issue 11 measures
    python scripts/evotorch_tests.py --all           # every test file of the release
    python scripts/evotorch_tests.py test_net -v     # chosen files; -v shows each failure's last line

The EvoTorch sdist is fetched with ``pip download`` into ``--dir`` (default
``/tmp/hpcne-evotorch-tests``, never into the repository). Only ``import``/``from`` lines are
rewritten. EvoTorch's ``conftest.py`` starts Ray; hpcne has no Ray, so a conftest that only seeds
``random`` and numpy (as EvoTorch's does) replaces it. Each file runs in its own pytest process;
the script prints passed/failed/error/skipped per file and the totals.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

__all__ = ["MEASURED", "fetch_tests", "main", "rename_imports", "run_file"]

VERSION = "0.6.1"
# The test files that the compatibility promise covers (docs/EVOTORCH.md).
MEASURED = (
    "test_core",
    "test_net",
    "test_neuroevolution_net_parser",
    "test_optimizers",
    "test_logging",
    "test_examples",
    "test_ga",
    "test_hook",
    "test_ranking",
    "test_normalization",
)
CONFTEST = '''"""Replaces EvoTorch's conftest (which starts Ray): seed as it does."""
import random

import numpy as np


def pytest_sessionstart(session):
    random.seed(0)
    np.random.seed(0)
'''
# `import evotorch`, `import evotorch.x as y`, `from evotorch(.x) import ...`, at any indentation.
_IMPORT = re.compile(r"^(\s*)(import|from)(\s+)evotorch\b", re.MULTILINE)


def rename_imports(source: str) -> str:
    """Rewrite ``evotorch`` to ``hpcne`` in import statements only (``import evotorch`` keeps its name)."""
    source = re.sub(r"^(\s*)import evotorch$", r"\1import hpcne as evotorch", source, flags=re.MULTILINE)
    return _IMPORT.sub(r"\1\2\3hpcne", source)


def fetch_tests(workdir: Path) -> Path:
    """Download and unpack EvoTorch's sdist once; return the folder of renamed tests."""
    tests = workdir / "tests"
    if (tests / "conftest.py").exists():
        return tests
    workdir.mkdir(parents=True, exist_ok=True)
    sdist = workdir / f"evotorch-{VERSION}.tar.gz"
    if not sdist.exists():
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:"]
        subprocess.run([*cmd, f"evotorch=={VERSION}", "-d", str(workdir)], check=True)
    prefix = f"evotorch-{VERSION}/tests/"
    tests.mkdir(exist_ok=True)
    with tarfile.open(sdist) as tar:
        for member in tar.getmembers():
            if member.isfile() and member.name.startswith(prefix) and member.name.endswith(".py"):
                text = tar.extractfile(member).read().decode()  # type: ignore[union-attr]
                (tests / Path(member.name).name).write_text(rename_imports(text))
    (tests / "conftest.py").write_text(CONFTEST)
    return tests


def _reason(element: ET.Element) -> str:
    """The last line of a failure's traceback (the exception), or its message."""
    lines = [line for line in (element.text or "").splitlines() if line.startswith("E ")]
    return lines[-1][1:].strip() if lines else element.get("message", "")


def run_file(tests: Path, name: str, *, timeout: float = 900) -> dict[str, list[str]]:
    """Run one test file in its own pytest process; return test ids grouped by outcome."""
    report = tests / f".{name}.xml"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}", f"{name}.py"]
    # EvoTorch's MLflow test writes to MLflow's file store, which MLflow 3 serves only on request.
    env = {**os.environ, "MLFLOW_ALLOW_FILE_STORE": "true"}
    done = subprocess.run(cmd, cwd=tests, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    outcomes: dict[str, list[str]] = {"passed": [], "failed": [], "error": [], "skipped": []}
    if not report.exists():
        outcomes["error"].append(f"{name}: pytest produced no report:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
        return outcomes
    for case in ET.parse(report).iter("testcase"):
        test_id = f"{case.get('name')}"
        kinds = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
        if kinds:
            message = _reason(next(iter(case)))
            outcomes[{"failure": "failed"}.get(kinds[0], kinds[0])].append(f"{test_id}: {message[:200]}")
        else:
            outcomes["passed"].append(test_id)
    report.unlink()
    return outcomes


def main(argv: list[str] | None = None) -> int:
    """Fetch, rename and run; print a table of outcomes per file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", help="test file names (default: the measured set)")
    parser.add_argument("--all", action="store_true", help="run every test file of the release")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/hpcne-evotorch-tests"), help="work folder")
    parser.add_argument("-v", "--verbose", action="store_true", help="list each failing test and why")
    args = parser.parse_args(argv)
    tests = fetch_tests(args.dir)
    if args.all:
        names = sorted(p.stem for p in tests.glob("test_*.py"))
    else:
        names = [Path(f).stem for f in args.files] or list(MEASURED)
    totals = dict.fromkeys(("passed", "failed", "error", "skipped"), 0)
    print(f"{'file':36} {'passed':>7} {'failed':>7} {'error':>6} {'skipped':>8}")
    for name in names:
        outcomes = run_file(tests, name)
        counts = {k: len(v) for k, v in outcomes.items()}
        print(f"{name:36} {counts['passed']:7} {counts['failed']:7} {counts['error']:6} {counts['skipped']:8}")
        for kind in ("failed", "error") if args.verbose else ():
            for line in outcomes[kind]:
                print(f"    {kind}: {line}")
        for k, v in counts.items():
            totals[k] += v
    print(f"{'total':36} {totals['passed']:7} {totals['failed']:7} {totals['error']:6} {totals['skipped']:8}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
