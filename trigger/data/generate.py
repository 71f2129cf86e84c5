"""Jets from Pythia 8, clustered anti-kT R=0.8, truth-matched, seen as a Level-1 system sees
them, in the hls4ml LHC-jet layout.

The detector/candidate stage (`detector`) turns each jet's particles into L1 candidates: a
per-candidate pT threshold, then pT, eta and phi rounded to the L1 words of `trigger.inputs`
(saturating at the word range). Every stored column, and the jet's observables and
multiplicity, are computed from these candidates.

A variation (`VARIATIONS`) is a named shift of the generator or detector away from these
settings, for samples that test a trained tagger under a distribution shift.

Work is cut into shards (one class, a fixed number of jets, its own seed). Each shard runs in
its own process with its own Pythia and lands on disk atomically, so an interrupted run keeps
its finished shards and a rerun picks up the rest; the merged file depends only on the seed
and the shard plan, not on the number of workers or on interruptions.

Clustering uses Pythia's `SlowJet` in anti-kT mode, which runs FastJet's own core (fjcore)
inside Pythia's C++: the same algorithm as `fastjet`, about 6x faster than feeding Python
`PseudoJet` lists. FastJet's Python package then reclusters each jet with C/A for soft drop.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import platform
import queue
import shutil
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from trigger.config import CLASS_NAMES
from trigger.data.features import jet_arrays
from trigger.data.layout import write_jets_file
from trigger.errors import TriggerError
from trigger.inputs import ETA_WORD, PHI_WORD, PT_WORD, to_words
from trigger.io import atomic_path, only_writer

JET_RADIUS = 0.8
# Particles entering the clustering: |eta| < 5, roughly a calorimeter's reach.
PARTICLE_ETA_MAX = 5.0

COLLISION_ENERGY = 13000.0  # GeV
COMMON_SETTINGS = (
    f"Beams:eCM = {COLLISION_ENERGY:.0f}.",
    "ParticleDecays:limitTau0 = on",
    "ParticleDecays:tau0Max = 10.",
    "Print:quiet = on",
    "Next:numberCount = 0",
    "Random:setSeed = on",
)
HADRONIC_W = ("24:onMode = off", "24:onIfAny = 1 2 3 4 5")
PROCESSES = {
    "g": ("HardQCD:gg2gg = on", "HardQCD:qqbar2gg = on"),
    "q": (
        "HardQCD:qq2qq = on",
        "HardQCD:qqbar2qqbarNew = on",
        "HardQCD:gg2qqbar = on",
        "HardQCD:nQuarkNew = 3",
    ),
    "W": ("WeakBosonAndParton:qqbar2Wg = on", "WeakBosonAndParton:qg2Wq = on", *HADRONIC_W),
    "Z": (
        "WeakBosonAndParton:qqbar2gmZg = on",
        "WeakBosonAndParton:qg2gmZq = on",
        "WeakZ0:gmZmode = 2",
        "23:onMode = off",
        "23:onIfAny = 1 2 3 4 5",
    ),
    "t": ("Top:gg2ttbar = on", "Top:qqbar2ttbar = on", *HADRONIC_W),
}
# Truth object of each class in the hard process: (status, allowed |PDG id|, follow to the
# last copy before decay). Partons are matched before the shower, resonances after recoil.
TRUTH = {
    "g": (-23, {21}, False),
    "q": (-23, {1, 2, 3}, False),
    "W": (-22, {24}, True),
    "Z": (-22, {23}, True),
    "t": (-22, {6}, True),
}


WINDOWS = {
    "jet": "the jet's pT (hard-process pT from pt_min - 50 to pt_max + 200 GeV)",
    "parton": "the hard-process parton/boson pT; jets above half of pt_min kept",
}


@dataclass(frozen=True)
class Variation:
    """A named shift of the nominal generation: Pythia settings read after the nominal ones,
    and `GenerationSettings` fields given other values than their defaults."""

    description: str
    pythia: tuple[str, ...] = ()
    settings: Mapping[str, Any] = field(default_factory=dict)


VARIATIONS = {
    "ue-off": Variation(
        "underlying event off: no multiparton interactions", pythia=("PartonLevel:MPI = off",)
    ),
    # Tune 21 is the A14 member Pythia recommends when only one is studied.
    "tune-a14": Variation(
        "ATLAS A14 tune (NNPDF2.3 LO) in place of Monash 2013", pythia=("Tune:pp = 21",)
    ),
    "threshold-up": Variation(
        "detector: candidate pT threshold 2 GeV in place of 1 GeV",
        settings={"candidate_pt_min": 2.0},
    ),
    "window-up": Variation(
        "jet pT window 900 to 1300 GeV in place of 800 to 1200 GeV (hard process 850 to 1500)",
        settings={"window": "jet", "pt_min": 900.0, "pt_max": 1300.0},
    ),
}


def variation(name: str) -> Variation:
    """The variation called `name`; an unknown name is the user's error."""
    if name not in VARIATIONS:
        msg = f"unknown --variation {name!r}: choose one of {', '.join(VARIATIONS)}"
        raise TriggerError(msg)
    return VARIATIONS[name]


