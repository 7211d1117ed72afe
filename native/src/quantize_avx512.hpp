// Quantizing 16 floats as ONNX QuantizeLinear does, for the AVX-512 paths (include only from files compiled
// with -mavx512f -mavx512bw -mavx512vl). x / scale is computed as x * (1 / scale), which is several times cheaper
// than a division; the two can round to different integers only when x / scale lies within a few ulp of a half
// integer, so those (rare) lanes are recomputed with the exact division, keeping the result bit-exact.
#pragma once

#include <immintrin.h>

#include <cstdint>

namespace pofa {

constexpr __mmask16 kAllLanes = 0xFFFF;

struct Quantizer16 {
    __m512 scale, inverse, near_half, bound;
    __m512i zero_point, lo, hi;

    Quantizer16(float s, int32_t zp)
        : scale(_mm512_set1_ps(s)),
          inverse(_mm512_set1_ps(1.0f / s)),
          // A lane whose product lies this close to a half integer is redone exactly. The product's error is
          // ~2^-23 relative, below 2^-10 while |x / scale| < 2^12; past that the result saturates either way.
          near_half(_mm512_set1_ps(0.5f - 1.0f / (1 << 10))),
          bound(_mm512_set1_ps(1 << 20)),  // |q| clamped below int32's range before the conversion
          zero_point(_mm512_set1_epi32(zp)),
          lo(_mm512_setzero_si512()),
          hi(_mm512_set1_epi32(255)) {}

    // The 16 lanes of `x` in `mask` as clamped u8 values in int32 lanes (the others 0).
    __m512i operator()(__m512 x, __mmask16 mask) const {
        const __m512 q = _mm512_mul_ps(x, inverse);
        __m512 r = _mm512_roundscale_ps(q, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);  // half to even
        const __mmask16 near = _mm512_mask_cmp_ps_mask(mask, _mm512_abs_ps(_mm512_sub_ps(q, r)), near_half,
                                                       _CMP_GE_OQ);
        if (near != 0) {
            r = _mm512_mask_roundscale_ps(r, near, _mm512_div_ps(x, scale),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        }
        r = _mm512_min_ps(_mm512_max_ps(r, _mm512_sub_ps(_mm512_setzero_ps(), bound)), bound);
        const __m512i rounded = _mm512_add_epi32(_mm512_cvtps_epi32(r), zero_point);
        return _mm512_maskz_mov_epi32(mask, _mm512_min_epi32(_mm512_max_epi32(rounded, lo), hi));
    }

    // The same without redoing the near-ties exactly: for a layer's own results (the epilogue's u8 output),
    // which are float-rounded already, so a tie's exact rounding would not make them any closer to the QDQ graph.
    __m512i approximate(__m512 x, __mmask16 mask) const {
        const __m512i rounded = _mm512_add_epi32(
            _mm512_cvt_roundps_epi32(_mm512_mul_ps(x, inverse), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC),
            zero_point);
        return _mm512_maskz_mov_epi32(mask, _mm512_min_epi32(_mm512_max_epi32(rounded, lo), hi));
    }
};

// 16 inputs (the lanes in `mask`; the others 0) as u8: f32 ones quantized, u8 ones as they are.
inline __m128i quantized16(const Quantizer16& quantize, const float* p, __mmask16 mask) {
    return _mm512_cvtepi32_epi8(quantize(_mm512_maskz_loadu_ps(mask, p), mask));
}
inline __m128i quantized16(const Quantizer16& /*unused*/, const uint8_t* p, __mmask16 mask) {
    return _mm_maskz_loadu_epi8(mask, p);
}

}  // namespace pofa
