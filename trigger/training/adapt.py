"""`trigger adapt`: a deployed run fine-tuned to new conditions, its firmware's footprint frozen.

The adapted student keeps everything the firmware's size depends on: the architecture, every
quantizer, the input stage (fitted on the original data, applied unchanged to the new) and the
zero pattern of every kernel and bias. Pruned and quantized-away weights stay exactly zero
(zeroed after each step); a surviving weight that the fine-tuning would round to zero is set to
one step of its quantizer, with its sign. The new firmware therefore differs from the deployed
one only in its constants.

Forgetting the original conditions is held off in two ways, each a setting:

    rehearsal  nominal jets (the run's own training and validation splits) mixed into the new
               ones, this many per new jet
    anchor     an L2 penalty on each weight's distance from its deployed value (L2-SP,
               arXiv:1802.01483), this strong, summed over the weights

The float reference is fine-tuned the same way (without the frozen zeros), so that `validate`
compares the adapted firmware with its own float twin. The teacher is kept as it was.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from trigger import taggers
from trigger.artifacts import (
    TRAIN,
    check_output,
    current,
    data_identity,
    open_artifact,
    stage_output,
)
from trigger.artifacts import training_data as run_training_data
from trigger.config import FirmwareConfig, load_recipe, save_recipe
from trigger.data.loader import JetSample, load_dataset
from trigger.errors import TriggerError
from trigger.inputs import InputStage
from trigger.io import Log, require_file, write_json
from trigger.training.fit import FitSettings, arrays, evaluate, fit, save_h5, seed_everything
from trigger.training.student import student_metrics

if TYPE_CHECKING:
    import tensorflow as tf

ADAPTED_FILES = ("student.h5", "float.h5", "teacher.h5", "teacher_input_stage.json")


@dataclass(frozen=True)
class AdaptSettings:
    epochs: int = 20
    learning_rate: float = 1e-3
    """Adam, cosine decay: a fraction of the original training's rate, for a fine-tuning."""
    rehearsal: float = 1.0
    """Nominal jets mixed in per new jet (0: none)."""
    anchor: float = 0.0
    """Strength of the L2 pull towards the deployed weights (0: none)."""
    patience: int = 5
    batch_size: int = 256
    seed: int = 7

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.patience < 1 or self.batch_size < 1:
            raise TriggerError("--epochs, --patience and --batch-size must be at least 1")
        if not self.learning_rate > 0:
            raise TriggerError("--learning-rate must be positive")
        if self.rehearsal < 0 or self.anchor < 0:
            raise TriggerError("--rehearsal and --anchor must not be negative")


def _mixed(new: JetSample, nominal: JetSample, per_jet: float, rng) -> JetSample:
    """`new` with `per_jet` nominal jets for each of its jets (as many as there are)."""
    count = min(len(nominal), round(per_jet * len(new)))
    if count == 0:
        return new
    chosen = nominal.take(np.sort(rng.choice(len(nominal), count, replace=False)))
    both = [new, chosen]
    return JetSample(
        *(np.concatenate([getattr(s, k) for s in both]) for k in ("candidates", "jet", "y")),
        np.concatenate([s.weight for s in both]),
        {k: np.concatenate([s.observables[k] for s in both]) for k in new.observables},
        np.concatenate([s.x for s in both]),
    )


def frozen_pattern(model: tf.keras.Model) -> dict[str, list[np.ndarray]]:
    """1 where a Dense kernel or bias weight is nonzero, per layer: the firmware's multipliers
    and adders."""
    return {
        layer.name: [(w != 0).astype(np.float32) for w in layer.get_weights()]
        for layer in taggers.dense_layers(model)
    }