@dataclass(frozen=True)
class GenerationSettings:
    jets_per_class: int
    seed: int
    pt_min: float = 800.0
    pt_max: float = 1200.0
    eta_max: float = 2.0
    shard_size: int = 1000
    window: str = "jet"  # what [pt_min, pt_max] bounds: see WINDOWS
    candidate_pt_min: float = 1.0  # GeV: the detector stage's per-candidate threshold
    l1_rounding: bool = True  # round candidates to L1 words (off only to measure its cost)
    # A name in VARIATIONS; the fields it sets must already hold its values.
    variation: str | None = None

    def __post_init__(self) -> None:
        self._check_variation()
        if not 1 <= self.seed <= 900_000_000:
            msg = f"--seed must be between 1 and 900000000 (Pythia's range), got {self.seed}"
            raise TriggerError(msg)
        if not 0 < self.pt_min < min(self.pt_max, COLLISION_ENERGY / 2):
            msg = (
                f"pT window must satisfy 0 < min < max and min < {COLLISION_ENERGY / 2:g} GeV "
                f"(half the collision energy), got [{self.pt_min}, {self.pt_max}]"
            )
            raise TriggerError(msg)
        # Jets are matched inside |eta| < eta_max of particles within |eta| < PARTICLE_ETA_MAX:
        # outside (0, PARTICLE_ETA_MAX] no jet ever passes and generation would never end.
        if not 0 < self.eta_max <= PARTICLE_ETA_MAX:
            msg = f"--eta-max must be in (0, {PARTICLE_ETA_MAX}], got {self.eta_max}"
            raise TriggerError(msg)
        if self.window not in WINDOWS:
            msg = f"--window must be one of {', '.join(WINDOWS)}, got {self.window!r}"
            raise TriggerError(msg)
        if not 0 <= self.candidate_pt_min < self.pt_min:
            msg = f"--candidate-pt-min must be in [0, pt_min) GeV, got {self.candidate_pt_min}"
            raise TriggerError(msg)
        if self.jets_per_class < 1 or self.shard_size < 1:
            msg = "--jets-per-class and --shard-size must be positive"
            raise TriggerError(msg)

    def _check_variation(self) -> None:
        """A variation's fields given other values would make a sample it does not name."""
        if self.variation is None:
            return
        for name, value in variation(self.variation).settings.items():
            given = getattr(self, name)
            if given != value:
                option = "--" + name.replace("_", "-")
                msg = (
                    f"--variation {self.variation} sets {option} to {value}: "
                    f"drop {option} {given} or the variation"
                )
                raise TriggerError(msg)


@dataclass(frozen=True)
class Shard:
    label: int
    index: int
    n_jets: int
    seed: int

    @property
    def name(self) -> str:
        return f"{CLASS_NAMES[self.label]}-{self.index:05d}"


def shard_plan(settings: GenerationSettings) -> list[Shard]:
    """Shards of at most `shard_size` jets per class, each with its own reproducible seed."""
    plan = []
    for label in range(len(CLASS_NAMES)):
        starts = range(0, settings.jets_per_class, settings.shard_size)
        for index, start in enumerate(starts):
            n = min(settings.shard_size, settings.jets_per_class - start)
            entropy = np.random.SeedSequence([settings.seed, label, index]).generate_state(1)[0]
            plan.append(Shard(label, index, n, int(entropy) % 900_000_000 + 1))
    return plan


def _hard_window(settings: GenerationSettings) -> tuple[str, str]:
    if settings.window == "parton":
        low, high = settings.pt_min, settings.pt_max
    else:  # room for the jet to gain or lose pT against the hard process
        low, high = settings.pt_min - 50.0, settings.pt_max + 200.0
    return f"PhaseSpace:pTHatMin = {low}", f"PhaseSpace:pTHatMax = {high}"


def _jet_window(settings: GenerationSettings) -> tuple[float, float]:
    """The pT range of kept jets (GeV)."""
    if settings.window == "parton":
        return 0.5 * settings.pt_min, COLLISION_ENERGY / 2
    return settings.pt_min, settings.pt_max


