"""Recipe schema: typed defaults, YAML loading, command-line overrides, one-line errors.

A recipe file under `models/` holds only what differs from these defaults. Every stage reads
its own section; the resolved recipe is saved next to each artifact so the next stage can
rebuild everything from the artifact alone.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic import (
    Strict as StrictType,
)

from trigger.errors import TriggerError
from trigger.inputs import check_features

CLASS_NAMES = ("g", "q", "W", "Z", "t")

# Integers are strict (`epochs: true` is not 1); floats refuse inf and NaN (Strict below).
Int = Annotated[int, StrictType()]
Bits = Annotated[int, StrictType(), Field(ge=1, le=32)]
IntegerBits = Annotated[int, StrictType(), Field(ge=0, le=32)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
PositiveInt = Annotated[int, StrictType(), Field(gt=0)]
# Epoch counts and widths beyond these are typing mistakes, refused before any work.
Epochs = Annotated[int, StrictType(), Field(gt=0, le=100_000)]
Width = Annotated[int, StrictType(), Field(gt=0, le=65_536)]
Seed = Annotated[int, StrictType(), Field(ge=0, lt=2**31)]
# A recipe's name is a directory name under runs/, firmware/ and validation/.
PLAIN_NAME = r"[A-Za-z0-9_][A-Za-z0-9_.-]*"


class Strict(BaseModel):
    """Unknown keys are errors, so a typo never silently falls back to a default."""

    # The string under each field is its description: `trigger.config.recipe_reference`
    # builds docs/recipes.md from them.
    model_config = ConfigDict(
        extra="forbid", frozen=True, use_attribute_docstrings=True, allow_inf_nan=False
    )


class GenerationConfig(Strict):
    """How `trigger data generate` makes the dataset a recipe trains on when it is absent."""

    jets_per_class: PositiveInt = 2000
    """Jets generated for each of the five classes."""
    seed: Annotated[int, Field(ge=1, le=900_000_000)] = 1
    """Master seed; every shard's Pythia seed derives from it, the class and the shard index."""
    pt_min: float = 800.0
    """Lower edge of the jet pT window [GeV]."""
    pt_max: float = 1200.0
    """Upper edge of the jet pT window [GeV]."""
    eta_max: float = 2.0
    """Largest jet |eta| kept."""
    shard_size: PositiveInt = 1000
    """Jets per shard: the unit of parallelism and of resumption."""
    window: Literal["jet", "parton"] = "jet"
    """What [pt_min, pt_max] bounds: `jet` the jet's pT; `parton` the hard-process parton or
    boson pT (the public hls4ml set: 1 TeV within 1%, i.e. 990 to 1010)."""
    candidate_pt_min: float = Field(default=1.0, ge=0)
    """Detector stage: candidates below this pT [GeV] are dropped."""
    l1_rounding: bool = True
    """Detector stage: round candidates to L1 words (off only to measure what rounding costs:
    the loader still rounds what it reads)."""


class DataConfig(Strict):
    path: str = "data/demo.h5"
    """Jet file in the hls4ml LHC-jet layout; `trigger run` generates it when absent."""
    generation: GenerationConfig = GenerationConfig()
    """How `trigger run` generates `path` when the file is absent."""
    # Weaver-style fixed-size input contract: the firmware sees exactly N x F numbers.
    n_constituents: PositiveInt = 16
    """Candidates per jet the firmware receives (the leading N in pT, zero-padded)."""
    features: tuple[str, ...] = ("pt", "deta", "dphi")
    """Features the firmware's input stage computes per candidate from the L1 words: `pt`,
    `deta`, `dphi` (relative to the jet axis, phi wrapped), `dr2` (deltaR^2), `count` (the
    jet's candidate count), `etarot`, `phirot` (deta, dphi in the jet's principal-axis frame,
    up to 64 candidates)."""
    # Reweight every class to the same (pT, eta) spectrum so a tagger cannot win on kinematics.
    reweight: Literal["none", "pt_eta"] = "pt_eta"
    """`pt_eta`: weight every class to the same (pT, |eta|) spectrum in training."""
    split: tuple[Fraction, Fraction, Fraction] = (0.6, 0.2, 0.2)
    """Train, validation and test fractions."""
    split_seed: Seed = 42
    """Seed of the shuffled split."""
    max_jets: PositiveInt | None = None
    """Read at most this many jets of the file (all when unset)."""
    train_jets: PositiveInt | None = None
    """Train on at most this many jets of the training split (all when unset); validation
    and test stay whole, so runs over training-set sizes are judged on the same jets."""

    @field_validator("features")
    @classmethod
    def _firmware_computes(cls, features: tuple[str, ...]) -> tuple[str, ...]:
        try:
            check_features(features)
        except TriggerError as error:
            raise ValueError(str(error)) from None
        return features

    @model_validator(mode="after")
    def _split_sums_to_one(self) -> DataConfig:
        if abs(sum(self.split) - 1.0) > 1e-6:
            msg = f"data.split must sum to 1, got {list(self.split)}"
            raise ValueError(msg)
        return self


