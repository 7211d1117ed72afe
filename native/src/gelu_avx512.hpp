// GELU (the erf form, as BERT's FFN uses: 0.5 x (1 + erf(x / sqrt 2))) on 16 floats, for the AVX-512 paths'
// epilogues (include only from files compiled with -mavx512f). erf is the rational approximation of Eigen/XLA's
// fast erf (odd degree-13 numerator over even degree-8 denominator on [-4, 4], +-1 beyond): within 4.2e-7 of the
// exact erf in float (checked over [-6, 6]), as close as OpenVINO's own GELU kernels are.
#pragma once

#include <immintrin.h>

namespace pofa {

inline __m512 erf16(__m512 a) {
    const __m512 x = _mm512_max_ps(_mm512_min_ps(a, _mm512_set1_ps(4.0f)), _mm512_set1_ps(-4.0f));
    const __m512 x2 = _mm512_mul_ps(x, x);
    __m512 p = _mm512_fmadd_ps(x2, _mm512_set1_ps(-2.72614225801306e-10f), _mm512_set1_ps(2.77068142495902e-08f));
    p = _mm512_fmadd_ps(x2, p, _mm512_set1_ps(-2.10102402082508e-06f));
    p = _mm512_fmadd_ps(x2, p, _mm512_set1_ps(-5.69250639462346e-05f));
    p = _mm512_fmadd_ps(x2, p, _mm512_set1_ps(-7.34990630326855e-04f));
    p = _mm512_fmadd_ps(x2, p, _mm512_set1_ps(-2.95459980854025e-03f));
    p = _mm512_fmadd_ps(x2, p, _mm512_set1_ps(-1.60960333262415e-02f));
    p = _mm512_mul_ps(x, p);
    __m512 q = _mm512_fmadd_ps(x2, _mm512_set1_ps(-1.45660718464996e-05f), _mm512_set1_ps(-2.13374055278905e-04f));
    q = _mm512_fmadd_ps(x2, q, _mm512_set1_ps(-1.68282697438203e-03f));
    q = _mm512_fmadd_ps(x2, q, _mm512_set1_ps(-7.37332916720468e-03f));
    q = _mm512_fmadd_ps(x2, q, _mm512_set1_ps(-1.42647390514189e-02f));
    // p / q as p * (1 / q), the reciprocal from rcp14 (14 bits) refined by one Newton step (~28 bits, below
    // float's 24): several times cheaper than a division, which made GELU the most of the FFN epilogue.
    __m512 r = _mm512_rcp14_ps(q);
    r = _mm512_mul_ps(r, _mm512_fnmadd_ps(q, r, _mm512_set1_ps(2.0f)));
    return _mm512_mul_ps(p, r);
}

inline __m512 gelu16(__m512 y) {
    const __m512 e = erf16(_mm512_mul_ps(y, _mm512_set1_ps(0.70710678118654752f)));
    return _mm512_mul_ps(_mm512_mul_ps(y, _mm512_set1_ps(0.5f)), _mm512_add_ps(e, _mm512_set1_ps(1.0f)));
}

}  // namespace pofa