DETECTOR = (
    "per jet: particles below the candidate pT threshold dropped; pT, eta, phi of the rest "
    "rounded half to even to L1 words (pT unsigned 14 bits, LSB 0.25 GeV; eta signed 12 bits "
    "and phi signed 11 bits, LSB pi/720), saturating at the word range; mass kept"
)

UNROUNDED_DETECTOR = "per jet: particles below the candidate pT threshold dropped; not rounded"


def detector(jets: list[np.ndarray], pt_min: float, rounding: bool = True) -> list[np.ndarray]:
    """Each jet's particles as L1 candidates (see DETECTOR), as (px, py, pz, E) in GeV.

    `rounding` off keeps the threshold and the exact kinematics: data to measure what the
    rounding to words costs, not data a Level-1 system sees.
    """
    out = []
    for p4 in jets:
        px, py, pz, e = p4.T
        pt = np.hypot(px, py)
        mass2 = np.maximum(e**2 - (px**2 + py**2 + pz**2), 0.0)
        pt_word = to_words(pt, PT_WORD)
        kept = (pt >= pt_min) & (pt_word > 0)
        eta, phi = np.arcsinh(pz[kept] / pt[kept]), np.arctan2(py[kept], px[kept])
        pt_l1, eta_l1, phi_l1 = pt[kept], eta, phi
        if rounding:
            pt_l1 = pt_word[kept] * PT_WORD.lsb
            eta_l1 = to_words(eta, ETA_WORD) * ETA_WORD.lsb
            phi_l1 = to_words(phi, PHI_WORD) * PHI_WORD.lsb
        pz_l1 = pt_l1 * np.sinh(eta_l1)
        e_l1 = np.sqrt(pt_l1**2 + pz_l1**2 + mass2[kept])
        out.append(np.stack([pt_l1 * np.cos(phi_l1), pt_l1 * np.sin(phi_l1), pz_l1, e_l1], -1))
    return out


def _pythia_settings(cls: str, settings: GenerationSettings) -> tuple[str, ...]:
    """The class's process settings, then the variation's, which win where they overlap."""
    shift = variation(settings.variation).pythia if settings.variation else ()
    return (*COMMON_SETTINGS, *PROCESSES[cls], *shift)


def _make_pythia(shard: Shard, settings: GenerationSettings):
    import pythia8mc

    pythia = pythia8mc.Pythia("", False)
    cls = CLASS_NAMES[shard.label]
    for line in (
        *_pythia_settings(cls, settings),
        f"Random:seed = {shard.seed}",
        *_hard_window(settings),
    ):
        if not pythia.readString(line):
            msg = f"Pythia rejected the setting '{line}'"
            raise TriggerError(msg)
    if not pythia.init():
        window = f"{settings.pt_min:g}-{settings.pt_max:g} GeV"
        msg = f"Pythia failed to initialise for class {cls} (jet pT window {window})"
        raise TriggerError(msg)
    return pythia


def _truth_directions(pythia, label: int) -> list[tuple[float, float]]:
    """(eta, phi) of the class's truth objects; the hard process sits at the record's start."""
    status, ids, follow = TRUTH[CLASS_NAMES[label]]
    event = pythia.event
    directions = []
    for i in range(1, pythia.process.size()):
        particle = event[i]
        if particle.status() == status and particle.idAbs() in ids:
            if follow:
                particle = event[particle.iBotCopyId()]
            directions.append((particle.eta(), particle.phi()))
    return directions


def _matched(jet_y: float, jet_phi: float, truths: list[tuple[float, float]]) -> bool:
    for eta, phi in truths:
        dphi = (jet_phi - phi + np.pi) % (2 * np.pi) - np.pi
        if (jet_y - eta) ** 2 + dphi**2 < JET_RADIUS**2:
            return True
    return False


def _shard_jets(shard: Shard, settings: GenerationSettings, report) -> list[np.ndarray]:
    """Four-momenta (px, py, pz, E) of the L1 candidates of each accepted jet."""
    import pythia8mc

    pythia = _make_pythia(shard, settings)
    low, high = _jet_window(settings)
    # Pre-select at 90% of the window: the window is applied to the constituent sum below.
    slowjet = pythia8mc.SlowJet(-1, JET_RADIUS, 0.9 * low, PARTICLE_ETA_MAX, 2, 2)
    event = pythia.event
    jets: list[np.ndarray] = []
    while len(jets) < shard.n_jets:
        if _parent_gone():
            os._exit(1)
        if not pythia.next():
            continue
        truths = _truth_directions(pythia, shard.label)
        slowjet.analyze(event)
        for j in range(slowjet.sizeJet()):
            if len(jets) == shard.n_jets or not _matched(slowjet.y(j), slowjet.phi(j), truths):
                continue
            p4 = np.array(
                [[event[i].px(), event[i].py(), event[i].pz(), event[i].e()]
                 for i in slowjet.constituents(j)]
            )  # fmt: skip
            (candidates,) = detector([p4], settings.candidate_pt_min, settings.l1_rounding)
            pt = np.hypot(*candidates[:, :2].sum(axis=0))
            eta = np.arcsinh(candidates[:, 2].sum() / pt)
            if low < pt < high and abs(eta) < settings.eta_max:  # the L1 jet's pT and eta
                jets.append(candidates)
                report(1)
    return jets


