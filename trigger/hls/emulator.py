"""The bit-accurate C++ emulator: the HLS firmware compiled with g++, called a batch at a time.

The library runs the project's top function (input stage and network) on a batch of jets'
L1 words in one ctypes call, so a project directory can be emulated later (validate stage)
without TensorFlow, hls4ml or retraining: `emulate("firmware/NAME", words)` needs only numpy,
ctypes and the compiled library.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import json
import os
import shutil
import signal
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from trigger.errors import TriggerError
from trigger.inputs import check_port_words

EMULATOR_DIR = "emulator"
LIBRARY = "libemulator.so"
METADATA = "emulator.json"

_BATCH_SOURCE = """\
// Batch entry point for the bit-accurate emulator (written by trigger.hls): one call runs the
// top function, input stage included, on every jet's row of L1 words.
#include <map>
#include <string>

#include "firmware/{project}_words.h"
#include "firmware/nnet_utils/nnet_helpers.h"

namespace nnet {{
bool trace_enabled = false;
std::map<std::string, void *> *trace_outputs = NULL;
size_t trace_type_size = sizeof(double);
}} // namespace nnet

extern "C" {{
long trigger_input_size() {{ return N_WORDS; }}
long trigger_output_size() {{ return N_LOGITS; }}
void trigger_emulate(const double *words, double *logits, long n_jets) {{
    for (long j = 0; j < n_jets; j++) {{
        {project}_on_row(words + j * N_WORDS, logits + j * N_LOGITS);
    }}
}}
}}
"""


def _compiler() -> str:
    gxx = shutil.which("g++")
    if gxx is None:
        msg = (
            "g++ not found: install a C++ compiler (e.g. apt-get install g++) to build the emulator"
        )
        raise TriggerError(msg)
    return gxx


def _std_flag(gxx: str) -> str:
    # Same probe as hls4ml's build_lib.sh: c++23 enables ap_types' half/bfloat16 support.
    probe = [gxx, "-Werror", "-fsyntax-only", "-std=c++23", "-xc++", os.devnull]
    return "-std=c++23" if _run_compilers([probe])[0].returncode == 0 else "-std=c++14"


def _run_compilers(commands: list[list[str]]) -> list[subprocess.CompletedProcess]:
    """Run the commands side by side and wait for all of them.

    Each runs in a process group of its own, which is killed whole (g++ and the cc1plus and
    as it started) when anything interrupts the wait: Ctrl-C, or SIGTERM (the command's
    SystemExit). A stopped command then stops its compilers at once instead of waiting for them.
    """
    running: list[subprocess.Popen] = []
    try:
        for command in commands:
            running.append(
                subprocess.Popen(
                    command,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    start_new_session=True,
                )
            )
        done = []
        for process in running:
            out, err = process.communicate()
            done.append(subprocess.CompletedProcess(process.args, process.returncode, out, err))
        return done
    except BaseException:
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        raise


def compile_project(
    project_dir: Path,
    sources: list[Path],
    output: Path,
    *,
    shared: bool,
    optimization: str = "-O3",
) -> Path:
    """Compile `sources` against the project's firmware and ap_types headers with g++.

    Links a shared library (`shared`) or an executable at `output`; on failure, the compiler's
    messages go to `build.log` beside it and the first error is raised in one line.
    """
    gxx = _compiler()
    flags = [optimization, "-fPIC", _std_flag(gxx), f"-I{project_dir / 'firmware' / 'ap_types'}"]
    flags += [f"-I{project_dir}", f"-I{project_dir / 'firmware'}"]
    units = [(source, output.with_name(f"{output.name}.{source.stem}.o")) for source in sources]
    # The units compile in parallel.
    results = _run_compilers([[gxx, *flags, "-c", str(s), "-o", str(o)] for s, o in units])
    if all(r.returncode == 0 for r in results):
        link = [gxx, *(["-shared"] if shared else []), *(str(o) for _, o in units)]
        results += _run_compilers([[*link, "-o", str(output)]])
    for _, obj in units:
        obj.unlink(missing_ok=True)
    failed = [r for r in results if r.returncode != 0]
    if failed:
        log = output.with_name("build.log")
        log.write_text(failed[0].stderr)
        first = next((ln for ln in failed[0].stderr.splitlines() if "error" in ln), "see log")
        msg = f"{output.name} build failed ({log}): {first.strip()}"
        raise TriggerError(msg)
    return output


def build_emulator(
    project_dir: str | Path,
    input_shape: tuple[int, ...],
    output_shape: tuple[int, ...],
    project: str = "tagger",
    optimization: str = "-O3",
) -> Path:
    """Compile `<project_dir>/emulator/libemulator.so` from the written HLS project."""
    project_dir = Path(project_dir)
    firmware = project_dir / "firmware" / f"{project}.cpp"
    if not firmware.is_file():
        msg = f"{project_dir}: no HLS project (missing firmware/{project}.cpp)"
        raise TriggerError(msg)
    out = project_dir / EMULATOR_DIR
    out.mkdir(exist_ok=True)
    (out / "batch.cpp").write_text(_BATCH_SOURCE.format(project=project))
    compile_project(
        project_dir, [firmware, out / "batch.cpp"], out / LIBRARY, shared=True,
        optimization=optimization,
    )  # fmt: skip
    meta = {
        "library": f"{EMULATOR_DIR}/{LIBRARY}",
        "project": project,
        "input_shape": list(input_shape),
        "output_shape": list(output_shape),
    }
    (project_dir / METADATA).write_text(json.dumps(meta, indent=2) + "\n")
    return out / LIBRARY


class Emulator:
    """A compiled firmware project, callable on a batch: `Emulator(dir)(x) -> y`."""

    def __init__(self, project_dir: str | Path, threads: int | None = None):
        self.project_dir = Path(project_dir)
        self.threads = threads or os.cpu_count() or 1
        meta_path = self.project_dir / METADATA
        if not meta_path.is_file():
            msg = f"{self.project_dir}: no compiled emulator (missing {METADATA}); run emit-hls"
            raise TriggerError(msg)
        meta = json.loads(meta_path.read_text())
        self.input_shape = tuple(meta["input_shape"])
        self.output_shape = tuple(meta["output_shape"])
        library = self.project_dir / meta["library"]
        if not library.is_file():
            msg = f"{self.project_dir}: emulator library {meta['library']} is missing; run emit-hls"
            raise TriggerError(msg)
        # RTLD_LOCAL keeps each project's (identically named) symbols apart.
        self._lib = ctypes.CDLL(str(library.resolve()), mode=ctypes.RTLD_LOCAL)
        self._run = self._lib.trigger_emulate
        self._run.restype = None
        self._run.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_long]
        self._n_in = int(np.prod(self.input_shape))
        self._n_out = int(np.prod(self.output_shape))
        if self._lib.trigger_input_size() != self._n_in:
            msg = f"{library}: built for another input size than {METADATA} says"
            raise TriggerError(msg)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if x.shape[1:] != self.input_shape:
            msg = f"emulator expects jets of shape {self.input_shape}, got {x.shape[1:]}"
            raise TriggerError(msg)
        flat = np.ascontiguousarray(check_port_words(x.reshape(len(x), -1)), dtype=np.float64)
        out = np.empty((len(x), self._n_out), np.float64)
        # One call per thread on a contiguous slice; ctypes releases the GIL during the call.
        # The firmware C++ keeps no mutable state between jets, so slices run concurrently.
        bounds = np.linspace(0, len(x), min(self.threads, max(1, len(x) // 256)) + 1).astype(int)
        slices = [(a, b) for a, b in itertools.pairwise(bounds) if b > a]

        def run(ab: tuple[int, int]) -> None:
            a, b = ab
            self._run(flat[a:].ctypes.data, out[a:].ctypes.data, b - a)

        if len(slices) == 1:
            run(slices[0])
        elif slices:
            with ThreadPoolExecutor(max_workers=len(slices)) as pool:
                list(pool.map(run, slices))
        # The top function's outputs as `to_double()` gives them: exact, since emit-hls refuses
        # any format wider than a double's 53 significant bits (`fast.exact_dtype`).
        return out.reshape((len(x), *self.output_shape))


_LOADED: dict[tuple[Path, int, int], Emulator] = {}


def load_emulator(project_dir: str | Path) -> Emulator:
    """Load the emulator of a project directory, once per build of its library."""
    path = Path(project_dir).resolve()
    library = path / EMULATOR_DIR / LIBRARY
    stat = library.stat() if library.is_file() else None
    key = (path, stat.st_ino if stat else 0, stat.st_mtime_ns if stat else 0)
    if key not in _LOADED:
        _LOADED[key] = Emulator(path)
    return _LOADED[key]


def emulate(project_dir: str | Path, words: np.ndarray) -> np.ndarray:
    """Run a firmware directory's C++ emulator on jets' L1 words, (jets, 3 N + 4) rows as
    `JetSample.words` gives them; returns the logits, (jets, outputs) float64, exact."""
    return load_emulator(project_dir)(words)
