// The AVX-512 paths' epilogue (include only from files compiled with -mavx512f -mavx512bw -mavx512vl), for tiles
// computed outputs-by-tokens (the K-group VNNI path: 16 output rows x up to 64 tokens) or tokens-by-outputs (the
// blocks form and AMX's C tiles: tokens x 16 outputs).
#pragma once

#include <immintrin.h>

#include <algorithm>

#include "gelu_avx512.hpp"
#include "kernel.hpp"
#include "quantize_avx512.hpp"
#include "transpose_avx512.hpp"

namespace pofa {

// o's quantizer for a u8 output; for the others a constant one (no division per call on the epilogue's path).
inline Quantizer16 output_quantizer(const Output& o) {
    return o.u8 != nullptr ? Quantizer16(o.out_scale, o.out_zero_point) : Quantizer16(1.0f, 0);
}

// The 16 lanes of y in `mask` to o's f32 or u8 output at `index` (u8: through `quantize`, o's quantizer).
inline void store16(const Output& o, const Quantizer16& quantize, int64_t index, __mmask16 mask, __m512 y) {
    if (o.u8 != nullptr) {
        const __m128i bytes = _mm512_cvtepi32_epi8(quantize.approximate(y, mask));
        if (mask == kAllLanes) {  // a plain store: a masked vpmovdb to memory is several times slower
            _mm_storeu_si128(reinterpret_cast<__m128i*>(o.u8 + index), bytes);
        } else {
            _mm_mask_storeu_epi8(o.u8 + index, mask, bytes);
        }
    } else {
        _mm512_mask_storeu_ps(o.f32 + index, mask, y);
    }
}

// A transposed output (o.seq > 0, f32): y[t] = the 16 outputs n0.. (nrows of them) of token t0 + t, for
// t < ntok <= 16. Within one sequence each output's tokens are consecutive there: transposed in registers, one
// store per output.
inline void store_transposed(const Output& o, const __m512* y, int32_t rows, int32_t n0, int nrows, int64_t t0,
                             int ntok) {
    const int64_t first = o.token0 + t0;
    if (first % o.seq + ntok <= o.seq) {
        __m512i r[16];
        for (int i = 0; i < 16; ++i) r[i] = i < ntok ? _mm512_castps_si512(y[i]) : _mm512_setzero_si512();
        transpose16(r);
        const __mmask16 tokens = static_cast<__mmask16>((1u << ntok) - 1u);
        float* at = o.f32 + output_index(o, t0, n0, rows);
        for (int n = 0; n < nrows; ++n) _mm512_mask_storeu_ps(at + n * o.seq, tokens, _mm512_castsi512_ps(r[n]));
        return;
    }
    alignas(64) float v[16];  // the chunk crosses sequences: element by element
    for (int t = 0; t < ntok; ++t) {
        _mm512_store_ps(v, y[t]);
        for (int n = 0; n < nrows; ++n) o.f32[output_index(o, t0 + t, n0 + n, rows)] = v[n];
    }
}

// o's epilogue constants for its 16 outputs n0.. (nrows of them, the lanes of `mask`): scale, offset and the u8
// quantizer, set up once per block of outputs and used for all its tokens.
struct RowEpilogue {
    RowEpilogue(const Output& o, int32_t n0, int rows_here)
        : nrows(rows_here),
          mask(static_cast<__mmask16>((1u << rows_here) - 1u)),
          mult(o.mult != nullptr ? _mm512_maskz_loadu_ps(mask, o.mult + n0) : _mm512_setzero_ps()),
          offset(o.mult != nullptr ? _mm512_maskz_loadu_ps(mask, o.offset + n0) : _mm512_setzero_ps()),
          quantize(output_quantizer(o)) {}
    int nrows;
    __mmask16 mask;
    __m512 mult;
    __m512 offset;
    Quantizer16 quantize;
};

// Tokens t0..t0+count-1 (count <= 16), sums(t) giving token t0 + t's int32 sums of outputs n0.., into the
// output: as they are (s32), or scaled, offset, activated and stored as f32 / u8, per-head or transposed. (`sums`
// reads them where they are: copying a C tile's rows into an array first cost 3% of BERT-base b1 with AMX.)
template <typename Sums>
inline void store_tokens(const Sums& sums, int count, const Output& o, const RowEpilogue& e, int32_t rows,
                         int32_t n0, int64_t t0) {
    if (o.mult == nullptr) {
        for (int t = 0; t < count; ++t) {
            _mm512_mask_storeu_epi32(o.s32 + output_index(o, t0 + t, n0, rows), e.mask, sums(t));
        }
        return;
    }
    const TokenRun run = o.seq == 0 ? token_run(o, t0, count, n0, rows) : TokenRun{-1, 0};
    __m512 y[16];
    for (int t = 0; t < count; ++t) {
        y[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums(t)), e.mult, e.offset);
        if (o.activation == POFA_ACT_GELU) y[t] = gelu16(y[t]);
        if (o.seq == 0) store16(o, e.quantize, run_index(o, run, t0, t, n0, rows), e.mask, y[t]);
    }
    if (o.seq > 0) store_transposed(o, y, rows, n0, e.nrows, t0, count);
}

// The tile (16 rows x ntok tokens, row stride kMaxTile) into the output, 16 tokens at a time: their 16 rows are
// loaded and transposed in registers (transpose16), so each token's 16 outputs are one vector. (A gather per token
// did the same with 16 loads each: the epilogue was 10% of BERT-base's time without AMX, measured.)
inline void store_tile_avx512(const int32_t* tile, int32_t rows, int32_t n0, int nrows, int64_t t0, int ntok,
                              const Output& o) {
    const RowEpilogue epilogue(o, n0, nrows);
    for (int c0 = 0; c0 < ntok; c0 += 16) {
        __m512i r[16];
        for (int n = 0; n < 16; ++n) {
            r[n] = n < nrows ? _mm512_load_si512(tile + n * kMaxTile + c0) : _mm512_setzero_si512();
        }
        transpose16(r);  // r[t]: token c0 + t's 16 rows
        store_tokens([&r](int t) { return r[t]; }, std::min(16, ntok - c0), o, epilogue, rows, n0, t0 + c0);
    }
}

// c[t][16] (16 outputs n0.. of tokens t0..t0+ntok <= 16, row stride 16 int32) into the output.
inline void store_rows_avx512(const int32_t* c, const Output& o, int32_t rows, int32_t n0, int64_t t0, int ntok) {
    const auto sums = [c](int t) { return _mm512_load_si512(c + 16 * t); };
    store_tokens(sums, ntok, o, RowEpilogue(o, n0, std::min(16, rows - n0)), rows, n0, t0);
}

}  // namespace pofa
