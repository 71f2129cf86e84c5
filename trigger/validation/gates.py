"""Pass/fail gates from the recipe's validation section: what a trigger group signs off on."""

from __future__ import annotations

from trigger.config import GatesConfig

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


def evaluate_gates(config: GatesConfig, figures: dict[str, float | None]) -> dict[str, dict]:
    """Each configured gate with its value, limit and verdict; a missing figure fails."""
    results = {}
    for gate, (figure, at_most) in GATES.items():
        limit = getattr(config, gate)
        if limit is None:
            continue
        value = figures.get(figure)
        passed = value is not None and (value <= limit if at_most else value >= limit)
        results[gate] = {"value": value, "limit": limit, "passed": bool(passed)}
    return results


def failed(gates: dict[str, dict]) -> list[str]:
    return [name for name, gate in gates.items() if not gate["passed"]]
