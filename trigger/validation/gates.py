"""Gates from the recipe's validation section: what a trigger group signs off on.

Each gate decides one of three things. `passed` and `failed` when its figure is told from its
limit; `undecided` when the jets evaluated are too few to tell them apart at the stated
confidence, with the number of jets that would decide it. A figure measured with a statistical
uncertainty (an accuracy difference) is decided when it lies more than z standard errors from
the limit, z the one-sided normal quantile of the confidence; its standard error falls as
1/sqrt(jets), so the jets needed are the jets evaluated times (z sigma / |value - limit|)^2. A
figure that carries its own jet count (the observable distance, see
`trigger.validation.observables`) brings it along. Hardware figures are exact: never undecided.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy.stats import norm

from trigger.config import GatesConfig

PASSED, FAILED, UNDECIDED = "passed", "failed", "undecided"

# gate name -> (figure it reads, True when the figure must stay at or below the limit)
GATES = {
    "max_accuracy_drop": ("accuracy_drop", True),
    "max_observable_distance": ("observable_distance", True),
    "min_bit_exact_fraction": ("bit_exact_fraction", False),
    "max_latency_ns": ("latency_ns", True),
    "max_lut": ("lut", True),
    "max_dsp": ("dsp", True),
    "max_shift_degradation": ("shift_degradation", True),
}


@dataclass(frozen=True)
class Measurement:
    """A gate's figure: its value, and what a statistical verdict on it needs.

    `uncertainty` is the value's standard error on `jets` jets; `jets_needed`, when known
    directly, the jets at which the figure can judge its limit (None with `jets` set: no
    estimate exists).
    """

    value: float | None
    uncertainty: float | None = None
    jets: int | None = None
    jets_needed: int | None = None


Figure = Measurement | Sequence[Measurement] | float | int | None


def _jets_needed(m: Measurement, limit: float, z: float) -> int | None:
    if m.uncertainty is None:
        return m.jets_needed
    margin = abs(m.value - limit)
    if not math.isfinite(m.uncertainty):
        return None
    if m.uncertainty == 0:
        return m.jets
    if margin == 0:
        return None  # at the limit: no finite sample tells the two apart
    return max(math.ceil(m.jets * (z * m.uncertainty / margin) ** 2), 1)


def judge(m: Measurement, limit: float, at_most: bool, z: float) -> dict:
    """One measurement against its limit: value, limit, verdict, and the jets behind it."""
    beyond = m.value is None or (m.value > limit if at_most else m.value < limit)
    result = {"value": m.value, "limit": limit, "uncertainty": m.uncertainty, "jets": m.jets}
    if m.value is None or m.jets is None:  # missing figures fail; exact ones decide alone
        return result | {"verdict": FAILED if beyond else PASSED, "jets_needed": None}
    needed = _jets_needed(m, limit, z)
    decided = needed is not None and needed <= m.jets
    # A significant observable distance beyond the limit fails whatever else is unjudged.
    if beyond and (decided or m.uncertainty is None):
        verdict = FAILED
    else:
        verdict = (FAILED if beyond else PASSED) if decided else UNDECIDED
    return result | {"verdict": verdict, "jets_needed": needed}


def _combine(results: list[dict]) -> dict:
    """Several measurements of one figure (e.g. one per shifted sample): any failure fails,
    else any undecided leaves it undecided; the largest value and need are shown."""
    for verdict in (FAILED, UNDECIDED, PASSED):
        chosen = [r for r in results if r["verdict"] == verdict]
        if chosen:
            worst = max(chosen, key=lambda r: r["value"] if r["value"] is not None else math.inf)
            needs = [r["jets_needed"] for r in chosen]
            if verdict == UNDECIDED:
                worst = worst | {"jets_needed": None if None in needs else max(needs)}
            return worst
    return {}


def _measurements(figure: Figure) -> list[Measurement]:
    if isinstance(figure, Measurement):
        return [figure]
    if figure is None or isinstance(figure, int | float):
        return [Measurement(figure)]
    return list(figure) or [Measurement(None)]


def evaluate_gates(
    config: GatesConfig, figures: dict[str, Figure], confidence: float = 0.99
) -> dict[str, dict]:
    """Each configured gate with its value, limit, verdict and jets; a missing figure fails."""
    z = float(norm.ppf(confidence))
    results = {}
    for gate, (name, at_most) in GATES.items():
        limit = getattr(config, gate)
        if limit is None:
            continue
        judged = [judge(m, limit, at_most, z) for m in _measurements(figures.get(name))]
        results[gate] = _combine(judged)
    return results


def with_verdict(gates: dict[str, dict], verdict: str) -> list[str]:
    return [name for name, gate in gates.items() if gate["verdict"] == verdict]


def failed(gates: dict[str, dict]) -> list[str]:
    return with_verdict(gates, FAILED)


def undecided(gates: dict[str, dict]) -> list[str]:
    return with_verdict(gates, UNDECIDED)


def overall(gates: dict[str, dict]) -> str:
    """FAILED if any gate failed, else UNDECIDED if any is, else PASSED."""
    verdicts = {gate["verdict"] for gate in gates.values()}
    return next((v for v in (FAILED, UNDECIDED) if v in verdicts), PASSED)
