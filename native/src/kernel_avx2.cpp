// AVX2 path (no VNNI): exact int32 sums without vpmaddubsw, whose int16 pair sums saturate (255 * 127 * 2 does
// not fit). The u8 activations of 4 tokens x 4 features are widened to 16 int16, multiplied by the group's 4
// weights (widened, repeated) with vpmaddwd into 8 int32 pair sums; the pairs are added once per row at the end
// (vphaddd + a lane permute puts 8 tokens in order).
// Compiled with -mavx2 -mfma; called only when the CPU reports AVX2.
#include <immintrin.h>

#include <cstring>

#include "kernel.hpp"

namespace pofa {
namespace {

// U units of 8 tokens; each unit has two accumulators (tokens 0-3 and 4-7 of the unit, as pair sums).
template <int U>
inline void row_sums(const pofa_weights& w, int32_t n, const uint8_t* base, int64_t group_stride, int32_t* out) {
    __m256i acc[U][2];
    for (int u = 0; u < U; ++u) acc[u][0] = acc[u][1] = _mm256_setzero_si256();
    for (int32_t j = w.row_ptr[n]; j < w.row_ptr[n + 1]; ++j) {
        const uint8_t* p = base + static_cast<int64_t>(w.groups[j]) * group_stride;
        const __m128i w16 = _mm_cvtepi8_epi16(_mm_cvtsi32_si128(w.values[j]));  // w0..w3 as int16
        const __m256i wv = _mm256_broadcastq_epi64(w16);
        for (int u = 0; u < U; ++u) {
            const __m256i x0 = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 32 * u)));
            const __m256i x1 =
                _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 32 * u + 16)));
            acc[u][0] = _mm256_add_epi32(acc[u][0], _mm256_madd_epi16(x0, wv));
            acc[u][1] = _mm256_add_epi32(acc[u][1], _mm256_madd_epi16(x1, wv));
        }
    }
    for (int u = 0; u < U; ++u) {
        // hadd -> tokens [0 1 4 5 | 2 3 6 7]; permute 64-bit quarters (0, 2, 1, 3) -> [0 .. 7].
        const __m256i sums = _mm256_permute4x64_epi64(_mm256_hadd_epi32(acc[u][0], acc[u][1]), 0xD8);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 8 * u), sums);
    }
}

// Tokens t0..t0+8U of the block starting at block_t0.
template <int U>
void token_block(const pofa_weights& w, const Activations& a, const Output& o, int64_t rb_begin, int64_t rb_end,
                 int64_t block_t0, int64_t t0) {
    alignas(32) int32_t tile[kRowBlock * kMaxTile];
    const int ntok = static_cast<int>(std::min<int64_t>(8 * U, a.tokens - t0));
    if (ntok <= 0) return;
    const uint8_t* base = a.x4 + block_t0 * col_groups(w.cols) * 4 + (t0 - block_t0) * 4;
    const int64_t group_stride = block_width(a.padded, block_t0) * 4;
    for (int64_t rb = rb_begin; rb < rb_end; ++rb) {
        const int32_t n0 = static_cast<int32_t>(rb * kRowBlock);
        const int nrows = std::min(kRowBlock, w.rows - n0);
        for (int r = 0; r < nrows; ++r) row_sums<U>(w, n0 + r, base, group_stride, tile + r * kMaxTile);
        store_tile_portable(tile, w.rows, n0, nrows, t0, ntok, o);
    }
}

void compute(const pofa_weights& w, const PreparedWeights* /*unused: K-group form*/, const Activations& a,
             const Output& o, int64_t rb_begin, int64_t rb_end) {
    for (int64_t b0 = 0; b0 < a.padded; b0 += kMaxTile) {
        const int64_t end = b0 + block_width(a.padded, b0);
        int64_t t0 = b0;
        for (; t0 + 32 <= end; t0 += 32) token_block<4>(w, a, o, rb_begin, rb_end, b0, t0);
        if (end - t0 == 16) token_block<2>(w, a, o, rb_begin, rb_end, b0, t0);
    }
}

}  // namespace

const Kernel& kernel_avx2() {
    static const Kernel k{packed_bytes, pack_u8_portable, quantize_pack_portable, nullptr, group_layout_offset,
                          compute};
    return k;
}

}  // namespace pofa
