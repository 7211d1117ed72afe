// A 16 x 16 transpose of 4-byte elements in registers, for the AVX-512 paths (include only from files compiled
// with -mavx512f): the K-group packing (tokens x groups -> groups x tokens) and the epilogue's transposed outputs
// (tokens x outputs -> outputs x tokens).
#pragma once

#include <immintrin.h>

namespace pofa {

// r[i][j] -> r[j][i] for 16 registers of 16 dwords: a 16 x 16 transpose of 4-byte elements in 48 shuffles.
inline void transpose16(__m512i r[16]) {
    __m512i a[16], b[16];
    for (int i = 0; i < 8; ++i) {  // within 128-bit lanes: token pairs interleaved
        a[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
        a[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 4; ++i) {  // b[4i + d], lane L: tokens 4i..4i+3 of dword 4L + d
        b[4 * i] = _mm512_unpacklo_epi64(a[4 * i], a[4 * i + 2]);
        b[4 * i + 1] = _mm512_unpackhi_epi64(a[4 * i], a[4 * i + 2]);
        b[4 * i + 2] = _mm512_unpacklo_epi64(a[4 * i + 1], a[4 * i + 3]);
        b[4 * i + 3] = _mm512_unpackhi_epi64(a[4 * i + 1], a[4 * i + 3]);
    }
    for (int d = 0; d < 4; ++d) {  // dword 4L + d, lane M = b[4M + d] lane L: a 4 x 4 transpose of lanes
        const __m512i c0 = _mm512_shuffle_i32x4(b[d], b[4 + d], 0x44), c1 = _mm512_shuffle_i32x4(b[d], b[4 + d], 0xEE);
        const __m512i c2 = _mm512_shuffle_i32x4(b[8 + d], b[12 + d], 0x44);
        const __m512i c3 = _mm512_shuffle_i32x4(b[8 + d], b[12 + d], 0xEE);
        r[d] = _mm512_shuffle_i32x4(c0, c2, 0x88);
        r[4 + d] = _mm512_shuffle_i32x4(c0, c2, 0xDD);
        r[8 + d] = _mm512_shuffle_i32x4(c1, c3, 0x88);
        r[12 + d] = _mm512_shuffle_i32x4(c1, c3, 0xDD);
    }
}

}  // namespace pofa