class QuantizerConfig(Strict):
    """Fixed-point format: `bits` in total, `integer` of them left of the point (sign excluded)."""

    bits: Bits = 8
    """Total bits, sign included."""
    integer: IntegerBits = 0
    """Bits left of the binary point, sign excluded (QKeras's `integer`)."""

    @model_validator(mode="after")
    def _integer_fits(self) -> QuantizerConfig:
        if self.integer >= self.bits:
            msg = f"integer ({self.integer}) must be smaller than bits ({self.bits})"
            raise ValueError(msg)
        return self


class LayerQuantization(Strict):
    weight: QuantizerConfig = QuantizerConfig(bits=8, integer=0)
    """Format of the layer's weights."""
    bias: QuantizerConfig = QuantizerConfig(bits=8, integer=0)
    """Format of the layer's biases."""
    activation: QuantizerConfig = QuantizerConfig(bits=8, integer=3)
    """Format of the layer's output after its ReLU."""


class HGQConfig(Strict):
    """High Granularity Quantization (`quantization.method: hgq`): every weight learns its own
    bit width, each layer's activations one shared by all candidates (which keeps the tagger
    permutation invariant), under a resource penalty of strength `beta`."""

    beta: Annotated[float, Field(ge=0.0)] = 1e-5
    """Strength of the resource (bit-operation) penalty at the end of training."""
    beta_start: Annotated[float, Field(gt=0.0)] | None = None
    """Penalty at the start, raised geometrically to `beta` over training (unset: `beta`
    throughout)."""
    init_bits: Annotated[int, Field(ge=1, le=23)] = 8
    """Fractional bits every weight and activation starts from."""


class QuantizationConfig(Strict):
    enabled: bool = True
    """Quantization-aware training; off gives a float student."""
    method: Literal["qkeras", "hgq"] = "qkeras"
    """`qkeras` (one format per layer, set below) or `hgq` (learned per-weight bit widths,
    `hgq` section; `default`, `layers` and `output` do not apply)."""
    hgq: HGQConfig = HGQConfig()
    """HGQ settings (with `method: hgq`)."""
    input: QuantizerConfig = QuantizerConfig(bits=12, integer=3)
    """Format of the firmware's input port (the input quantizer)."""
    default: LayerQuantization = LayerQuantization()
    """Formats of every dense layer without an entry in `layers`."""
    # Per-layer overrides by layer name (e.g. "phi_0", "rho_0", "output").
    layers: dict[str, LayerQuantization] = {}
    """Per-layer formats by layer name (e.g. `phi_0`, `rho_0`, `output_dense`)."""
    output: QuantizerConfig = QuantizerConfig(bits=16, integer=6)
    """Format of the logits (the output quantizer)."""

    def for_layer(self, name: str) -> LayerQuantization:
        return self.layers.get(name, self.default)


