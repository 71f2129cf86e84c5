// The tagger's input stage: Level-1 candidate and jet words -> the network's input features.
//
// Copied into every emitted project by trigger (firmware/input_stage.h); the constants of one
// tagger (N, its features, their centers and shifts) are in firmware/input_stage_params.h.
// The Python reference is trigger/inputs.py: the same integer arithmetic, bit for bit.
//
//   pt    = candidate pT word                     (unsigned, LSB 0.25 GeV)
//   deta  = eta - jet eta                         (LSB pi/720)
//   dphi  = phi - jet phi, wrapped into [-720, 720)
//   dr2   = deta^2 + dphi^2
//   count = the jet's candidate count
//   present = 1 (center 0, shift 0: 1 for a candidate, 0 for padding)
//   etarot, phirot = (deta, dphi) in the jet's principal-axis frame: CORDIC on the pT-weighted
//            second moments finds the axis angle, CORDIC rotates every candidate by it
//   feature = (raw - CENTER) * 2^-SHIFT, rounded half to even and saturated by input_t
//             (AP_RND_CONV, AP_SAT); every feature of a padding candidate (pT word 0) is 0.
#ifndef TRIGGER_INPUT_STAGE_H_
#define TRIGGER_INPUT_STAGE_H_

#include "ap_fixed.h"
#include "ap_int.h"

