"""The project's C-simulation testbench: the bit-accurate emulation test as Vivado/Vitis runs it.

emit-hls replaces hls4ml's testbench (`tagger_test.cpp`, which prints six significant digits
and compares nothing) with one that reads `tb_data/`: the L1 words of test jets, and the
outputs of the Python input stage and the QKeras model on them, written with 17 significant
digits (exact for every value a double holds). It runs the top function (input stage and
network) on every jet, compares every output exactly, prints `bit-exact: K of N jets`, and
returns non-zero on any mismatch. So `csim_design`
in Vivado/Vitis HLS is itself the bit-exactness test, and the same file builds with g++
against the ap_types headers hls4ml ships (`build_testbench`, `run_testbench`).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

from trigger.errors import TriggerError
from trigger.hls.emulator import compile_project

TB_DATA = "tb_data"
INPUTS = "tb_input_features.dat"
OUTPUTS = "tb_output_predictions.dat"
BINARY = "testbench/csim"

_SOURCE = """\
// C-simulation testbench written by trigger: the top function runs on each jet's L1 words and
// every output is compared, bit for bit, with the Python input stage + QKeras model's output on
// the same jet (both in tb_data/, 17 significant digits). Exit code 0 only when every jet matches.
#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "firmware/{project}_words.h"
#include "firmware/nnet_utils/nnet_helpers.h"

namespace nnet {{
bool trace_enabled = false;
std::map<std::string, void *> *trace_outputs = NULL;
size_t trace_type_size = sizeof(double);
}} // namespace nnet

static bool read_row(std::ifstream &file, std::vector<double> &row) {{
    std::string line;
    if (!std::getline(file, line)) return false;
    std::istringstream items(line);
    row.clear();
    double value;
    while (items >> value) row.push_back(value);
    return true;
}}

int main() {{
    std::ifstream inputs("{tb_data}/{inputs}");
    std::ifstream expected("{tb_data}/{outputs}");
    if (!inputs.is_open() || !expected.is_open()) {{
        std::printf("ERROR: {tb_data}/{inputs} and {tb_data}/{outputs} are needed\\n");
        return 2;
    }}
#ifdef RTL_SIM
    std::ofstream results("{tb_data}/rtl_cosim_results.log");
#else
    std::ofstream results("{tb_data}/csim_results.log");
#endif
    results.precision(17);
    std::vector<double> in, want;
    long jets = 0, mismatched = 0;
    while (read_row(inputs, in)) {{
        bool complete = read_row(expected, want);
        if (!complete || (int)in.size() != N_WORDS || (int)want.size() != N_LOGITS) {{
            std::printf("ERROR: jet %ld: want %d words, %d outputs\\n", jets, N_WORDS, N_LOGITS);
            return 2;
        }}
        double got[N_LOGITS];
        {project}_on_row(in.data(), got);
        bool same = true;
        for (int i = 0; i < N_LOGITS; i++) {{
            results << got[i] << (i + 1 < N_LOGITS ? " " : "\\n");
            same = same && got[i] == want[i];
        }}
        if (!same && mismatched++ < 5) {{
            std::printf("MISMATCH jet %ld:", jets);
            for (int i = 0; i < N_LOGITS; i++) std::printf(" %.17g/%.17g", got[i], want[i]);
            std::printf(" (firmware/QKeras)\\n");
        }}
        jets++;
    }}
    std::printf("bit-exact: %ld of %ld jets\\n", jets - mismatched, jets);
    return (jets > 0 && mismatched == 0) ? 0 : 1;
}}
"""


def write_testbench(
    project_dir: Path, words: np.ndarray, expected: np.ndarray, project: str = "tagger"
) -> None:
    """Write the test vectors (each jet's L1 words, and the outputs the Python input stage and
    the QKeras model give on them) and the comparing testbench into an hls4ml project."""
    tb_data = project_dir / TB_DATA
    tb_data.mkdir(exist_ok=True)
    flat_y = np.asarray(expected, np.float64).reshape(len(expected), -1)
    np.savetxt(tb_data / INPUTS, np.asarray(words, np.int64).reshape(len(words), -1), fmt="%d")
    np.savetxt(tb_data / OUTPUTS, flat_y, fmt="%.17g")
    source = _SOURCE.format(
        project=project,
        tb_data=TB_DATA,
        inputs=INPUTS,
        outputs=OUTPUTS,
    )
    (project_dir / f"{project}_test.cpp").write_text(source)


def build_testbench(project_dir: str | Path, project: str = "tagger") -> Path:
    """Compile the testbench with g++ (what `csim_design` does), without Vivado."""
    project_dir = Path(project_dir)
    binary = project_dir / BINARY
    binary.parent.mkdir(exist_ok=True)
    sources = [project_dir / "firmware" / f"{project}.cpp", project_dir / f"{project}_test.cpp"]
    return compile_project(project_dir, sources, binary, shared=False, optimization="-O1")


def run_testbench(project_dir: str | Path) -> subprocess.CompletedProcess:
    """Run the built testbench in the project directory, as csim does; exit 0 means exact."""
    project_dir = Path(project_dir)
    binary = project_dir / BINARY
    if not binary.is_file():
        msg = f"{project_dir}: no testbench binary ({BINARY}); build it first"
        raise TriggerError(msg)
    return subprocess.run(
        [str(binary.resolve())], cwd=project_dir, capture_output=True, text=True, check=False
    )
