"""The input stage inside the emitted HLS project: its top function takes L1 words.

hls4ml writes the network as `tagger(input_t features[N*F], result_t logits[K])`. This module
renames that function `tagger_network` and adds the project's real top function,

    void tagger(pt_word_t candidate_pt[N], eta_word_t candidate_eta[N],
                phi_word_t candidate_phi[N], pt_word_t jet_pt, eta_word_t jet_eta,
                phi_word_t jet_phi, count_word_t jet_count, result_t logits[K])

which runs the hand-written input stage (`input_stage.h`, one file, copied as is) and then the
network. `set_top tagger` in hls4ml's build script then synthesises the whole path from words
to logits. `tagger_words.h` feeds the top function one jet from a row of numbers (the
candidates' pT, eta, phi words, then the jet's pT, eta, phi and count): the testbench and the
emulator library both use it. hls4ml's own Python bridge (`hls4ml ... predict`) calls
`tagger_network`, the network on features.
"""

from __future__ import annotations

import re
import shutil
from importlib import resources
from pathlib import Path

from trigger.errors import TriggerError
from trigger.inputs import FEATURES, InputStage

NETWORK = "{project}_network"
_PARAMS = """\
// The constants of this tagger's input stage (written by trigger from input_stage.json).
#ifndef TRIGGER_INPUT_STAGE_PARAMS_H_
#define TRIGGER_INPUT_STAGE_PARAMS_H_

static const int N_CANDIDATES = {n};
static const int N_FEATURES = {f};
// {names}
static const int FEATURE[N_FEATURES] = {{{codes}}};
static const int CENTER[N_FEATURES] = {{{centers}}};
static const int SHIFT[N_FEATURES] = {{{shifts}}};

#endif
"""
_SIGNATURE = """void {project}(
    trigger::pt_word_t candidate_pt[N_CANDIDATES],
    trigger::eta_word_t candidate_eta[N_CANDIDATES],
    trigger::phi_word_t candidate_phi[N_CANDIDATES],
    trigger::pt_word_t jet_pt,
    trigger::eta_word_t jet_eta,
    trigger::phi_word_t jet_phi,
    trigger::count_word_t jet_count,
    result_t logits[{n_out}]
)"""
_TOP = """
// The whole tagger as synthesised: L1 words in, logits out (written by trigger).
{signature} {{
    #pragma HLS ARRAY_PARTITION variable=candidate_pt complete dim=0
    #pragma HLS ARRAY_PARTITION variable=candidate_eta complete dim=0
    #pragma HLS ARRAY_PARTITION variable=candidate_phi complete dim=0
    #pragma HLS ARRAY_PARTITION variable=logits complete dim=0
    #pragma HLS INTERFACE ap_vld port=candidate_pt,candidate_eta,candidate_phi
    #pragma HLS INTERFACE ap_vld port=jet_pt,jet_eta,jet_phi,jet_count,logits
    #pragma HLS PIPELINE
    (void)jet_pt;  // part of the contract; no feature of this tagger uses it
    input_t features[N_CANDIDATES * N_FEATURES];
    #pragma HLS ARRAY_PARTITION variable=features complete dim=0
    trigger::input_stage<input_t, N_CANDIDATES, N_FEATURES>(
        candidate_pt, candidate_eta, candidate_phi, jet_eta, jet_phi, jet_count,
        FEATURE, CENTER, SHIFT, features);
    {network}(features, logits);
}}
"""
_DECLARATION = """
// Top level function for C-synthesis: L1 words in, logits out.
{signature};
"""
_WORDS = """\
// One jet from a row of numbers into the top function (written by trigger): the row holds the
// candidates' (pT, eta, phi) words, candidate by candidate, then the jet's pT, eta, phi, count.
#ifndef TRIGGER_TAGGER_WORDS_H_
#define TRIGGER_TAGGER_WORDS_H_

#include "{project}.h"

static const int N_WORDS = 3 * N_CANDIDATES + 4;
static const int N_LOGITS = {n_out};

inline void {project}_on_row(const double *row, double *out) {{
    trigger::pt_word_t pt[N_CANDIDATES];
    trigger::eta_word_t eta[N_CANDIDATES];
    trigger::phi_word_t phi[N_CANDIDATES];
    for (int i = 0; i < N_CANDIDATES; i++) {{
        pt[i] = (long)row[3 * i];
        eta[i] = (long)row[3 * i + 1];
        phi[i] = (long)row[3 * i + 2];
    }}
    const double *jet = row + 3 * N_CANDIDATES;
    result_t logits[N_LOGITS];
    {project}(pt, eta, phi, (long)jet[0], (long)jet[1], (long)jet[2], (long)jet[3], logits);
    for (int k = 0; k < N_LOGITS; k++) out[k] = logits[k].to_double();
}}

#endif
"""


def _rename_network(path: Path, project: str) -> None:
    """`void tagger(` -> `void tagger_network(` in hls4ml's file, exactly once."""
    text = path.read_text()
    pattern = re.compile(rf"\bvoid {project}\(")
    if len(pattern.findall(text)) != 1:
        msg = f"internal: {path} does not declare `void {project}(` exactly once"
        raise TriggerError(msg)
    text = pattern.sub(f"void {NETWORK.format(project=project)}(", text)
    # The network is no longer the top function: its interface pragma would only draw warnings.
    text = re.sub(r"\n\s*#pragma HLS INTERFACE[^\n]*", "\n    #pragma HLS INLINE", text)
    path.write_text(text)


def params_header(stage: InputStage) -> str:
    return _PARAMS.format(
        n=stage.n_constituents,
        f=len(stage.features),
        names=", ".join(stage.features),
        codes=", ".join(str(FEATURES.index(f)) for f in stage.features),
        centers=", ".join(str(c) for c in stage.center),
        shifts=", ".join(str(s) for s in stage.shift),
    )


def install(
    project_dir: str | Path, stage: InputStage, n_out: int, project: str = "tagger"
) -> None:
    """Put the input stage into a written hls4ml project and make it part of the top function."""
    firmware = Path(project_dir) / "firmware"
    network = NETWORK.format(project=project)
    with resources.as_file(resources.files("trigger.hls") / "input_stage.h") as header:
        shutil.copyfile(header, firmware / "input_stage.h")
    (firmware / "input_stage_params.h").write_text(params_header(stage))
    for name in (f"{project}.cpp", f"{project}.h"):
        _rename_network(firmware / name, project)
    source = firmware / f"{project}.cpp"
    signature = _SIGNATURE.format(project=project, n_out=n_out)
    source.write_text(source.read_text() + _TOP.format(signature=signature, network=network))
    header = firmware / f"{project}.h"
    text = header.read_text()
    includes = '#include "defines.h"\n'
    extra = '#include "input_stage.h"\n#include "input_stage_params.h"\n'
    declaration = _DECLARATION.format(signature=signature)
    guard_end = text.rindex("#endif")
    text = text[:guard_end] + declaration + "\n" + text[guard_end:]
    header.write_text(text.replace(includes, includes + extra, 1))
    (firmware / f"{project}_words.h").write_text(_WORDS.format(project=project, n_out=n_out))
    bridge = Path(project_dir) / f"{project}_bridge.cpp"
    bridge.write_text(re.sub(rf"\b{project}\(", f"{network}(", bridge.read_text()))
