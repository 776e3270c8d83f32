"""Gates an exported variant must pass before it is published.

* `parity_gate`: ORT vs PyTorch on fixed sentences, batch sizes 1/3/17/32, both padding sides (padded with
  a non-zero id to prove the pad id is irrelevant). fp32 must reach cosine >= 0.99999, max |diff| <= 1e-4.
* `fidelity`: a variant vs the fp32 export (cosine), for fp16 / int8.
* `spearman_gate`: the average Spearman of each variant within `max_drop` points of fp32, through a
  scoring callback (default: `bellm.evaluation.evaluate` on the decision set `eval.gate_suite`, dev splits
  only, via the ORT runtime).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from bellm.tokenize import Encoded, pad_batch

# Fixed, varied sentences: short, long (hits truncation at small max_length), punctuation, digits, unicode.
PARITY_SENTENCES: tuple[str, ...] = (
    "A man is playing a guitar.",
    "Two dogs run across a snowy field.",
    "The stock market fell sharply on Tuesday after the central bank raised interest rates again.",
    "hi",
    "A woman is slicing an onion.",
    "Kids are playing soccer in the park while their parents watch from the benches nearby.",
    "The cat sat on the mat.",
    "Is this the right way to the train station?",
    "Three people are riding bicycles down a dirt road in the mountains.",
    "Nothing.",
    "Prices rose 3.5% in 2023, the fastest pace since 1991.",
    "A plane is taking off.",
    "Ein Mann spielt Gitarre auf der Bühne.",
    "She said: \"I'll be there at 5 o'clock, don't wait for me!\"",
    "The committee will review the proposal and publish its findings, together with a detailed list of "
    "recommendations for each of the regional offices, before the end of the next fiscal year.",
    "A baby is laughing.",
    "Rain is expected tomorrow.",
    "The quick brown fox jumps over the lazy dog.",
    "A person is peeling a potato with a knife in a small kitchen.",
    "Why?",
    "Scientists discovered a new species of frog in the rainforest of Madagascar.",
    "The orchestra performed Beethoven's ninth symphony to a sold-out hall.",
    "He is not happy about the decision.",
    "A group of men are loading cotton onto a truck.",
    "Emoji test 🙂 with accents: café, naïve, résumé.",
    "The movie was long, but the ending made it worth it.",
    "Two women are sitting on a bench and talking.",
    "Turn left at the second traffic light.",
    "The server returned an unexpected error code 503.",
    "A boy is jumping on a trampoline.",
    "The government announced new measures to reduce air pollution in large cities.",
    "OK",
    "A chef is cooking pasta in a large pot of boiling water.",
    "The dog is barking at the mailman.",
)
BATCH_SIZES: tuple[int, ...] = (1, 3, 17, 32)
PAD_SIDES: tuple[str, ...] = ("right", "left")
PAD_ID = 7  # any id: padded positions are masked out


class ParityError(RuntimeError):
    """An exported variant does not match its reference closely enough; it is not published."""


@dataclass
class ParityReport:
    min_cosine: float = 1.0
    max_abs_diff: float = 0.0
    mean_cosine: float = 1.0
    cases: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine (float64), (N,H),(N,H) → (N,)."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return (a * b).sum(1) / np.maximum(den, 1e-30)


def compare(ref: np.ndarray, got: np.ndarray) -> tuple[float, float, float]:
    """(min cosine, mean cosine, max abs diff) of two (N,H) embedding matrices."""
    c = cosines(ref, got)
    return float(c.min()), float(c.mean()), float(np.abs(ref.astype(np.float64) - got).max())


def parity_cases(
    encs: Sequence[Encoded], batch_sizes: Sequence[int] = BATCH_SIZES, sides: Sequence[str] = PAD_SIDES
) -> list[tuple[int, str, tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    """Padded batches (bs, side, (ids, mask, span)) of the first `bs` encodings, in a fixed order."""
    if max(batch_sizes) > len(encs):
        raise ValueError(f"need {max(batch_sizes)} sentences for the parity batches, got {len(encs)}")
    return [(bs, side, pad_batch(encs[:bs], PAD_ID, side)) for bs in batch_sizes for side in sides]


RunFn = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]  # ids, mask, span (B,S) → (B,H)


def run_parity(
    reference: RunFn,
    candidate: RunFn,
    encs: Sequence[Encoded],
    min_cosine: float,
    max_abs: float | None,
    name: str,
    batch_sizes: Sequence[int] = BATCH_SIZES,
) -> ParityReport:
    """Compare two embedding functions on every (batch size, padding side); raise `ParityError` on a miss."""
    report = ParityReport()
    cos_all = []
    for bs, side, (ids, mask, span) in parity_cases(encs, batch_sizes):
        ref, got = reference(ids, mask, span), candidate(ids, mask, span)
        cmin, cmean, diff = compare(ref, got)
        cos_all.append(cmean)
        report.cases.append({"batch": bs, "side": side, "min_cosine": cmin, "max_abs_diff": diff})
    # numpy's min/max propagate NaN (Python's skip it), and the comparisons are written so NaN fails.
    report.min_cosine = float(np.min([c["min_cosine"] for c in report.cases]))
    report.max_abs_diff = float(np.max([c["max_abs_diff"] for c in report.cases]))
    report.mean_cosine = float(np.mean(cos_all))
    bad_cos = not report.min_cosine >= min_cosine
    bad_abs = max_abs is not None and not report.max_abs_diff <= max_abs
    if bad_cos or bad_abs:
        raise ParityError(
            f"{name}: parity failed: min cosine {report.min_cosine:.7f} (need >= {min_cosine}), max |diff| "
            f"{report.max_abs_diff:.2e}" + (f" (need <= {max_abs})" if max_abs is not None else "")
        )
    return report


# ------------------------------------------------------------------- STS gate (on the decision set)

ScoreFn = Callable[[Any], float]  # encoder-like (.encode, .fingerprint) → Spearman x100


def suite_scorer(suite: str | list[str], max_pairs: int | None = None, batch_size: int = 32,
                 cache: bool = False) -> ScoreFn:
    """The average Spearman x100 over `suite` (the decision set, development splits only: `bellm.splits`)
    through `bellm.evaluation.evaluate` (the evaluation code; uncached unless `cache`)."""

    def score(encoder: Any) -> float:
        from bellm.evaluation import evaluate

        value = evaluate(encoder, suite, max_pairs=max_pairs, batch_size=batch_size, cache=cache)["avg"]
        if value is None:
            raise ValueError(f"the Spearman on {suite} is undefined (constant predictions?)")
        return float(value)

    return score


def spearman_gate(
    encoders: Mapping[str, Any], score_fn: ScoreFn, max_drop: float = 0.5, reference: str = "fp32"
) -> dict[str, dict[str, Any]]:
    """{variant: {spearman, delta, passed}}; the reference variant always passes (it defines the bar)."""
    if reference not in encoders:
        raise ValueError(f"the Spearman gate needs the {reference!r} variant as its reference")
    scores = {name: score_fn(enc) for name, enc in encoders.items()}
    base = scores[reference]
    return {
        name: {"spearman": s, "delta": s - base, "passed": name == reference or base - s <= max_drop}
        for name, s in scores.items()
    }