class ArchitectureConfig(Strict):
    kind: Literal["deepsets", "context", "mlp", "transformer"] = "deepsets"
    """`deepsets`, `context` (Deep Sets with global-context blocks), `mlp`, or (teachers only)
    `transformer`."""
    # Deep Sets: per-constituent layers (phi), pooling over constituents, then jet layers (rho).
    phi: tuple[Width, ...] = (32, 16)
    """Deep Sets: widths of the per-constituent layers."""
    rho: tuple[Width, ...] = (16,)
    """Deep Sets and transformer: widths of the jet-level layers after pooling."""
    # Context (JEDI-linear style, arXiv:2508.15468): after each of the first `context_blocks`
    # phi layers, the mean over candidates goes through a dense layer and a ReLU and is added
    # back to every candidate, so later phi layers see the whole jet.
    context_blocks: PositiveInt = 1
    """Context: phi layers (the first ones) followed by a global-context block; fewer than the
    phi layers, so the last phi layer feeds the pooling."""
    # Transformer (teachers only): constituents embedded to `embed` features, `blocks`
    # self-attention blocks of `heads` heads (no positional encoding, so permutation
    # invariant after the pooling), then rho as above.
    embed: Width = 64
    """Transformer: width of the constituent embedding."""
    blocks: PositiveInt = 2
    """Transformer: self-attention blocks."""
    heads: PositiveInt = 4
    """Transformer: attention heads per block."""
    # No "sum": hls4ml's Keras 2 path has no global sum pooling and a Lambda is not convertible.
    pooling: Literal["mean", "max"] = "mean"
    """Aggregation over constituents: `mean` or `max`."""
    mask: bool = False
    """Deep Sets: masked pooling. phi has no biases, so a slot without a candidate (every
    feature 0) is exactly 0 after every phi layer and adds nothing to the pooling: the mean is
    the sum over the candidates present divided by N, the max that over the candidates present
    (the same logits for a jet whatever N). The `present` feature (1 for each candidate) stands
    in for the first layer's bias; without masking, empty slots enter the pooling through phi's
    biases and so tell rho the count."""
    activation: Literal["relu"] = "relu"
    """Hidden-layer activation."""
    # MLP baseline (kind: mlp): hidden widths after flattening the N x F constituents.
    dense: tuple[Width, ...] = (64, 32, 32)
    """MLP: widths of the hidden layers after flattening the N x F inputs."""

    @model_validator(mode="after")
    def _has_layers(self) -> ArchitectureConfig:
        if self.kind in ("deepsets", "context") and not self.phi:
            msg = f"a {self.kind} architecture needs at least one phi layer"
            raise ValueError(msg)
        if self.kind == "context" and self.context_blocks >= len(self.phi):
            msg = (
                f"context_blocks ({self.context_blocks}) must be smaller than the number of phi "
                f"layers ({len(self.phi)}): a context block feeds the next phi layer"
            )
            raise ValueError(msg)
        if self.kind == "transformer" and self.embed % self.heads:
            msg = f"embed ({self.embed}) must be a multiple of heads ({self.heads})"
            raise ValueError(msg)
        return self

    def dense_layer_names(self) -> tuple[str, ...]:
        """The student's dense layers, as `quantization.layers` names them."""
        if self.kind == "mlp":
            hidden = [f"dense_{i}" for i in range(len(self.dense))]
        else:
            hidden = [f"phi_{i}" for i in range(len(self.phi))]
            if self.kind == "context":
                hidden += [f"context_{b}" for b in range(self.context_blocks)]
            hidden += [f"rho_{j}" for j in range(len(self.rho))]
        return (*hidden, "output_dense")


class PruningConfig(Strict):
    enabled: bool = True
    """Pruning of the hidden dense kernels, each layer to `target_sparsity`."""
    method: Literal["magnitude", "lottery"] = "magnitude"
    """`magnitude`: one training, the sparsity ramped up during it (tfmot). `lottery`:
    iterative magnitude pruning with rewinding (arXiv:1912.05671): train, prune the smallest
    surviving weights, reset the survivors to their values after `rewind_epoch` epochs, train
    again; `rounds` times, each round pruning the same fraction of the survivors."""
    target_sparsity: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.5
    """Fraction of each layer's weights set to zero in the end."""
    structure: Literal["weights", "neurons"] = "weights"
    """`weights`: single weights set to zero. `neurons` (with `lottery`; Deep Sets and MLP):
    whole neurons of each hidden layer, `target_sparsity` of them, by the norm of their
    incoming weights; the student is then the narrower network, so the firmware loses their
    activations and the next layer's inputs too."""
    target_nonzero: Annotated[int, StrictType(), Field(gt=0)] | None = None
    """Instead of `target_sparsity`: the nonzero weights the pruned kernels keep in all, every
    layer pruned to the same sparsity ("train large, then prune": a wide network pruned to the
    weight count of a small one)."""
    rounds: Annotated[int, StrictType(), Field(gt=0, le=50)] = 3
    """`lottery`: pruning rounds; each prunes 1 - (1 - target_sparsity)^(1/rounds) of the
    weights that survived the round before."""
    rewind_epoch: Annotated[int, StrictType(), Field(ge=0)] = 1
    """`lottery`: survivors restart from their values after this many epochs of the first,
    dense training (0: from initialisation); every round retrains from that epoch on."""
    # Fractions of the total training steps: ramp the sparsity polynomially between them.
    begin: Fraction = 0.1
    """`magnitude`: start of the sparsity ramp, as a fraction of all training steps."""
    end: Fraction = 0.7
    """`magnitude`: end of the sparsity ramp, as a fraction of all training steps."""
    frequency: PositiveInt = 50
    """`magnitude`: steps between mask updates."""


