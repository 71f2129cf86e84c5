"""Firmware stage: QKeras student -> hls4ml project + bit-accurate C++ emulator.

Public API (heavy imports happen inside the functions):
    emit_hls(run_dir, out_dir, *, data_path=None, firmware=None, overrides=(), synth=False,
             rtl=False, replace=False, log=None) -> Path
    emit_model(model_path, contract_path, out_dir, *, data_path, ...) -> Path   (own model)
    convert_student(model, output_dir, firmware=None) -> (hls_model, Plan)
    convert_float_reference(model, output_dir, firmware=None) -> hls_model
    input_stage.install(project_dir, stage, n_out)   the input stage into the top function
    build_emulator(project_dir, input_shape, output_shape, project="tagger") -> Path
    emulate(project_dir, words) -> np.ndarray   (L1 words in, logits out)
    synthesis_report(project_dir) -> dict | None;  parse_csynth_xml(path) -> dict
"""

from trigger.hls import input_stage
from trigger.hls.convert import STEPS, Plan, convert_float_reference, convert_student
from trigger.hls.emulator import Emulator, build_emulator, emulate, load_emulator
from trigger.hls.reports import parse_csynth_xml, parse_vivado_synth_rpt, synthesis_report
from trigger.hls.stage import FLOAT_REFERENCE_DIR, emit_hls, emit_model, synthesize

__all__ = [
    "FLOAT_REFERENCE_DIR",
    "STEPS",
    "Emulator",
    "Plan",
    "build_emulator",
    "convert_float_reference",
    "convert_student",
    "emit_hls",
    "emit_model",
    "emulate",
    "input_stage",
    "load_emulator",
    "parse_csynth_xml",
    "parse_vivado_synth_rpt",
    "synthesis_report",
    "synthesize",
]