namespace trigger {

typedef ap_uint<14> pt_word_t;
typedef ap_int<12> eta_word_t;
typedef ap_int<11> phi_word_t;
typedef ap_uint<8> count_word_t;

enum feature_code { PT = 0, DETA = 1, DPHI = 2, DR2 = 3, COUNT = 4, ETAROT = 5, PHIROT = 6, PRESENT = 7 };

static const int HALF_TURN = 720;  // pi in angle words
static const int MAX_SHIFT = 16;   // fractional bits kept before input_t rounds

// Widths hold every value the words allow: eta differences need 13 bits, phi differences 12
// (wrapped: [-720, 720) for angles within +-pi), deltaR^2 at most 4095^2 + 2047^2 < 2^25.
typedef ap_int<13> deta_t;
typedef ap_int<12> dphi_t;
typedef ap_uint<25> dr2_t;
typedef ap_int<32> raw_t;
typedef ap_fixed<32 + MAX_SHIFT, 32> scaled_t;

inline dphi_t wrapped_dphi(phi_word_t phi, phi_word_t jet_phi) {
    dphi_t d = dphi_t(phi) - dphi_t(jet_phi);
    if (d >= HALF_TURN) {
        d -= 2 * HALF_TURN;
    } else if (d < -HALF_TURN) {
        d += 2 * HALF_TURN;
    }
    return d;
}

// The principal-axis frame (constants as in trigger/inputs.py).
static const int MOMENT_PT_SHIFT = 2;
static const int MOMENT_PT_MAX = 255;
static const int MOMENT_ANGLE_SHIFT = 2;
static const int MOMENT_ANGLE_MAX = 63;
static const int AXIS_MAX_CANDIDATES = 64;
static const int ANGLE_PI = 4096;
static const int VECTORING_STEPS = 8;
static const int ROTATION_STEPS = 6;
static const int VECTORING_GUARD = 2;
static const int ROTATION_GUARD = 2;
static const int ATAN_STEP[VECTORING_STEPS] = {1024, 605, 319, 162, 81, 41, 20, 10};

// Moments of up to 64 candidates: |w e f| <= 2^20, so |Sxx - Syy| <= 2^26 and |2 Sxy| <= 2^27;
// the vectoring adds its guard bits and a gain below 2.4: within 32 bits.
typedef ap_uint<8> weight_t;
typedef ap_int<7> moment_angle_t;
typedef ap_int<29> moment_t;
typedef ap_int<32> vector_t;
typedef ap_int<14> axis_angle_t;
typedef ap_int<18> rotated_t;  // 13-bit deta << ROTATION_GUARD, times a gain below 2.4

inline moment_angle_t moment_angle(ap_int<13> d) {
    ap_int<13> coarse = d >> MOMENT_ANGLE_SHIFT;
    if (coarse > MOMENT_ANGLE_MAX) return MOMENT_ANGLE_MAX;
    if (coarse < -MOMENT_ANGLE_MAX - 1) return -MOMENT_ANGLE_MAX - 1;
    return coarse;
}

// Which way each rotation step turns the candidates (true: by -atan(2^-i)).
template <int N>
void axis_directions(const pt_word_t pt[N], const deta_t deta[N], const dphi_t dphi[N],
                     bool positive[ROTATION_STEPS]) {
    #pragma HLS INLINE
    moment_t a = 0, b = 0;
moments:
    for (int i = 0; i < N; i++) {
        #pragma HLS UNROLL
        ap_uint<12> coarse_pt = pt[i] >> MOMENT_PT_SHIFT;
        weight_t w = coarse_pt > MOMENT_PT_MAX ? weight_t(MOMENT_PT_MAX) : weight_t(coarse_pt);
        moment_angle_t e = moment_angle(deta[i]), f = moment_angle(dphi[i]);
        ap_int<16> we = w * e, wf = w * f;
        a += we * e - wf * f;
        b += 2 * (we * f);
    }
    // CORDIC vectoring: z -> atan2(b, a), starting a quarter turn ahead left of the y axis.
    vector_t x, y;
    axis_angle_t z;
    vector_t ga = vector_t(a) << VECTORING_GUARD, gb = vector_t(b) << VECTORING_GUARD;
    if (ga < 0) {
        x = gb >= 0 ? vector_t(gb) : vector_t(-gb);
        y = gb >= 0 ? vector_t(-ga) : vector_t(ga);
        z = gb >= 0 ? ANGLE_PI / 2 : -ANGLE_PI / 2;
    } else {
        x = ga;
        y = gb;
        z = 0;
    }
vectoring:
    for (int i = 0; i < VECTORING_STEPS; i++) {
        #pragma HLS UNROLL
        vector_t dx = y >> i, dy = x >> i;
        if (y >= 0) {
            x += dx;
            y -= dy;
            z += ATAN_STEP[i];
        } else {
            x -= dx;
            y += dy;
            z -= ATAN_STEP[i];
        }
    }
    axis_angle_t theta = z >> 1;
rotation:
    for (int i = 0; i < ROTATION_STEPS; i++) {
        #pragma HLS UNROLL
        positive[i] = theta >= 0;
        theta = positive[i] ? axis_angle_t(theta - ATAN_STEP[i]) : axis_angle_t(theta + ATAN_STEP[i]);
    }
}

inline void rotate(deta_t deta, dphi_t dphi, const bool positive[ROTATION_STEPS],
                   rotated_t &etarot, rotated_t &phirot) {
    rotated_t x = rotated_t(deta) << ROTATION_GUARD, y = rotated_t(dphi) << ROTATION_GUARD;
steps:
    for (int i = 0; i < ROTATION_STEPS; i++) {
        #pragma HLS UNROLL
        rotated_t dx = y >> i, dy = x >> i;
        x = positive[i] ? rotated_t(x + dx) : rotated_t(x - dx);
        y = positive[i] ? rotated_t(y - dy) : rotated_t(y + dy);
    }
    etarot = x;
    phirot = y;
}

inline raw_t raw_feature(int code, pt_word_t pt, deta_t deta, dphi_t dphi, count_word_t count,
                         rotated_t etarot, rotated_t phirot) {
    switch (code) {
    case PT:
        return raw_t(pt);
    case DETA:
        return raw_t(deta);
    case DPHI:
        return raw_t(dphi);
    case DR2:
        return raw_t(dr2_t(deta * deta + dphi * dphi));
    case COUNT:
        return raw_t(count);
    case ETAROT:
        return raw_t(etarot);
    case PHIROT:
        return raw_t(phirot);
    default:  // PRESENT: 1 for a candidate (padding is zeroed after normalisation)
        return raw_t(1);
    }
}

// N candidates in, N x N_FEATURES features out (candidate-major, as the network reads them).
template <class input_T, int N, int N_FEATURES>
void input_stage(const pt_word_t pt[N], const eta_word_t eta[N], const phi_word_t phi[N],
                 eta_word_t jet_eta, phi_word_t jet_phi, count_word_t jet_count,
                 const int feature[N_FEATURES], const int center[N_FEATURES],
                 const int shift[N_FEATURES], input_T out[N * N_FEATURES]) {
    #pragma HLS INLINE
    deta_t deta[N];
    dphi_t dphi[N];
    #pragma HLS ARRAY_PARTITION variable=deta complete dim=0
    #pragma HLS ARRAY_PARTITION variable=dphi complete dim=0
relative:
    for (int i = 0; i < N; i++) {
        #pragma HLS UNROLL
        deta[i] = deta_t(eta[i]) - deta_t(jet_eta);
        dphi[i] = wrapped_dphi(phi[i], jet_phi);
    }
    bool uses_axis = false;
    for (int f = 0; f < N_FEATURES; f++) {
        #pragma HLS UNROLL
        uses_axis = uses_axis || feature[f] == ETAROT || feature[f] == PHIROT;
    }
    bool positive[ROTATION_STEPS] = {};
    #pragma HLS ARRAY_PARTITION variable=positive complete dim=0
    if (uses_axis) axis_directions<N>(pt, deta, dphi, positive);
candidates:
    for (int i = 0; i < N; i++) {
        #pragma HLS UNROLL
        rotated_t etarot = 0, phirot = 0;
        if (uses_axis) rotate(deta[i], dphi[i], positive, etarot, phirot);
    features:
        for (int f = 0; f < N_FEATURES; f++) {
            #pragma HLS UNROLL
            raw_t raw = raw_feature(feature[f], pt[i], deta[i], dphi[i], jet_count, etarot,
                                    phirot) - center[f];
            scaled_t scaled = raw;
            scaled = scaled >> shift[f];  // exact: shift <= MAX_SHIFT fractional bits
            out[i * N_FEATURES + f] = pt[i] == 0 ? input_T(0) : input_T(scaled);
        }
    }
}

} // namespace trigger

#endif
