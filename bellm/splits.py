"""Which data files are test splits: they are reported, and never decide anything (issue 26).

Every decision of the pipeline (the flow's quality gates, the champion promotion and its regression check, the
export's variant gate, a sweep's selection) reads development data only. This module is the one home of the rule
that tells a test file from a development file, and of the guard that refuses a test file as a decision set.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from bellm.errors import InputError

# The STS12-16 collections are test data as a whole (SentEval evaluates on every file of a year).
TEST_COLLECTIONS = frozenset({"sts12", "sts13", "sts14", "sts15", "sts16"})


def is_test_split(path: str | Path) -> bool:
    """A file that holds test pairs: a `test*` file (or one with a `test` name part, e.g. `snli_test_x.csv`),
    or anything under the STS12-16 test collections."""
    p = Path(path)
    parts = re.split(r"[._-]", p.name.lower())
    return p.name.lower().startswith("test") or "test" in parts or any(part in TEST_COLLECTIONS for part in p.parts)


def refuse_test_splits(paths: Iterable[str | Path], what: str) -> None:
    """Raise `InputError` naming the first test file in `paths`: `what` (e.g. "eval.gate_suite") decides, and
    decisions are made on development data only."""
    for path in paths:
        if is_test_split(path):
            raise InputError(f"{what}: {path} is a test split; decisions (gates, promotion, export variant "
                             "gate, selection) read development data only (STS-B dev, SICK-R trial, ...)")