def shard_arrays(shard: Shard, settings: GenerationSettings) -> tuple[np.ndarray, np.ndarray]:
    """One shard's constituents and jets in the hls4ml layout."""
    report = _worker.progress.put if _worker.progress is not None else (lambda n: None)
    return jet_arrays(_shard_jets(shard, settings, report), shard.label)


def _save_shard(arrays: tuple[np.ndarray, np.ndarray], final: Path) -> Path:
    constituents, jets = arrays
    with atomic_path(final) as tmp, tmp.open("wb") as handle:
        np.savez(handle, constituents=constituents, jets=jets)
    return final


def run_shard(shard: Shard, settings: GenerationSettings, shard_dir: Path) -> Path:
    """Generate one shard and store it atomically as `<shard_dir>/<name>.npz`."""
    return _save_shard(shard_arrays(shard, settings), shard_dir / f"{shard.name}.npz")


def _dask_shard(shard: Shard, settings: GenerationSettings) -> tuple[np.ndarray, np.ndarray]:
    """On a Dask worker: the shard's arrays travel back, so workers need no shared disk."""
    _silence_stdout()
    return shard_arrays(shard, settings)


def _run_on_dask(missing: list[Shard], settings, shard_dir: Path, client: Any, total: int):
    """Run the shards as Dask tasks; the driver stores each one as it arrives."""
    from distributed import as_completed
    from tqdm import tqdm

    done_jets = total - sum(s.n_jets for s in missing)
    bar = tqdm(total=total, initial=done_jets, unit="jet", desc="generating", smoothing=0.1)
    futures = {
        client.submit(_dask_shard, s, settings, key=f"shard-{s.name}-{settings.seed}"): s
        for s in missing
    }
    try:
        for future, arrays in as_completed(futures, with_results=True):
            shard = futures[future]
            _save_shard(arrays, shard_dir / f"{shard.name}.npz")
            bar.update(shard.n_jets)
    finally:
        client.cancel(list(futures))
        bar.close()


def _versions() -> dict[str, str]:
    packages = ("pythia8mc", "fastjet", "numpy", "h5py")
    return {"python": platform.python_version()} | {p: metadata.version(p) for p in packages}


def _manifest(settings: GenerationSettings, plan: list[Shard]) -> dict:
    counts = {c: 0 for c in CLASS_NAMES}
    for shard in plan:
        counts[CLASS_NAMES[shard.label]] += shard.n_jets
    # Only a shifted sample's manifest names a variation: a nominal manifest records the
    # nominal settings alone, the same for every nominal file made with them.
    fields = {k: v for k, v in asdict(settings).items() if k != "variation" or v is not None}
    shift = {"variation": _variation_record(settings.variation)} if settings.variation else {}
    return {
        "generator": "Pythia 8 (pythia8mc) + anti-kT R=0.8 (SlowJet/fjcore), soft drop (fastjet)",
        "settings": fields,
        "processes": {c: list(_pythia_settings(c, settings)) for c in CLASS_NAMES},
        **shift,
        "truth_matching": f"jet within dR < {JET_RADIUS} of the class's hard-process object",
        "window": WINDOWS[settings.window],
        "detector": DETECTOR if settings.l1_rounding else UNROUNDED_DETECTOR,
        "shards": [asdict(s) | {"name": s.name} for s in plan],
        "counts": counts,
        "total_jets": sum(counts.values()),
        "versions": _versions(),
    }


def _variation_record(name: str) -> dict:
    shift = variation(name)
    pythia, fields = list(shift.pythia), dict(shift.settings)
    return {"name": name, "description": shift.description, "pythia": pythia, "settings": fields}


def manifest_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.stem + ".manifest.json")


def read_manifest(out: str | Path) -> dict | None:
    path = manifest_path(out)
    return json.loads(path.read_text()) if path.is_file() else None