class TeacherConfig(Strict):
    # Attention sees constituent pairs, which no Deep Sets can: on 100k generator-level jets
    # this teacher was 3 points more accurate than a wide float Deep Sets (phi 128x3,
    # rho [128, 64]), which a 3k-parameter student already matched, so that one would not set
    # the ceiling.
    architecture: ArchitectureConfig = ArchitectureConfig(kind="transformer", rho=(128, 64))
    """The teacher's network (float; a transformer by default)."""
    n_constituents: PositiveInt = 32
    """Constituents the teacher sees."""
    epochs: Epochs = 30
    """Most epochs of teacher training (early stopping may end it sooner)."""
    learning_rate: float = Field(default=1e-3, gt=0)
    """Initial learning rate (cosine decay)."""
    # The teacher has its own batch, patience and seed so that a cached teacher depends on
    # nothing but the data and this section.
    batch_size: Width = 256
    """Teacher batch size."""
    patience: PositiveInt = 5
    """Epochs without validation improvement before the teacher stops."""
    seed: Seed = 7
    """Seed of the teacher's initialisation and shuffling."""


class DistillationConfig(Strict):
    enabled: bool = True
    """Distil the student from the teacher's logits."""
    teacher: TeacherConfig = TeacherConfig()
    """The teacher, cached per data file and this section."""
    # T = 1, not Hinton's 4: on 100k generator-level jets T = 4 cost the default student 0.12
    # points against label-only training (four seeds), T = 1 gained 0.21 (standard error 0.07,
    # nineteen seeds): a 5-class tagger at about 62% accuracy is unsure already, and softening
    # it further only flattens what the student is asked to match.
    temperature: float = Field(default=1.0, gt=0)
    """Softmax temperature T of the soft targets."""
    # Weight of the soft (teacher) loss; the hard-label loss gets 1 - alpha.
    alpha: Fraction = 0.7
    """Weight of the soft (teacher) loss; the hard-label loss gets 1 - alpha."""
    # Empty by default: the teacher's logits on the fixed jets, computed once, until
    # scripts/bench_distill.py on a full data file measures what the reflections buy. Why these
    # two symmetries and no rotation or candidate dropout: docs/design.md.
    augment: tuple[Literal["reflect_eta", "reflect_phi"], ...] = ()
    """Symmetries drawn per training jet and epoch (each with probability 1/2), applied to
    the L1 words (eta or phi words of candidates and jet negated) before the input stage;
    teacher and student see the same mirrored jet in the same step (the teacher's logits on
    each training jet's mirror images are computed once: up to 4 teacher passes)."""
    epochs: Epochs | None = None
    """Most epochs of the distilled student (`training.epochs` when unset; a student matching
    a teacher can improve for many more epochs than one fitting labels, arXiv:2106.05237)."""
    patience: PositiveInt | None = None
    """Epochs without improvement of the validation loss (labels + KL to the teacher) before
    the distilled student stops (`training.patience` when unset)."""
    extra_data: str | None = None
    """A file of extra jets (hls4ml layout; its labels unused) the distilled student learns
    from the teacher's logits alone: their label loss is zero. Never the training data file,
    whose validation and test jets would leak into training; the run records it by content."""

    @field_validator("augment")
    @classmethod
    def _each_once(cls, augment: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(augment)) != len(augment):
            msg = f"distillation.augment names a symmetry twice: {list(augment)}"
            raise ValueError(msg)
        return augment


class TrainingConfig(Strict):
    epochs: Epochs = 30
    """Most epochs of float-reference and student training."""
    batch_size: Width = 256
    """Batch size."""
    optimizer: Literal["adam", "sgd"] = "adam"
    """`adam` or `sgd` (momentum 0.9)."""
    learning_rate: float = Field(default=2e-3, gt=0)
    """Initial learning rate."""
    schedule: Literal["constant", "cosine"] = "cosine"
    """`cosine` decay to zero over all steps, or `constant`."""
    patience: PositiveInt = 8
    """Epochs without validation improvement before training stops."""
    seed: Seed = 7
    """Seed of initialisation and shuffling."""
    # Start the student from the trained float reference's weights, so QAT, pruning and
    # distillation fine-tune a network that already works instead of a random one.
    init_from_float: bool = False
    """Start the student from the trained float reference's weights."""


