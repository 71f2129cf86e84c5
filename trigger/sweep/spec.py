"""The sweep file: a base recipe, a search space over its fields, objectives, a budget.

Every check that needs no training runs here, when the file is read: an unknown recipe field, an
empty range, a sampler that cannot walk the space, a value of the space that the recipe schema
refuses on its own (a choice of `bits: 0`, or either end of a range). A combination of values
that the schema refuses (mean pooling over 12 constituents, say) is a failed trial, recorded
with its error, not a refused sweep.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from trigger.cluster import ClusterConfig
from trigger.config import (
    Recipe,
    Strict,
    field_objection,
    load_recipe,
    read_mapping,
    recipe_tree,
    validated,
)
from trigger.errors import TriggerError

# What a trial reports, and which way is better. LUT, FF and latency are da4ml's cost-model
# estimates of the whole firmware path (L1 words to logits), as `trigger emit-hls` records.
OBJECTIVES = {
    "accuracy": "maximize",
    "lut": "minimize",
    "ff": "minimize",
    "latency_ns": "minimize",
}


class Dimension(Strict):
    """One searched recipe field: a list of `choices`, or a range from `low` to `high`."""

    choices: tuple[Any, ...] | None = None
    """The values to try (any YAML value a recipe field takes, lists included)."""
    low: float | None = None
    """Lowest value of a range (included)."""
    high: float | None = None
    """Highest value of a range (included)."""
    step: Annotated[float, Field(gt=0)] | None = None
    """Step of a range; integers when `low`, `high` and `step` all are."""
    log: bool = False
    """Sample a range uniformly in its logarithm (no step)."""

    @model_validator(mode="after")
    def _one_kind(self) -> Dimension:
        ranged = self.low is not None or self.high is not None
        if self.choices is not None and ranged:
            msg = "give either choices or low/high, not both"
            raise ValueError(msg)
        if self.choices is None and (self.low is None or self.high is None):
            msg = "give choices, or both low and high"
            raise ValueError(msg)
        if self.choices is not None and not self.choices:
            msg = "choices is empty"
            raise ValueError(msg)
        if ranged and self.low > self.high:
            msg = f"empty range: low ({self.low:g}) is above high ({self.high:g})"
            raise ValueError(msg)
        if self.log and (self.step is not None or (self.low or 0) <= 0):
            msg = "a log range needs low > 0 and no step"
            raise ValueError(msg)
        return self

    @property
    def integer(self) -> bool:
        values = (self.low, self.high, self.step if self.step is not None else 1)
        return self.choices is None and all(float(v).is_integer() for v in values)

    def extremes(self) -> list[Any]:
        """Every choice, or both ends of the range: the values checked before any trial."""
        if self.choices is not None:
            return list(self.choices)
        ends = [self.low, self.high]
        return [int(v) for v in ends] if self.integer else ends

    def grid(self) -> list[Any]:
        """Every value, for the grid sampler."""
        if self.choices is not None:
            return list(self.choices)
        if self.step is None:
            msg = "the grid sampler needs choices or a step for every range"
            raise ValueError(msg)
        count = math.floor((self.high - self.low) / self.step + 1e-9) + 1
        values = [self.low + i * self.step for i in range(count)]
        return [int(v) for v in values] if self.integer else [round(v, 12) for v in values]


class ScalingConfig(Strict):
    """What a scaling sweep fits: its model-size and training-set-size fields."""

    size_field: str = "architecture.phi"
    """The searched field that sets the model size (parameters P)."""
    jets_field: str = "data.train_jets"
    """The searched field that sets the number of training jets N."""


class SweepSpec(Strict):
    """A sweep file (`trigger sweep SWEEP.yaml`)."""

    recipe: Path
    """Base recipe, relative to the sweep file."""
    data: Path | None = None
    """Data file (relative to the sweep file); default: the base recipe's `data.path`,
    generated from its `data.generation` settings when absent."""
    fixed: dict[str, Any] = Field(default_factory=dict)
    """Recipe fields set in every trial (and in every reference), as `--set` paths."""
    space: dict[str, Dimension]
    """The searched recipe fields, as `--set` paths."""
    objectives: tuple[Literal["accuracy", "lut", "ff", "latency_ns"], ...] = ("accuracy", "lut")
    """What the sampler optimises: `accuracy` up; `lut`, `ff`, `latency_ns` down."""
    trials: Annotated[int, Field(ge=1)] = 20
    """Trials that finish (completed or failed); interrupted ones are run again. Raising it
    and rerunning the sweep into the same directory extends it."""
    sampler: Literal["grid", "random", "tpe", "nsga2"] = "tpe"
    """Optuna sampler: `grid`, `random`, `tpe`, or `nsga2` (several objectives)."""
    seed: int = 1
    """Seed of the sampler."""
    storage: str | None = None
    """Optuna storage URL (any SQLAlchemy URL); default a SQLite file in the output directory."""
    references: tuple[Path, ...] = ()
    """Recipes trained on the same data with the same `fixed` fields, marked on the plot."""
    scaling: ScalingConfig | None = None
    """Fit scaling laws over model size and training jets (needs both fields in `space`)."""
    cluster: ClusterConfig = ClusterConfig()
    """Where trials run (`--cluster` and `--scheduler` override the kind)."""

    @model_validator(mode="after")
    def _searchable(self) -> SweepSpec:
        if not self.space:
            msg = "space is empty: name at least one recipe field to search"
            raise ValueError(msg)
        if len(set(self.objectives)) != len(self.objectives) or not self.objectives:
            msg = "objectives must name each objective once, at least one"
            raise ValueError(msg)
        if self.sampler == "grid":
            for name, dimension in self.space.items():
                try:
                    dimension.grid()
                except ValueError as error:
                    raise ValueError(f"space.{name}: {error}") from None
        if self.scaling:
            for field in (self.scaling.size_field, self.scaling.jets_field):
                if field not in self.space:
                    msg = f"scaling: '{field}' is not in space"
                    raise ValueError(msg)
        return self

    @property
    def directions(self) -> list[str]:
        return [OBJECTIVES[name] for name in self.objectives]


def _check_field(recipe: Recipe, path: str, where: str) -> None:
    """A one-line error when `path` names no field of the recipe schema."""
    node: Any = recipe
    for depth, part in enumerate(path.split(".")):
        fields = type(node).model_fields if hasattr(type(node), "model_fields") else {}
        if part not in fields:
            known = ", ".join(fields) if fields else "nothing below it"
            prefix = ".".join(path.split(".")[:depth]) or "the recipe"
            msg = f"{where}: unknown recipe field '{path}' ({prefix} has {known})"
            raise TriggerError(msg)
        node = getattr(node, part)


def load_sweep(path: str | Path) -> tuple[SweepSpec, Recipe]:
    """Read and check a sweep file; paths in it become relative to the working directory."""
    path = Path(path)
    spec = validated(SweepSpec, read_mapping(path, "sweep file"), str(path))
    here = path.parent.resolve()
    spec = spec.model_copy(
        update={
            "recipe": here / spec.recipe,
            "data": here / spec.data if spec.data else None,
            "references": tuple(here / r for r in spec.references),
        }
    )
    if spec.data and not spec.data.is_file():
        msg = f"{path}: data file not found: {spec.data} (make it with `trigger data generate`)"
        raise TriggerError(msg)
    schema = load_recipe(spec.recipe)
    for field in spec.space:
        _check_field(schema, field, f"{path}: space")
    for field in spec.fixed:
        _check_field(schema, field, f"{path}: fixed")
    base = load_recipe(spec.recipe, fixed_overrides(spec))
    for reference in spec.references:
        load_recipe(reference, fixed_overrides(spec))
    _check_values(spec, path)
    return spec, base


def _check_values(spec: SweepSpec, path: Path) -> None:
    """A one-line error for a value of the space that the recipe schema refuses whatever the
    other fields are (`bits: 0`, say): every trial it reaches would fail."""
    for field, dimension in spec.space.items():
        for value in dimension.extremes():
            tree = recipe_tree(spec.recipe, [*fixed_overrides(spec), *overrides({field: value})])
            objection = field_objection(tree, field)
            if objection:
                msg = f"{path}: space.{field}: the recipe refuses {json.dumps(value)}: {objection}"
                raise TriggerError(msg)


def fixed_overrides(spec: SweepSpec) -> list[str]:
    return [f"{key}={json.dumps(value)}" for key, value in spec.fixed.items()]


def overrides(params: dict[str, Any]) -> list[str]:
    """A trial's parameters as `--set` overrides (values as JSON, which YAML reads back)."""
    return [f"{key}={json.dumps(value)}" for key, value in params.items()]
