// AVX-512 VNNI path: lanes are tokens. For one output row and one non-empty group, a single vpdpbusd multiplies
// the group's 4 int8 weights (broadcast) by the 4 u8 activations of 16 tokens and adds them into 16 int32 sums,
// exactly (no saturation). A row keeps 2R independent accumulators (R = 16-token vectors, two groups in flight)
// so the loop is bound by loads and multiply-adds, not by the instruction's latency.
//
// Blocks form (block-sparse weights, see kernel.hpp): lanes are the 16 outputs of a block. For each group the
// block keeps, one 64-byte load holds its 16 rows' 4 weights, and per token one vpdpbusd multiplies it by that
// token's 4 activations (broadcast): one load per multiply-add instead of two (the rows form loads the
// activations and broadcasts a weight for each), and the sums come out as the output's own rows, so the
// epilogue stores 16 outputs of a token at once instead of transposing.
// Compiled with -mavx512f -mavx512bw -mavx512vl -mavx512vnni; called only when the CPU reports them.
#include <immintrin.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "kernel.hpp"
#include "gelu_avx512.hpp"
#include "quantize_avx512.hpp"
#include "store_avx512.hpp"

namespace pofa {
namespace {

// Groups [j, end) of one row (its non-empty groups in one K chunk) added into the row's R sums in `out`
// (16 tokens each; zero-started when `first`).
template <int R>
inline void row_sums(const pofa_weights& w, int32_t j, const int32_t end, const uint8_t* base, int64_t group_stride,
                     int32_t* out, bool first) {
    __m512i acc[2][R];
    for (int i = 0; i < R; ++i) {
        acc[0][i] = first ? _mm512_setzero_si512() : _mm512_load_si512(out + 16 * i);
        acc[1][i] = _mm512_setzero_si512();
    }
    for (; j + 1 < end; j += 2) {
        const uint8_t* p0 = base + static_cast<int64_t>(w.groups[j]) * group_stride;
        const uint8_t* p1 = base + static_cast<int64_t>(w.groups[j + 1]) * group_stride;
        const __m512i w0 = _mm512_set1_epi32(w.values[j]);
        const __m512i w1 = _mm512_set1_epi32(w.values[j + 1]);
        for (int i = 0; i < R; ++i) {
            acc[0][i] = _mm512_dpbusd_epi32(acc[0][i], _mm512_loadu_si512(p0 + 64 * i), w0);
            acc[1][i] = _mm512_dpbusd_epi32(acc[1][i], _mm512_loadu_si512(p1 + 64 * i), w1);
        }
    }
    if (j < end) {
        const uint8_t* p0 = base + static_cast<int64_t>(w.groups[j]) * group_stride;
        const __m512i w0 = _mm512_set1_epi32(w.values[j]);
        for (int i = 0; i < R; ++i) acc[0][i] = _mm512_dpbusd_epi32(acc[0][i], _mm512_loadu_si512(p0 + 64 * i), w0);
    }
    for (int i = 0; i < R; ++i) _mm512_store_si512(out + 16 * i, _mm512_add_epi32(acc[0][i], acc[1][i]));
}

// The end of a row's groups below group g1 (its groups in the current K chunk), from `end` (the first of them) and
// before `row_end`: 32 group numbers compared at once. (Measured, one thread, 90% unstructured at 128 tokens: the
// scalar scan, one compare-and-branch per group, was a quarter of the kernel's time; this is 1.13-1.26x faster
// per layer.) Group numbers ascend within a row, so the ones below g1 are a prefix of each 32.
inline int32_t chunk_end(const uint16_t* groups, int32_t end, int32_t row_end, int32_t g1) {
    if (g1 > 65535) return row_end;  // past every uint16 group number
    const __m512i limit = _mm512_set1_epi16(static_cast<int16_t>(static_cast<uint16_t>(g1)));
    while (end < row_end) {
        const int32_t left = row_end - end;
        const __mmask32 lanes = left >= 32 ? ~__mmask32{0} : static_cast<__mmask32>((1u << left) - 1u);
        const __m512i g = _mm512_maskz_loadu_epi16(lanes, groups + end);  // no read past the row's last group
        const int below = __builtin_popcount(_mm512_mask_cmplt_epu16_mask(lanes, g, limit));
        end += below;
        if (below < 32) break;
    }
    return end;
}

// Prefetches two byte ranges into L1 a few cache lines at a time: the next row block's groups and values while
// this one runs.
// In a whole model a layer's weights come from L3 or memory, and a row block reads its 16 rows' groups as 16
// separate streams, chunk by chunk, which the hardware prefetcher does not follow.
class LinePrefetcher {
public:
    LinePrefetcher() = default;
    // Two ranges, fetched one after the other.
    LinePrefetcher(const void* a, const void* a_end, const void* b, const void* b_end)
        : at_(static_cast<const char*>(a)),
          end_(static_cast<const char*>(a_end)),
          next_(static_cast<const char*>(b)),
          next_end_(static_cast<const char*>(b_end)) {}
    size_t lines() const { return static_cast<size_t>((end_ - at_ + 63) / 64 + (next_end_ - next_ + 63) / 64); }
    void step(size_t lines) {
        for (; lines > 0; --lines) {
            if (at_ >= end_) {
                if (next_ >= next_end_) return;
                at_ = next_;
                end_ = next_end_;
                next_ = next_end_;
            }
            _mm_prefetch(at_, _MM_HINT_T0);
            at_ += 64;
        }
    }

private:
    const char* at_ = nullptr;
    const char* end_ = nullptr;
    const char* next_ = nullptr;
    const char* next_end_ = nullptr;
};

// `prefetch`: fetch each next row block's weights ahead; for the first token block of a call only, as later ones
// find the layer's weights in L2, where prefetches only cost (measured, idle A/B, BERT-base unstructured without
// AMX: +5.5% at batch 1, +2% at batch 8; prefetching for every block: -2.5% at batch 8).
template <int R>
void token_block(const pofa_weights& w, const Activations& a, const Output& o, int64_t rb_begin, int64_t rb_end,
                 int64_t t0, bool prefetch) {
    alignas(64) int32_t tile[kRowBlock * kMaxTile];
    const int ntok = static_cast<int>(std::min<int64_t>(16 * R, a.tokens - t0));
    const uint8_t* base = a.x4 + t0 * col_groups(w.cols) * 4;  // the block's own [groups][16R][4] bytes
    const int64_t group_stride = 16 * R * 4;
    const int32_t groups = col_groups(w.cols);
    const int32_t chunk = static_cast<int32_t>(std::max<int64_t>(1, kChunkBytes / group_stride));
    int32_t cursor[kRowBlock];
    for (int64_t rb = rb_begin; rb < rb_end; ++rb) {
        const int32_t n0 = static_cast<int32_t>(rb * kRowBlock);
        const int nrows = std::min(kRowBlock, w.rows - n0);
        for (int r = 0; r < nrows; ++r) cursor[r] = w.row_ptr[n0 + r];
        LinePrefetcher ahead;  // the next row block's groups and values, spread over this block's rows and chunks
        if (prefetch && rb + 1 < rb_end) {
            const int32_t first = w.row_ptr[n0 + nrows], last = w.row_ptr[std::min(w.rows, n0 + 2 * kRowBlock)];
            ahead = LinePrefetcher(w.groups + first, w.groups + last, w.values + first, w.values + last);
        }
        const int32_t steps = nrows * ((groups + chunk - 1) / chunk);
        const size_t per_step = (ahead.lines() + static_cast<size_t>(steps) - 1) / static_cast<size_t>(steps);
        for (int32_t g0 = 0; g0 < groups; g0 += chunk) {
            const int32_t g1 = g0 + chunk;
            for (int r = 0; r < nrows; ++r) {
                ahead.step(per_step);
                const int32_t row_end = w.row_ptr[n0 + r + 1];
                const int32_t end = chunk_end(w.groups, cursor[r], row_end, g1);
                row_sums<R>(w, cursor[r], end, base, group_stride, tile + r * kMaxTile, g0 == 0);
                cursor[r] = end;
            }
        }
        store_tile_avx512(tile, w.rows, n0, nrows, t0, ntok, o);
    }
}

struct BlockWeights : PreparedWeights {
    std::vector<int32_t> start;    // [row blocks + 1] into groups / values
    std::vector<uint16_t> groups;  // each block's non-empty groups, ascending
    std::vector<int32_t> values;   // per kept group, 16 ints: its 4 weights in each of the block's 16 rows (0: none)
};

}  // namespace

std::unique_ptr<PreparedWeights> prepare_blocks_avx512(const pofa_weights& w) {
    auto found = block_groups(w);
    if (!blocks_form_pays(found, w)) return nullptr;  // the rows form: pofa_weights as they are
    auto p = std::make_unique<BlockWeights>();
    p->start.push_back(0);
    for (const auto& g : found) {
        p->groups.insert(p->groups.end(), g.begin(), g.end());
        p->start.push_back(static_cast<int32_t>(p->groups.size()));
    }
    p->values.assign(p->groups.size() * kRowBlock, 0);
    std::vector<int32_t> slot(static_cast<size_t>(col_groups(w.cols)));
    for (size_t nb = 0; nb < found.size(); ++nb) {
        const int32_t first = p->start[nb];
        for (int32_t i = first; i < p->start[nb + 1]; ++i) slot[p->groups[static_cast<size_t>(i)]] = i;
        for (int r = 0; r < kRowBlock && static_cast<int32_t>(nb) * kRowBlock + r < w.rows; ++r) {
            const int32_t row = static_cast<int32_t>(nb) * kRowBlock + r;
            for (int32_t j = w.row_ptr[row]; j < w.row_ptr[row + 1]; ++j) {
                p->values[static_cast<size_t>(slot[w.groups[j]]) * kRowBlock + static_cast<size_t>(r)] = w.values[j];
            }
        }
    }
    return p;
}

bool is_blocks_form(const PreparedWeights& form) { return dynamic_cast<const BlockWeights*>(&form) != nullptr; }

namespace {

// 16 tokens (from `x`: each kept group's 16 tokens x 4 bytes, `row` bytes apart) x one block's 16 outputs.
// The sums stay in 16 registers for the whole loop (a local array, fully unrolled: passed in by pointer, the
// compiler kept spilling them), then go to `out` [token][output] for the epilogue.
void block_tokens(const BlockWeights& p, int32_t first, int32_t end, const uint8_t* x, int64_t row, int32_t* out) {
    __m512i acc[16];
#pragma GCC unroll 16
    for (int t = 0; t < 16; ++t) acc[t] = _mm512_setzero_si512();
    const int32_t* values = p.values.data();
    const uint16_t* kept = p.groups.data();
    for (int32_t i = first; i < end; ++i) {
        const __m512i weights = _mm512_loadu_si512(values + static_cast<int64_t>(i) * kRowBlock);
        const auto* xa = reinterpret_cast<const int32_t*>(x + static_cast<int64_t>(kept[i]) * row);
#pragma GCC unroll 16
        for (int t = 0; t < 16; ++t) acc[t] = _mm512_dpbusd_epi32(acc[t], _mm512_set1_epi32(xa[t]), weights);
    }
#pragma GCC unroll 16
    for (int t = 0; t < 16; ++t) _mm512_store_si512(out + 16 * t, acc[t]);
}

void compute_blocks(const pofa_weights& w, const BlockWeights& p, const Activations& a, const Output& o,
                    int64_t rb_begin, int64_t rb_end) {
    const int32_t groups = col_groups(w.cols);
    alignas(64) int32_t sums[16 * 16];
    for (int64_t t0 = 0; t0 < a.padded; t0 += kMaxTile) {
        const int64_t width = block_width(a.padded, t0);
        const uint8_t* base = a.x4 + t0 * groups * 4;
        const int64_t ntok = std::min<int64_t>(width, a.tokens - t0);
        for (int64_t nb = rb_begin; nb < rb_end; ++nb) {
            const auto n0 = static_cast<int32_t>(nb * kRowBlock);
            const int32_t first = p.start[static_cast<size_t>(nb)], end = p.start[static_cast<size_t>(nb) + 1];
            for (int64_t tc = 0; tc < ntok; tc += 16) {
                block_tokens(p, first, end, base + tc * 4, width * 4, sums);
                const int count = static_cast<int>(std::min<int64_t>(16, ntok - tc));
                store_rows_avx512(sums, o, w.rows, n0, t0 + tc, count);
            }
        }
    }
}

void compute(const pofa_weights& w, const PreparedWeights* prepared, const Activations& a, const Output& o,
             int64_t rb_begin, int64_t rb_end) {
    if (prepared != nullptr) {  // the blocks form (the only one this path prepares)
        compute_blocks(w, static_cast<const BlockWeights&>(*prepared), a, o, rb_begin, rb_end);
        return;
    }
    // One token block's activations (64 x K bytes) stay in L1/L2 while every row of the range is swept.
    for (int64_t t0 = 0; t0 < a.padded; t0 += kMaxTile) {
        switch (block_width(a.padded, t0) / 16) {
            case 4: token_block<4>(w, a, o, rb_begin, rb_end, t0, t0 == 0); break;
            case 3: token_block<3>(w, a, o, rb_begin, rb_end, t0, t0 == 0); break;
            case 2: token_block<2>(w, a, o, rb_begin, rb_end, t0, t0 == 0); break;
            default: token_block<1>(w, a, o, rb_begin, rb_end, t0, t0 == 0); break;
        }
    }
}

// One token's values [k, k + n) (n <= 64) as u8 in one register, byte j = value k + j (0 past n); f32 ones
// quantized, the 16 of part p read at row + part[p] (the input's layout: k + 16 p in rows, elsewhere per head).
inline __m512i row64(const Quantizer16& quantize, const float* row, const int64_t* part, int32_t n) {
    const auto lanes = [n](int p) {
        const int left = std::max(0, std::min(16, n - 16 * p));
        return static_cast<__mmask16>((1u << left) - 1u);
    };
    __m512i out = _mm512_castsi128_si512(quantized16(quantize, row + part[0], lanes(0)));
    out = _mm512_inserti32x4(out, quantized16(quantize, row + part[1], lanes(1)), 1);
    out = _mm512_inserti32x4(out, quantized16(quantize, row + part[2], lanes(2)), 2);
    return _mm512_inserti32x4(out, quantized16(quantize, row + part[3], lanes(3)), 3);
}
inline __m512i row64(const Quantizer16& /*unused*/, const uint8_t* row, const int64_t* part, int32_t n) {
    return _mm512_maskz_loadu_epi8(n >= 64 ? ~__mmask64{0} : (__mmask64{1} << n) - 1, row + part[0]);
}

// Tokens t..t+15 (t a multiple of 16; those at or past `tokens` are padding: 0) into the layout: 16 groups at a
// time, transposed in registers so that each group's 16 tokens go out as one whole 64-byte line (writing each
// token's 4 bytes of a group on its own touched 16 lines per 64 bytes: most of this pass's time when the input is
// already u8, the FFN's second Linear).
template <typename In>
void pack_16_tokens(const Quantizer16& quantize, const In* x, const InputLayout& layout, int64_t tokens,
                    int32_t cols, uint8_t* x4, int64_t padded, int64_t t) {
    const int32_t groups = col_groups(cols);
    uint8_t* dst = x4 + packed_offset(t, 0, groups, padded);
    const int64_t step = block_width(padded, t / kMaxTile * kMaxTile) * 4;
    __m512i r[16];
    for (int32_t g = 0; g < groups; g += 16) {
        const int32_t n = std::min(64, cols - 4 * g);
        const int64_t part[4] = {layout.column(4 * g), layout.column(4 * g + 16), layout.column(4 * g + 32),
                                 layout.column(4 * g + 48)};
        for (int i = 0; i < 16; ++i) {
            r[i] = t + i < tokens ? row64(quantize, x + layout.token(t + i, cols), part, n) : _mm512_setzero_si512();
        }
        transpose16(r);
        for (int j = 0; j < 16 && g + j < groups; ++j) _mm512_storeu_si512(dst + (g + j) * step, r[j]);
    }
}

// Quantized (f32) or as they are (u8), 16 tokens at a time (Kernel's contract: t_begin is a multiple of
// kTokenAlign, and so is t_end unless it is `tokens`: no two ranges share a chunk).
template <typename In>
void quantize_pack_any(const In* x, const InputLayout& layout, int64_t tokens, int32_t cols, float scale,
                       int32_t zero_point, uint8_t* x4, int64_t t_begin, int64_t t_end) {
    const Quantizer16 quantize(scale, zero_point);
    const int64_t padded = padded_tokens(tokens);
    for (int64_t t = t_begin; t < t_end; t += 16) pack_16_tokens(quantize, x, layout, tokens, cols, x4, padded, t);
}

void quantize_pack(const float* x, const InputLayout& layout, int64_t tokens, int32_t cols, float scale,
                   int32_t zero_point, uint8_t* x4, int64_t t_begin, int64_t t_end) {
    quantize_pack_any(x, layout, tokens, cols, scale, zero_point, x4, t_begin, t_end);
}

void pack_u8(const uint8_t* x, int64_t tokens, int32_t cols, uint8_t* x4, int64_t t_begin, int64_t t_end) {
    quantize_pack_any(x, InputLayout{}, tokens, cols, 1.0f, 0, x4, t_begin, t_end);
}

}  // namespace

// Three sweeps of a token's row (sum; squared deviations; normalize), each in L1, 16 lanes at a time and four
// vectors in flight: one accumulator would make each sweep a chain of dependent adds (latency, not throughput).
void residual_norm_avx512(float* y, const ResidualNorm& norm, int32_t n, int64_t t_begin, int64_t t_end) {
    const auto lanes = [n](int32_t j) { return static_cast<__mmask16>(n - j >= 16 ? 0xFFFF : (1u << (n - j)) - 1u); };
    const auto sweep = [n, &lanes](auto&& body) {  // body(j, mask, accumulator) for j = 0, 16, ... < n
        __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
        int32_t j = 0;
        for (; j + 64 <= n; j += 64) {
            for (int u = 0; u < 4; ++u) body(j + 16 * u, __mmask16{0xFFFF}, acc[u]);
        }
        for (; j < n; j += 16) body(j, lanes(j), acc[0]);
        return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3])));
    };
    const float count = static_cast<float>(n);
    for (int64_t t = t_begin; t < t_end; ++t) {
        float* row = y + t * n;
        const float* residual = norm.residual + t * n;
        const float sum = sweep([&](int32_t j, __mmask16 m, __m512& acc) {
            const __m512 x = _mm512_add_ps(_mm512_maskz_loadu_ps(m, row + j), _mm512_maskz_loadu_ps(m, residual + j));
            _mm512_mask_storeu_ps(row + j, m, x);
            acc = _mm512_add_ps(acc, x);
        });
        const __m512 mean = _mm512_set1_ps(sum / count);
        const float squares = sweep([&](int32_t j, __mmask16 m, __m512& acc) {
            const __m512 d = _mm512_maskz_sub_ps(m, _mm512_maskz_loadu_ps(m, row + j), mean);
            acc = _mm512_fmadd_ps(d, d, acc);
        });
        const __m512 inverse = _mm512_set1_ps(1.0f / std::sqrt(squares / count + norm.epsilon));
        for (int32_t j = 0; j < n; j += 16) {
            const __mmask16 m = lanes(j);
            const __m512 d = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, row + j), mean), inverse);
            const __m512 out = _mm512_fmadd_ps(d, _mm512_maskz_loadu_ps(m, norm.gamma + j),
                                               _mm512_maskz_loadu_ps(m, norm.beta + j));
            _mm512_mask_storeu_ps(row + j, m, out);
        }
    }
}

const Kernel& kernel_avx512_vnni() {
    static const Kernel k{packed_bytes,        pack_u8, quantize_pack, prepare_blocks_avx512,
                          group_layout_offset, compute, /*fills_layout=*/true,  // pack_16_tokens
                          residual_norm_avx512};
    return k;
}

}  // namespace pofa