class FirmwareConfig(Strict):
    """`trigger emit-hls`. Fixed-point types are not set here: they follow the quantizers."""

    # HLS tool flow: Vivado -> vivado_hls, Vitis -> vitis-run (only needed for --synth).
    backend: Literal["Vivado", "Vitis"] = "Vivado"
    """hls4ml backend: `Vivado` (vivado_hls) or `Vitis` (vitis-run)."""
    part: str = "xcvu13p-flga2577-2-e"
    """FPGA part."""
    clock_period: float = Field(default=5.0, gt=0)  # ns
    """Clock period [ns]."""
    io_type: Literal["io_parallel", "io_stream"] = "io_parallel"
    """hls4ml I/O type."""
    strategy: Literal["Latency", "Resource", "distributed_arithmetic"] = "Latency"
    """hls4ml strategy."""
    reuse_factor: PositiveInt = 1
    """hls4ml reuse factor of every dense layer."""
    # Test jets on which emit-hls compares the C++ emulator with the QKeras student.
    emulation_jets: PositiveInt = 5000
    """Test jets on which emit-hls compares the C++ emulator with the student."""
    yosys: Literal["flat", "per_stage"] = "flat"
    """How `--rtl` counts resources with Yosys: `flat` (one netlist) or `per_stage` (each
    pipeline stage mapped alone, then the registers around them; for designs too large to
    flatten in memory)."""


class GatesConfig(Strict):
    max_accuracy_drop: float | None = 0.03
    """Largest allowed accuracy of float minus firmware (unset: no gate); undecided while its
    standard error cannot tell it from the limit at `validation.confidence`."""
    max_observable_distance: float | None = 0.1
    """Largest allowed significant KS distance of selected-jet observables; undecided while a
    selection is too small for a distance at the limit to be significant."""
    min_bit_exact_fraction: float | None = 1.0
    """Smallest allowed fraction of test jets where firmware equals QKeras bit for bit."""
    max_latency_ns: float | None = None
    """Largest allowed firmware latency [ns]."""
    max_lut: Int | None = None
    """Largest allowed LUT count."""
    max_dsp: Int | None = None
    """Largest allowed DSP count."""
    max_shift_degradation: float | None = None
    """Largest allowed accuracy the firmware loses under a distribution shift beyond what the
    float reference loses (`trigger validate --shifted`; the worst variation counts)."""


class ValidationConfig(Strict):
    signal_efficiencies: tuple[Fraction, ...] = (0.5, 0.8)
    """Signal efficiencies at which background rejection is reported."""
    working_point_efficiency: Fraction = 0.5
    """Signal efficiency of the working point whose selected jets are compared."""
    gates: GatesConfig = GatesConfig()
    """Limits that make `trigger validate` exit 1."""
    data: str | None = None
    """Evaluation file: every jet of it is evaluated in place of the run's test split
    (`trigger validate --data`). It must hold other jets than the training data: generate
    it with another seed."""
    confidence: Annotated[float, Field(gt=0.5, lt=1.0)] = 0.99
    """Confidence at which a gate decides: a gate whose figure cannot be told from its limit
    at this confidence with the jets evaluated is undecided."""
    allow_undecided: bool = False
    """Let `trigger validate` exit 0 when a gate is undecided for lack of jets (it is still
    reported as undecided, never as passed)."""