def _zero_keeper(model: tf.keras.Model, pattern: dict[str, list[np.ndarray]]):
    import tensorflow as tf

    layers = [layer for layer in taggers.dense_layers(model) if layer.name in pattern]

    class KeepZeros(tf.keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            for layer in layers:
                for weight, mask in zip(layer.weights, pattern[layer.name], strict=True):
                    weight.assign(weight * mask)

    return KeepZeros()


def _step(quantizer: Any) -> float | None:
    """The smallest nonzero magnitude of a QKeras `quantized_bits` quantizer."""
    if quantizer is None or not hasattr(quantizer, "integer"):
        return None
    fraction = quantizer.bits - quantizer.integer - (1 if quantizer.keep_negative else 0)
    return float(2.0**-fraction)


def project_onto(model: tf.keras.Model, pattern: dict[str, list[np.ndarray]]) -> None:
    """Quantize every weight, then give a survivor that rounded to zero one step of its
    quantizer with its sign: the zero pattern is `pattern` exactly."""
    layers = taggers.dense_layers(model)
    raw = {layer.name: layer.get_weights() for layer in layers}
    taggers.quantize_weights_in_place(model)
    for layer in layers:
        quantizers = (
            getattr(layer, "kernel_quantizer_internal", None),
            getattr(layer, "bias_quantizer_internal", None),
        )
        values = []
        for weight, before, mask, quantizer in zip(
            layer.get_weights(), raw[layer.name], pattern[layer.name], quantizers, strict=False
        ):
            step = _step(quantizer)
            lost = (mask > 0) & (weight == 0)
            if step is not None and lost.any():
                weight = np.where(lost, np.copysign(step, before), weight)
            values.append(np.asarray(weight, np.float32))
        layer.set_weights(values)


def firmware_types(model: tf.keras.Model, firmware: FirmwareConfig) -> dict[str, dict[str, str]]:
    """Every layer's fixed-point types as emit-hls derives them (accumulators from the weights)."""
    from trigger.hls.convert import plan_student

    plan = plan_student(model, firmware)
    return {lp.name: {k: v.hls() for k, v in lp.precision.items()} for lp in plan.layers}


def hold_firmware_types(
    model: tf.keras.Model,
    deployed: tf.keras.Model,
    pattern: dict[str, list[np.ndarray]],
    firmware: FirmwareConfig,
) -> list[str]:
    """Pull each layer whose fine-tuned weights would widen an accumulator back towards its
    deployed weights (halving the change, down to none) until every type is the deployed one;
    the layers pulled back, by name."""
    target = firmware_types(deployed, firmware)
    pulled = []
    for layer, old in zip(taggers.dense_layers(model), taggers.dense_layers(deployed), strict=True):
        tuned = layer.get_weights()
        for share in (1.0, 0.5, 0.25, 0.125, 0.0625, 0.0):
            if share < 1:
                layer.set_weights([o + share * (t - o) for o, t in
                                   zip(old.get_weights(), tuned, strict=True)])  # fmt: skip
                project_onto(model, pattern)
            if firmware_types(model, firmware)[layer.name] == target[layer.name]:
                break
        if share < 1:
            pulled.append(layer.name)
    return pulled


def _anchor_loss(model: tf.keras.Model, strength: float) -> None:
    """Add strength * sum (w - w_deployed)^2 over the Dense weights to the model's loss."""
    import tensorflow as tf

    deployed = [(w, tf.constant(w.numpy())) for layer in taggers.dense_layers(model)
                for w in layer.weights]  # fmt: skip
    model.add_loss(lambda: strength * tf.add_n([tf.reduce_sum(tf.square(w - w0))
                                                for w, w0 in deployed]))  # fmt: skip


def fine_tune(
    model: tf.keras.Model,
    train: JetSample,
    validation: JetSample,
    settings: AdaptSettings,
    pattern: dict[str, list[np.ndarray]] | None,
    verbose: int,
) -> dict[str, list[float]]:
    """Fit `model` further on labelled jets; with `pattern`, its zeros frozen and its weights
    back on their quantizers' grids."""
    seed_everything(settings.seed)
    if settings.anchor > 0:
        _anchor_loss(model, settings.anchor)
    fitting = FitSettings(
        epochs=settings.epochs,
        batch_size=settings.batch_size,
        learning_rate=settings.learning_rate,
        patience=settings.patience,
        seed=settings.seed,
        verbose=verbose,
    )
    callbacks = [_zero_keeper(model, pattern)] if pattern else []
    history = fit(model, arrays(train), arrays(validation), fitting, callbacks=callbacks)
    if pattern:
        project_onto(model, pattern)
    return history


def _datasets(run_dir: Path, data_path: Path, reference_data: Path | None):
    """The new file's splits and the run's own, both through the run's input stage."""
    run = open_artifact(run_dir, TRAIN)
    recipe = load_recipe(run_dir / "recipe.yaml")
    if recipe.quantization.enabled and recipe.quantization.method != "qkeras":
        msg = f"{run_dir}: adapt fine-tunes QKeras students, not {recipe.quantization.method}"
        raise TriggerError(msg)
    nominal_path = run_training_data(run, recipe.data.path, reference_data)
    if data_identity(data_path) == run.sources["data"]:
        msg = f"{data_path} is the data {run_dir} was trained on: adapt to a new sample"
        raise TriggerError(msg)
    stage = InputStage.load(run_dir / "input_stage.json")
    port = recipe.quantization.input
    new = load_dataset(recipe.data, port, data_path, stage)
    nominal = load_dataset(recipe.data, port, nominal_path, stage)
    return run, recipe, nominal_path, new, nominal


def adapt(
    run_dir: str | Path,
    data_path: str | Path,
    out_dir: str | Path,
    settings: AdaptSettings | None = None,
    *,
    reference_data: str | Path | None = None,
    replace: bool = False,
    verbose: int = 2,
    log: Log = print,
) -> Path:
    """Fine-tune RUN's float reference and student on `data_path` into a new run directory
    that `emit-hls` and `validate` take like any other."""
    settings = settings or AdaptSettings()
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    data_path = require_file(data_path)
    run, recipe, nominal_path, new, nominal = _datasets(
        run_dir, data_path, Path(reference_data) if reference_data else None
    )
    inputs = [run_dir, data_path, nominal_path]
    sources = {
        "data": data_identity(data_path),
        "adapted_from": run.identity,
        "nominal_data": data_identity(nominal_path),
        "settings": json.dumps(asdict(settings), sort_keys=True),
    }
    if current(out_dir, TRAIN, sources):
        log(f"{out_dir} is up to date")
        return out_dir
    check_output(out_dir, TRAIN, inputs, replace)
    rng = np.random.default_rng(settings.seed)
    train = _mixed(new.train, nominal.train, settings.rehearsal, rng)
    validation = _mixed(new.validation, nominal.validation, settings.rehearsal, rng)
    with stage_output(out_dir, TRAIN, sources, inputs=inputs, replace=replace) as tmp:
        metrics: dict[str, Any] = {
            "train_jets": len(train),
            "test_jets": len(new.test),
            "adapted_from": str(run_dir),
        }
        deployed = taggers.load_model(run_dir / "student.h5")
        metrics["deployed"] = evaluate(deployed, new.test)
        metrics["deployed"]["nominal_test"] = evaluate(deployed, nominal.test)
        histories = {}
        for name in ("float", "student"):
            log(f"fine-tuning the {name} model ({settings.epochs} epochs max)")
            model = taggers.load_model(run_dir / f"{name}.h5")
            pattern = frozen_pattern(model) if name == "student" else None
            histories[name] = fine_tune(model, train, validation, settings, pattern, verbose)
            if pattern:
                metrics["pulled_back"] = hold_firmware_types(
                    model, deployed, pattern, recipe.firmware
                )
            save_h5(model, tmp / f"{name}.h5")
            measure = student_metrics if name == "student" else evaluate
            metrics[name] = measure(model, new.test)
            metrics[name]["nominal_test"] = evaluate(model, nominal.test)
        for name in ("teacher.h5", "teacher_input_stage.json"):
            if (run_dir / name).is_file():
                shutil.copyfile(run_dir / name, tmp / name)
        teacher = run_dir / "teacher.h5"
        if teacher.is_file():
            view = load_dataset(
                recipe.data.model_copy(
                    update={"n_constituents": recipe.distillation.teacher.n_constituents}
                ),
                recipe.quantization.input,
                data_path,
                InputStage.load(run_dir / "teacher_input_stage.json"),
            )
            metrics["teacher"] = evaluate(taggers.load_model(teacher), view.test)
        else:
            metrics["teacher"] = None
        adapted = recipe.model_copy(
            update={"data": recipe.data.model_copy(update={"path": str(data_path)})}
        )
        save_recipe(adapted, tmp / "recipe.yaml")
        shutil.copyfile(run_dir / "input_stage.json", tmp / "input_stage.json")
        write_json(tmp / "history.json", histories)
        write_json(tmp / "metrics.json", metrics)
        write_json(tmp / "adapted.json", {"from": str(run_dir), "nominal_data": str(nominal_path),
                                         "settings": asdict(settings)})  # fmt: skip
    return out_dir
