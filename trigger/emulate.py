"""`trigger emulate`: a firmware's logits and decisions on every jet of a layout file.

The file's jets are read as L1 words a chunk at a time (memory stays bounded whatever its
size; only the candidates and columns the words are made of are read, and no labels are
needed) and run through one of two emulators of the emitted project, both bit-exact with it:

    fast  the firmware's arithmetic vectorised with numpy (`trigger.hls.fast`), loaded from
          the directory's fast_emulator.npz (no TensorFlow)
    hls   the project's own C++ compiled with g++ (`trigger.hls.emulator`), the reference

PREDICTIONS.h5 holds `logits` (jets, classes; the firmware's output values, exact) and
`top_class` (jets,), in the file's jet order, with attributes naming the firmware (its
identity), the data file (its identity) and the engine. It is written under a temporary name
and renamed when complete; a file whose datasets declare more jets than it stores is refused
before anything is written.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import TypeVar

import numpy as np

from trigger.artifacts import EMIT, data_identity, open_artifact
from trigger.errors import TriggerError
from trigger.inputs import InputStage
from trigger.io import atomic_path, check_file_output, remove_stale_temporaries

ENGINES = ("fast", "hls")
# Jets per chunk: its arrays (6.5 MB of words) stay small enough for the allocator to reuse
# their memory chunk after chunk; fresh pages for 50,000-jet arrays cost more than the reading.
CHUNK_JETS = 8192
STAGE_MARK = "trigger emulate"  # the `written_by` attribute of every predictions file
T = TypeVar("T")


def engine(firmware_dir: Path, name: str) -> Callable[[np.ndarray], np.ndarray]:
    """words -> logits through the named emulator of an emitted project."""
    if name == "fast":
        from trigger.hls.fast import load_fast_emulator

        return load_fast_emulator(firmware_dir)
    if name == "hls":
        from trigger.hls.emulator import emulate

        return lambda words: emulate(firmware_dir, words)
    msg = f"unknown engine '{name}' (choose from {', '.join(ENGINES)})"
    raise TriggerError(msg)


def _in_background(function: Callable[..., T], *args: object) -> Future[T]:
    """`function(*args)` in a daemon thread: it runs beside the emulation (hashing a file
    releases the GIL), and an interrupted command exits without waiting for it."""
    future: Future[T] = Future()

    def work() -> None:
        try:
            future.set_result(function(*args))
        except BaseException as error:  # handed to whoever asks for the result
            future.set_exception(error)

    threading.Thread(target=work, daemon=True).start()
    return future


def _ours(path: Path) -> bool:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return f.attrs.get("written_by") == STAGE_MARK
    except OSError:
        return False


def _check_replaceable(out: Path, replace: bool, data_path: Path) -> None:
    """Only an earlier predictions file may be replaced, and only when asked."""
    check_file_output(out, "emulate", _ours, inputs=[data_path], replace=replace)


def emulate_file(
    firmware_dir: str | Path,
    data_path: str | Path,
    out: str | Path,
    *,
    engine_name: str = "fast",
    chunk_jets: int = CHUNK_JETS,
    replace: bool = False,
    progress: bool = True,
) -> Path:
    """Write the firmware's logits and top class for every jet of `data_path` to `out`."""
    import h5py
    from tqdm import tqdm

    from trigger.data.loader import readable_jets, word_chunks

    firmware_dir, data_path, out = Path(firmware_dir), Path(data_path), Path(out)
    remove_stale_temporaries(out)  # what emulate runs killed mid-way left beside `out`
    if chunk_jets < 1:
        msg = f"--chunk-jets must be at least 1, got {chunk_jets}"
        raise TriggerError(msg)
    firmware = open_artifact(firmware_dir, EMIT)
    from trigger.hls.stage import require_proven

    require_proven(firmware_dir)  # not when its exactness checks failed at emit-hls
    stage = InputStage.load(firmware_dir / "input_stage.json")
    n_jets = readable_jets(data_path, stage.n_constituents, labelled=False)
    _check_replaceable(out, replace, data_path)
    run = engine(firmware_dir, engine_name)
    chunks = word_chunks(data_path, stage.n_constituents, chunk_jets)
    bar = tqdm(
        total=n_jets,
        unit="jet",
        desc=f"emulating ({engine_name})",
        disable=None if progress else True,
    )
    identity = _in_background(data_identity, data_path)
    with (
        atomic_path(out, lambda final: _check_replaceable(final, replace, data_path)) as tmp,
        h5py.File(tmp, "w") as h5,
    ):
        logits = top = None
        start = 0
        for words in chunks:
            values = run(words)
            if logits is None:
                logits = h5.create_dataset("logits", (n_jets, values.shape[1]), np.float64)
                top = h5.create_dataset("top_class", (n_jets,), np.int8)
            logits[start : start + len(values)] = values
            top[start : start + len(values)] = values.argmax(axis=1)
            start += len(values)
            bar.update(len(values))
        if logits is None:
            msg = f"{data_path}: holds no jets"
            raise TriggerError(msg)
        h5.attrs.update(
            {
                "written_by": STAGE_MARK,
                "firmware": str(firmware_dir),
                "firmware_identity": firmware.identity,
                "data": str(data_path),
                "data_identity": identity.result(),
                "engine": engine_name,
            }
        )
    bar.close()
    return out