class Recipe(Strict):
    name: str = "default"
    """Names runs/NAME, firmware/NAME, validation/NAME (default: the recipe's file name)."""
    description: str = ""
    """Free text."""
    data: DataConfig = DataConfig()
    """Dataset, input contract and splits."""
    architecture: ArchitectureConfig = ArchitectureConfig()
    """The student's (and float reference's) network."""
    quantization: QuantizationConfig = QuantizationConfig()
    """QKeras formats of the student."""
    pruning: PruningConfig = PruningConfig()
    """Pruning of the student: magnitude (one training) or lottery rounds with rewinding."""
    distillation: DistillationConfig = DistillationConfig()
    """Knowledge distillation from a float teacher."""
    training: TrainingConfig = TrainingConfig()
    """Training of the float reference and the student."""
    firmware: FirmwareConfig = FirmwareConfig()
    """hls4ml project settings for `trigger emit-hls`."""
    validation: ValidationConfig = ValidationConfig()
    """What `trigger validate` reports and the gates it applies."""

    @field_validator("name")
    @classmethod
    def _name_is_plain(cls, name: str) -> str:
        if not re.fullmatch(PLAIN_NAME, name):
            msg = (
                "must be a plain directory name (letters, digits, '_', '.', '-'; not starting "
                "with '.'), since it names runs/NAME, firmware/NAME and validation/NAME"
            )
            raise ValueError(msg)
        return name

    @field_validator("architecture")
    @classmethod
    def _student_is_convertible(cls, architecture: ArchitectureConfig) -> ArchitectureConfig:
        if architecture.kind == "transformer":
            msg = "kind 'transformer' is for teachers only: hls4ml cannot convert attention"
            raise ValueError(msg)
        return architecture

    @model_validator(mode="after")
    def _hgq_prunes_by_itself(self) -> Recipe:
        if self.quantization.method == "hgq" and self.pruning.enabled:
            msg = (
                "quantization.method hgq prunes by learning zero-bit weights: set "
                "pruning.enabled: false"
            )
            raise ValueError(msg)
        if self.quantization.method == "hgq" and not self.quantization.enabled:
            msg = "quantization.method hgq needs quantization.enabled: true"
            raise ValueError(msg)
        return self

    @model_validator(mode="after")
    def _lottery_rewinds_within_training(self) -> Recipe:
        p, epochs = self.pruning, self.student_epochs()
        if p.enabled and p.method == "lottery" and p.rewind_epoch >= epochs:
            msg = (
                f"pruning.rewind_epoch {p.rewind_epoch} is not before the end of the student's "
                f"training ({epochs} epochs): rewind to an earlier epoch"
            )
            raise ValueError(msg)
        return self

    @model_validator(mode="after")
    def _masked_pooling_is_possible(self) -> Recipe:
        if not self.architecture.mask:
            return self
        if self.architecture.kind != "deepsets":
            reason = {
                "context": "a context block adds the jet's context onto empty slots too",
                "mlp": "an MLP has no pooling",
            }.get(self.architecture.kind, "only Deep Sets students pool with a mask")
            msg = f"architecture.mask needs kind deepsets: {reason}"
            raise ValueError(msg)
        if "present" not in self.data.features:
            msg = (
                "architecture.mask needs the 'present' feature in data.features: phi has no "
                "biases, and present is what tells a candidate from an empty slot"
            )
            raise ValueError(msg)
        if self.quantization.enabled and self.quantization.method == "hgq":
            msg = "architecture.mask is built for QKeras students: use quantization.method qkeras"
            raise ValueError(msg)
        return self

    @model_validator(mode="after")
    def _neurons_are_pruned_in_rounds(self) -> Recipe:
        p = self.pruning
        if not p.enabled or p.structure != "neurons":
            return self
        if p.method != "lottery":
            msg = "pruning.structure neurons prunes in lottery rounds: set pruning.method: lottery"
            raise ValueError(msg)
        if p.target_nonzero is not None:
            msg = "pruning.target_nonzero counts weights: use target_sparsity with neurons"
            raise ValueError(msg)
        if self.architecture.kind == "context":
            msg = (
                "pruning.structure neurons cannot narrow a context tagger (its context layers "
                "must keep phi's widths): prune weights"
            )
            raise ValueError(msg)
        return self

    @model_validator(mode="after")
    def _quantized_layers_exist(self) -> Recipe:
        names = self.architecture.dense_layer_names()
        unknown = [name for name in self.quantization.layers if name not in names]
        if unknown:
            msg = (
                f"quantization.layers names '{unknown[0]}', which this architecture does not "
                f"have (its dense layers: {', '.join(names)})"
            )
            raise ValueError(msg)
        return self

    @model_validator(mode="after")
    def _firmware_can_pool(self) -> Recipe:
        # hls4ml's mean pooling divides in ap_fixed: exact only as a shift (trigger.hls.precision).
        n, a = self.data.n_constituents, self.architecture
        if a.kind == "deepsets" and a.pooling == "mean" and n & (n - 1):
            msg = (
                f"mean pooling over {n} constituents: firmware divides exactly only by a power "
                "of two (set data.n_constituents to 8, 16, 32, ... or use max pooling)"
            )
            raise ValueError(msg)
        if a.kind == "context" and n & (n - 1):
            msg = (
                f"a context block averages over {n} constituents: firmware divides exactly only "
                "by a power of two (set data.n_constituents to 8, 16, 32, ...)"
            )
            raise ValueError(msg)
        return self

    def student_epochs(self) -> int:
        """Most epochs of the compressed student: `distillation.epochs` when it distils and
        sets them, else `training.epochs`."""
        d = self.distillation
        return (d.enabled and d.epochs) or self.training.epochs

    def digest(self, *sections: str) -> str:
        """A short hash of the named sections, to tell whether an artifact is up to date."""
        dump = self.model_dump(mode="json")
        return digest({s: dump[s] for s in sections} if sections else dump)


