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

enum feature_code { PT = 0, DETA = 1, DPHI = 2, DR2 = 3, COUNT = 4 };

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

inline raw_t raw_feature(int code, pt_word_t pt, deta_t deta, dphi_t dphi, count_word_t count) {
    switch (code) {
    case PT:
        return raw_t(pt);
    case DETA:
        return raw_t(deta);
    case DPHI:
        return raw_t(dphi);
    case DR2:
        return raw_t(dr2_t(deta * deta + dphi * dphi));
    default:
        return raw_t(count);
    }
}

// N candidates in, N x N_FEATURES features out (candidate-major, as the network reads them).
template <class input_T, int N, int N_FEATURES>
void input_stage(const pt_word_t pt[N], const eta_word_t eta[N], const phi_word_t phi[N],
                 eta_word_t jet_eta, phi_word_t jet_phi, count_word_t jet_count,
                 const int feature[N_FEATURES], const int center[N_FEATURES],
                 const int shift[N_FEATURES], input_T out[N * N_FEATURES]) {
    #pragma HLS INLINE
candidates:
    for (int i = 0; i < N; i++) {
        #pragma HLS UNROLL
        deta_t deta = deta_t(eta[i]) - deta_t(jet_eta);
        dphi_t dphi = wrapped_dphi(phi[i], jet_phi);
    features:
        for (int f = 0; f < N_FEATURES; f++) {
            #pragma HLS UNROLL
            raw_t raw = raw_feature(feature[f], pt[i], deta, dphi, jet_count) - center[f];
            scaled_t scaled = raw;
            scaled = scaled >> shift[f];  // exact: shift <= MAX_SHIFT fractional bits
            out[i * N_FEATURES + f] = pt[i] == 0 ? input_T(0) : input_T(scaled);
        }
    }
}

} // namespace trigger

#endif
