"""The input stage's Python definition: L1 words, their rounding and saturation, the features.

Its equality with the HLS C++ and the Verilog is tested in test_hls.py, test_rtl.py,
test_own_models.py and test_pipeline.py; here, what the definition itself promises.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.constituents import edge_case_words, permute_candidates, stage_for_random_words
from trigger.errors import TriggerError
from trigger.inputs import (
    ANGLE_LSB,
    ETA_WORD,
    PHI_WORD,
    PT_WORD,
    InputStage,
    check_port_words,
    fit_input_stage,
    random_words,
    raw_features,
    split_words,
    to_words,
    wrapped_dphi,
)


def test_words_round_half_to_even_and_saturate() -> None:
    pt = to_words(np.array([0.125, 0.375, 1.0, 4095.75, 5000.0, -1.0]), PT_WORD)
    np.testing.assert_array_equal(pt, [0, 2, 4, 16383, 16383, 0])
    eta = to_words(np.array([0.5, -0.5, 10.0, -10.0]) * ANGLE_LSB, ETA_WORD)
    np.testing.assert_array_equal(eta, [0, 0, 10, -10])
    assert to_words(np.array([9.0]), ETA_WORD)[0] == 2047  # |eta| = 9 is past 2047 LSBs
    assert to_words(np.array([-9.0]), ETA_WORD)[0] == -2048
    np.testing.assert_array_equal(to_words(np.array([np.pi, -np.pi]), PHI_WORD), [720, -720])


def test_phi_difference_wraps_into_minus_pi_to_pi() -> None:
    d = np.array([719, 720, 721, 1439, 1440, -720, -721, -1439, -1440, 0])
    np.testing.assert_array_equal(wrapped_dphi(d, 0), [719, -720, -719, -1, 0, -720, 719, 1, 0, 0])
    # Candidate just across +-pi from the jet axis: a small difference, not a full turn.
    assert wrapped_dphi(np.array([-718]), np.array([719]))[0] == 3


def _stage(features=("pt", "deta", "dphi", "dr2", "count"), n: int = 8) -> InputStage:
    return stage_for_random_words(n, features, 12, 3)


def test_features_are_on_the_port_grid_saturated_and_zero_for_padding() -> None:
    rng = np.random.default_rng(0)
    stage = _stage()
    words = np.concatenate([random_words(500, 8, rng), edge_case_words(8, rng)])
    x = stage.apply_words(words)
    assert x.shape == (len(words), 8, 5) and x.dtype == np.float32
    codes = x.astype(np.float64) * 2**stage.fractional_bits
    np.testing.assert_array_equal(codes, np.rint(codes))  # on the 2^-8 grid
    assert x.min() == -8 and x.max() == 8 - 2**-8  # edge cases saturate both ways
    candidates, _ = split_words(words, 8)
    padding = candidates[..., 0] == 0
    assert padding.any() and np.all(x[padding] == 0)


def test_feature_values_follow_the_definition() -> None:
    features = ("deta", "dphi", "dr2", "count", "pt")
    stage = InputStage(2, features, (1, 0, 0, 3, 4), (0, 1, 3, 0, 2), 12, 3)
    words = np.array([[40, 5, 719, 12, -7, -720, 400, 2, 718, 7]])  # 2 candidates, the jet
    raw = raw_features(*split_words(words, 2), stage.features)
    np.testing.assert_array_equal(raw[0, 0], [3, 1, 10, 7, 40])
    np.testing.assert_array_equal(raw[0, 1], [-9, 2, 85, 7, 12])  # -1438 wraps to 2
    top = 8 - 2**-8  # the port ap_fixed<12,4> saturates here
    x = stage.apply_words(words)[0]
    np.testing.assert_array_equal(x[0], [2, 0.5, 1.25, 4, top])  # pt: 9 saturates
    np.testing.assert_array_equal(x[1], [-8, 1, top, 4, 2])


def test_the_stage_is_permutation_equivariant() -> None:
    rng = np.random.default_rng(1)
    stage = _stage()
    words = random_words(200, 8, rng)
    permuted = permute_candidates(words, 8, rng)
    a, b = stage.apply_words(words), stage.apply_words(permuted)
    np.testing.assert_array_equal(np.sort(a, axis=1), np.sort(b, axis=1))


def test_fitted_shift_is_the_power_of_two_nearest_the_spread() -> None:
    rng = np.random.default_rng(2)
    words = random_words(2000, 8, rng)
    stage = fit_input_stage(*split_words(words, 8), ("pt", "deta", "count"), 12, 3)
    x = stage.apply_words(words)
    real = split_words(words, 8)[0][..., 0] > 0
    spread = x[real].std(axis=0)
    assert np.all((spread > 2**-0.5) & (spread < 2**0.5)), spread
    assert all(isinstance(c, int) for c in stage.center)


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        (0, 16384, "candidate 0 pt is 16384, outside its 14-bit word (integers 0 to 16383)"),
        (4, -2049, "candidate 1 eta is -2049, outside its 12-bit word"),
        (3 * 8 + 2, 1024, "jet phi is 1024, outside its 11-bit word"),
        (3 * 8 + 3, 256, "jet count is 256, outside its 8-bit word"),
        (2, 0.5, "candidate 0 phi is 0.5"),
    ],
)
def test_words_outside_their_range_are_refused(column: int, value: float, message: str) -> None:
    words = random_words(3, 8, np.random.default_rng(3)).astype(np.float64)
    words[1, column] = value
    with pytest.raises(TriggerError) as info:
        check_port_words(words)
    assert str(info.value).startswith(f"jet 1: {message}")


def test_a_saved_stage_round_trips_and_bad_contracts_are_named(tmp_path) -> None:
    stage = _stage()
    stage.save(tmp_path / "input_stage.json")
    assert InputStage.load(tmp_path / "input_stage.json") == stage
    (tmp_path / "bad.json").write_text('{"n_constituents": 8, "features": ["pt"]}')
    with pytest.raises(TriggerError, match=r"bad\.json: not an input-stage contract"):
        InputStage.load(tmp_path / "bad.json")
    with pytest.raises(TriggerError, match="feature 'ptrel' is not computed"):
        InputStage(8, ("ptrel",), (0,), (0,), 12, 3)


@pytest.mark.parametrize("degrees", [-89, -60, -30, -5, 0, 20, 45, 75, 90])
def test_the_principal_axis_frame_turns_a_jet_onto_the_eta_axis(degrees: int) -> None:
    """Candidates on a line through the jet axis, at any angle: in the frame they lie on eta,
    at their distances from the axis (times the frame's scale)."""
    from trigger.inputs import ROTATION_GUARD, ROTATION_STEPS, principal_axis_frame

    r = np.array([-150, -60, -30, -10, 10, 30, 60, 90])
    angle = np.radians(degrees)
    deta, dphi = np.rint(r * np.cos(angle)).astype(int), np.rint(r * np.sin(angle)).astype(int)
    pt = np.array([40, 80, 120, 200, 200, 120, 80, 40])
    etarot, phirot = principal_axis_frame(pt[None], deta[None], dphi[None])
    gain = 2**ROTATION_GUARD * np.prod(np.sqrt(1 + 4.0 ** -np.arange(ROTATION_STEPS)))
    # Within the last CORDIC step (1.8 degrees) and the rounding of the words.
    np.testing.assert_allclose(np.abs(etarot[0]) / gain, np.abs(r), atol=2)
    assert np.all(np.abs(phirot[0]) / gain <= 0.04 * np.abs(r) + 2)
    # Both ends of the line keep their order along the axis (one sign for the whole jet).
    assert len(np.unique(np.sign(etarot[0] * r))) == 1


def test_the_principal_axis_frame_is_refused_beyond_its_candidate_limit() -> None:
    from trigger.inputs import AXIS_MAX_CANDIDATES

    InputStage(AXIS_MAX_CANDIDATES, ("pt", "etarot"), (0, 0), (0, 0), 12, 3)
    with pytest.raises(TriggerError, match=r"principal-axis frame .* up to 64 candidates, not 128"):
        InputStage(128, ("pt", "etarot"), (0, 0), (0, 0), 12, 3)


def test_the_hls_input_stage_has_the_reference_constants() -> None:
    """The C++ spells out the integer constants of `trigger.inputs`; they must be the same."""
    import re
    from importlib import resources

    from trigger import inputs

    header = (resources.files("trigger.hls") / "input_stage.h").read_text()
    constants = dict(re.findall(r"static const int (\w+) = (-?\d+);", header))
    names = ["HALF_TURN", "MAX_SHIFT", "MOMENT_PT_SHIFT", "MOMENT_PT_MAX", "MOMENT_ANGLE_SHIFT"]
    names += ["MOMENT_ANGLE_MAX", "AXIS_MAX_CANDIDATES", "ANGLE_PI", "VECTORING_STEPS"]
    names += ["ROTATION_STEPS", "VECTORING_GUARD", "ROTATION_GUARD"]
    for name in names:
        assert int(constants[name]) == getattr(inputs, name), name
    table = re.search(r"ATAN_STEP\[VECTORING_STEPS\] = \{([^}]*)\}", header).group(1)
    assert tuple(int(v) for v in table.split(",")) == inputs.ATAN_STEP
    codes = re.search(r"enum feature_code \{([^}]*)\}", header).group(1)
    assert [c.split("=")[0].strip().lower() for c in codes.split(",")] == list(inputs.FEATURES)


def test_present_is_never_normalised_away() -> None:
    """Fitted on any sample, `present` keeps center 0 and shift 0: 1 for a candidate, 0 for
    padding (fitting it like the others would center it on its mean, 1, and make it 0)."""
    rng = np.random.default_rng(4)
    words = np.concatenate([random_words(300, 8, rng), edge_case_words(8, rng)])
    stage = fit_input_stage(*split_words(words, 8), ("deta", "present"), 10, 3)
    assert (stage.center[1], stage.shift[1]) == (0, 0)
    candidates, _ = split_words(words, 8)
    np.testing.assert_array_equal(stage.apply_words(words)[..., 1], candidates[..., 0] > 0)