def digest(payload: Any) -> str:
    """A short hash of JSON-able settings: what artifacts record as the settings they used."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _format_validation_error(source: str, error: ValidationError) -> str:
    first = error.errors()[0]
    field = ".".join(str(part) for part in first["loc"])
    if first["type"] == "extra_forbidden":
        return f"{source}: unknown key '{field}'"
    got = first.get("input")
    shown = "" if isinstance(got, dict) else f" (got {got!r})"
    message = first["msg"].removeprefix("Value error, ")
    where = f"{field}: " if first["loc"] else ""
    return f"{source}: {where}{message}{shown}"


class _UniqueKeyLoader(yaml.SafeLoader):
    """Safe YAML (no tags that construct objects) where a key given twice is an error, not
    silently the last value."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                msg = f"key '{key}' is given twice (line {key_node.start_mark.line + 1})"
                raise yaml.constructor.ConstructorError(None, None, msg, key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str, source: str) -> Any:
    """`text` as safe YAML; a one-line error naming `source` when it is not."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader: no tag constructs objects
    except yaml.YAMLError as error:
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        mark = getattr(error, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark is not None and "line" not in problem else ""
        msg = f"{source}: not valid YAML ({problem}{where})"
        raise TriggerError(msg) from None


def _parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        msg = f"--set expects KEY=VALUE, got '{text}'"
        raise TriggerError(msg)
    key, raw = text.split("=", 1)
    return key.strip().split("."), parse_yaml(raw, f"--set {text}")


def _apply_override(tree: dict[str, Any], path: list[str], value: Any) -> None:
    node = tree
    for part in path[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            msg = f"--set {'.'.join(path)}: '{part}' is not a section"
            raise TriggerError(msg)
        node = child
    node[path[-1]] = value


def _merged(defaults: dict[str, Any], tree: dict[str, Any]) -> dict[str, Any]:
    """`tree` laid over `defaults`, section by section."""
    out = dict(defaults)
    for key, value in tree.items():
        below = out.get(key)
        out[key] = (
            _merged(below, value) if isinstance(below, dict) and isinstance(value, dict) else value
        )
    return out


ModelT = TypeVar("ModelT", bound=BaseModel)


def validated(model: type[ModelT], tree: Any, source: str) -> ModelT:
    """`tree` as a `model`, or a one-line TriggerError naming `source` and the field."""
    try:
        return model.model_validate(tree)
    except ValidationError as error:
        raise TriggerError(_format_validation_error(source, error)) from None


def recipe_from_dict(tree: dict[str, Any], source: str = "recipe") -> Recipe:
    """Validate a recipe tree laid over the full default recipe.

    Laying it over the defaults (not letting pydantic fill gaps per class) keeps a section's
    own defaults when a recipe sets part of it: `distillation.teacher.architecture.embed: 32`
    leaves the teacher a transformer with rho [128, 64], not a Deep Sets with the student's rho.
    """
    try:
        return Recipe.model_validate(_merged(Recipe().model_dump(mode="json"), tree))
    except ValidationError as error:
        raise TriggerError(_format_validation_error(source, error)) from None


def field_objection(tree: dict[str, Any], field: str) -> str | None:
    """What the schema says against the value of `field` (a `--set` path) in the recipe `tree`,
    or None: an objection to a combination of sections (mean pooling over 12 candidates, say)
    is not one against the field."""
    try:
        Recipe.model_validate(_merged(Recipe().model_dump(mode="json"), tree))
    except ValidationError as error:
        parts = tuple(field.split("."))
        for item in error.errors():
            loc = tuple(str(part) for part in item["loc"])
            if loc[: len(parts)] == parts:
                message = item["msg"].removeprefix("Value error, ")
                return f"{'.'.join(loc)}: {message} (got {item.get('input')!r})"
    return None


def read_mapping(path: Path, what: str, shape: str = "a mapping") -> dict[str, Any]:
    """A YAML file's top-level mapping; a one-line error when the file is missing, is not
    YAML, or holds something else (`what` names the file's role, `shape` what it must be)."""
    if not path.is_file():
        msg = f"{what} not found: {path}"
        raise TriggerError(msg)
    tree = parse_yaml(path.read_text(), str(path)) or {}
    if not isinstance(tree, dict):
        msg = f"{path}: a {what} must be {shape}"
        raise TriggerError(msg)
    return tree


def recipe_tree(path: str | Path, overrides: tuple[str, ...] | list[str] = ()) -> dict[str, Any]:
    """A recipe file's own settings with `--set a.b=value` overrides laid over them
    (no defaults filled in, not validated)."""
    path = Path(path)
    tree = read_mapping(path, "recipe", "a mapping of sections")
    tree.setdefault("name", path.stem)
    for text in overrides:
        _apply_override(tree, *_parse_override(text))
    return tree


def load_recipe(path: str | Path, overrides: tuple[str, ...] | list[str] = ()) -> Recipe:
    """Read a YAML recipe, apply `--set a.b=value` overrides, validate once."""
    return recipe_from_dict(recipe_tree(path, overrides), source=str(path))


SectionT = TypeVar("SectionT", bound=BaseModel)


def override_section(
    config: SectionT, section: str, overrides: tuple[str, ...] | list[str]
) -> SectionT:
    """One recipe section (`firmware`, `validation`) with `--set SECTION.KEY=VALUE` overrides
    applied, for commands that read only that section; any other key is a one-line error."""
    tree: dict[str, Any] = {section: config.model_dump(mode="json")}
    for text in overrides:
        path, value = _parse_override(text)
        if path[0] != section or len(path) < 2:
            msg = f"--set {'.'.join(path)}: this command reads only {section}.* settings"
            raise TriggerError(msg)
        _apply_override(tree, path, value)
    try:
        return type(config).model_validate(tree[section])
    except ValidationError as error:
        raise TriggerError(_format_validation_error(f"--set {section}", error)) from None


def save_recipe(recipe: Recipe, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False))