def _shard_dir(out: Path, settings: GenerationSettings) -> Path:
    shard_dir = out.with_name(out.name + ".shards")
    plan_file = shard_dir / "settings.json"
    if shard_dir.exists() and not plan_file.is_file() and any(shard_dir.iterdir()):
        msg = f"{shard_dir} exists and holds no generation settings: move it, or pick another --out"
        raise TriggerError(msg)
    shard_dir.mkdir(parents=True, exist_ok=True)
    wanted = json.dumps(asdict(settings), sort_keys=True)
    if plan_file.exists() and plan_file.read_text() != wanted:
        msg = (
            f"{shard_dir} holds shards made with other settings ({plan_file.read_text()}); "
            "delete it or rerun with those settings"
        )
        raise TriggerError(msg)
    plan_file.write_text(wanted)
    return shard_dir


def _run_missing(missing: list[Shard], settings, shard_dir: Path, workers: int, total: int):
    """Run the shards on `workers` processes; any error or signal terminates them all."""
    from tqdm import tqdm

    done_jets = total - sum(s.n_jets for s in missing)
    bar = tqdm(total=total, initial=done_jets, unit="jet", desc="generating", smoothing=0.1)
    context = multiprocessing.get_context("spawn")
    progress = context.Queue()
    # Leaving the pool's block terminates its workers, whether the shards finished or not.
    with context.Pool(workers, _start_worker, (os.getpid(), progress)) as pool:
        results = [pool.apply_async(run_shard, (s, settings, shard_dir)) for s in missing]
        try:
            while results:
                time.sleep(0.2)
                _drain(progress, bar)
                for result in [r for r in results if r.ready()]:
                    result.get()  # a worker's error ends the run here
                    results.remove(result)
            _drain(progress, bar)
        finally:
            bar.close()


@dataclass
class _Worker:
    """What a generation worker process is given when it starts (unset in the main process)."""

    parent: int | None = None
    progress: Any = None  # queue of jet counts for the progress bar


_worker = _Worker()


def _start_worker(parent: int, progress: Any) -> None:
    _silence_stdout()
    _worker.parent, _worker.progress = parent, progress


def _parent_gone() -> bool:
    """In a worker: whether the main process died outright (SIGKILL) and left it orphaned."""
    return _worker.parent is not None and os.getppid() != _worker.parent


def _silence_stdout() -> None:
    """Workers print nothing: Pythia's and FastJet's C++ banners would garble the progress bar."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)


def _drain(progress, bar) -> None:
    count = 0
    try:
        while True:
            count += progress.get_nowait()
    except queue.Empty:
        pass
    if count:
        bar.update(count)


def merge_shards(plan: list[Shard], shard_dir: Path, out: Path, seed: int, manifest: dict) -> Path:
    """Concatenate shards in plan order, shuffle with the seed, write the file atomically."""
    parts = [np.load(shard_dir / f"{s.name}.npz") for s in plan]
    constituents = np.concatenate([p["constituents"] for p in parts])
    jets = np.concatenate([p["jets"] for p in parts])
    order = np.random.default_rng(seed).permutation(len(jets))
    with atomic_path(out) as tmp:
        write_jets_file(
            tmp, constituents[order], jets[order], attrs={"manifest": json.dumps(manifest)}
        )
    with atomic_path(manifest_path(out)) as tmp:
        tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    return out


def generate(
    settings: GenerationSettings, out: str | Path, workers: int = 2, client: Any = None
) -> Path:
    """Make (or finish making) the dataset at `out`; a no-op when it is already complete.

    Shards run on `workers` local processes, or as tasks of the Dask `client` when given; the
    file is the same, byte for byte, either way.
    """
    out = Path(out)
    plan = shard_plan(settings)
    manifest = _manifest(settings, plan)
    if workers < 1:
        msg = f"--workers must be at least 1, got {workers}"
        raise TriggerError(msg)
    busy = f"another `trigger data generate` is writing {out}: wait for it to finish"
    with only_writer(out, busy):
        if out.exists():
            if read_manifest(out) == manifest:
                return out
            msg = f"{out} exists and was made with other settings: remove it, or pick another --out"
            raise TriggerError(msg)
        shard_dir = _shard_dir(out, settings)
        missing = [s for s in plan if not (shard_dir / f"{s.name}.npz").exists()]
        if missing and client is not None:
            _run_on_dask(missing, settings, shard_dir, client, manifest["total_jets"])
        elif missing:
            _run_missing(missing, settings, shard_dir, workers, manifest["total_jets"])
        merge_shards(plan, shard_dir, out, settings.seed, manifest)
        shutil.rmtree(shard_dir)
    return out