def _type_text(annotation: Any, metadata: list[Any]) -> str:
    """A field's type as a reader of a recipe needs it: `int >= 1`, `list of int`, ..."""
    import types
    import typing

    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Literal:
        text = " or ".join(f"`{a}`" for a in args)
    elif origin in (typing.Union, types.UnionType):
        text = " or ".join(_type_text(a, []) for a in args if a is not type(None)) + " or null"
    elif origin is tuple:
        inner = _type_text(args[0], [])
        text = f"list of {inner}" if args[-1] is Ellipsis else f"list of {len(args)} {inner}"
    elif origin is dict:
        text = f"map of name to {_type_text(args[1], [])}"
    elif origin is typing.Annotated:
        return _type_text(args[0], list(args[1:]))
    else:
        text = getattr(annotation, "__name__", str(annotation))
    bounds = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
    for item in metadata:
        for attr in getattr(item, "metadata", [item]):
            for key, sign in bounds.items():
                if getattr(attr, key, None) is not None:
                    text += f", {sign} {getattr(attr, key)}"
    return text


def _section_rows(model: type[BaseModel], values: dict[str, Any], prefix: str, out: list) -> None:
    rows, nested = [], []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        meaning = " ".join((field.description or "").split()).replace("|", "\\|")  # a table cell
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            nested.append((field.annotation, values[name], f"{key}."))
            rows.append(f"| `{key}` | section | see below | {meaning} |")
            continue
        default = json.dumps(values[name])
        kind = _type_text(field.annotation, field.metadata)
        rows.append(f"| `{key}` | {kind} | `{default}` | {meaning} |")
    title = f"`{prefix.rstrip('.')}`" if prefix else "Top level"
    out += [f"## {title}", "", inspect.cleandoc(model.__doc__) if model.__doc__ else "", ""]
    out += ["| key | type | default | meaning |", "|---|---|---|---|", *rows, ""]
    for sub, sub_values, sub_prefix in nested:
        _section_rows(sub, sub_values, sub_prefix, out)


def recipe_reference() -> str:
    """docs/recipes.md: every recipe key with its type, default and meaning, from this schema."""
    out = [
        "# Recipe reference",
        "",
        "Every key a recipe under `models/` may set, with its type, its default and what it",
        "means. A recipe holds only what differs from these defaults; `--set a.b=value` overrides",
        "any key from the command line, and `trigger recipe show RECIPE` prints a recipe with",
        "every default filled in. This page is generated from `trigger/config.py` by",
        "`trigger recipe reference > docs/recipes.md`; a test fails when it is out of date.",
        "",
    ]
    _section_rows(Recipe, Recipe().model_dump(mode="json"), "", out)
    return "\n".join(line for i, line in enumerate(out) if line or out[i - 1]) + "\n"
