// AMX path. At batch 1 a dense int8 layer on AMX is bound by reading its weights, not by multiply-adds (the tile
// unit does 1,024 u8*s8 products a cycle), so here the zeros pay in bytes: each 16-output x 64-input weight tile
// is stored as one 64-bit mask per tile row plus its non-zero bytes (~0.23 bytes a weight at 90% sparsity,
// against 1 for dense int8 and ~0.51 for the K-group form), expanded with vpexpandb into a dense VNNI-layout B
// tile in an L1/L2-resident buffer, once per call for all tokens, and multiplied there by tdpbusd.
//
// Layouts. A (activations): token-major rows of the layer's K padded to 64 bytes, 16 tokens a tile. B: tile row q
// holds, for each of the 16 outputs n, the 4 weights of inputs 4q..4q+3 (bytes 4n..4n+3), as tdpbusd wants.
// C: 16 tokens x 16 outputs int32, written straight into the row-major output. Register blocking 2x2: two token
// tiles by two output tiles (tmm0-3), their A (tmm4-5) and B (tmm6-7).
//
// Block-sparse weights (`sparsify --block_rows 16 --block 4`): prepare() returns the AVX-512 VNNI path's blocks
// form instead, which that path's kernel runs (kernel_for_form): measured faster than AMX tiles fed from
// per-block gathered activations, both when it was first built (BERT-base b1 / b8 73.7 / 80.0 vs 69.9 / 77.4
// seq/s) and again with an in-register transposing epilogue and a double-buffered panel (NOTES.md, issue 14,
// fourth and fifth sessions): the gathered tiles need a copy of every kept activation line per output block.
//
// Compiled with -mavx512f -mavx512bw -mavx512vl -mavx512vbmi2 -mamx-tile -mamx-int8; called only when the CPU
// reports them and Linux granted this process the tile data state (dispatch.cpp).
#include <immintrin.h>

#include <cstring>
#include <vector>

#include "kernel.hpp"
#include "gelu_avx512.hpp"
#include "quantize_avx512.hpp"
#include "store_avx512.hpp"

namespace pofa {
namespace {

constexpr int kTileK = 64;                 // input bytes per A tile row = 16 k-quads = B tile rows
constexpr int kTileN = 16;                 // outputs per B/C tile
constexpr int kTileBytes = 1024;           // one A or B tile, 16 x 64 bytes
constexpr int kTileT = kTokenAlign;        // tokens per A/C tile

int32_t k_blocks(int32_t cols) { return (cols + kTileK - 1) / kTileK; }
int64_t row_stride(int32_t cols) { return static_cast<int64_t>(k_blocks(cols)) * kTileK; }

// The compiler does not see the memory tile loads and stores touch (the intrinsics are asm without a memory
// clobber): order them against plain loads and stores explicitly.
inline void memory_barrier() { asm volatile("" ::: "memory"); }

struct AmxWeights : PreparedWeights {
    int32_t kblocks = 0;
    int32_t nblocks = 0;
    std::vector<uint64_t> masks;  // [nblocks][kblocks][16]: bit 4n+j of row q <=> w[16nb+n, 64kb+4q+j] != 0
    std::vector<uint32_t> start;  // [nblocks * kblocks + 1]: offset of each tile's first non-zero in values
    // [nblocks][kblocks][16]: offset of each tile row's first non-zero from its tile's, so that the 16 rows of a
    // tile expand independently (found by a running popcount, each row's load waited for the row before; the
    // popcounts were 16% of the op's samples: +2% BERT-base unstructured b1, idle A/B, 2.6 MB more at BERT-base).
    std::vector<uint16_t> row_offset;
    std::vector<int8_t> values;   // the non-zero bytes, tile by tile, row by row, in bit order (+64 bytes slack)
};

std::unique_ptr<PreparedWeights> prepare(const pofa_weights& w) {
    if (auto blocks = prepare_blocks_avx512(w)) return blocks;
    auto p = std::make_unique<AmxWeights>();
    p->kblocks = k_blocks(w.cols);
    p->nblocks = (w.rows + kTileN - 1) / kTileN;
    const size_t tiles = static_cast<size_t>(p->nblocks) * static_cast<size_t>(p->kblocks);
    p->masks.assign(tiles * 16, 0);
    p->row_offset.assign(tiles * 16, 0);
    p->start.assign(tiles + 1, 0);
    p->values.reserve(static_cast<size_t>(w.row_ptr[w.rows]) * 4 + 64);
    std::vector<int8_t> dense(static_cast<size_t>(p->kblocks) * kTileBytes);  // one output block, VNNI layout
    for (int32_t nb = 0; nb < p->nblocks; ++nb) {
        std::fill(dense.begin(), dense.end(), 0);
        for (int n = 0; n < kTileN && nb * kTileN + n < w.rows; ++n) {
            const int32_t row = nb * kTileN + n;
            for (int32_t j = w.row_ptr[row]; j < w.row_ptr[row + 1]; ++j) {
                const int32_t g = w.groups[j];  // inputs 4g..4g+3: k-block g/16, tile row g%16
                std::memcpy(&dense[static_cast<size_t>(g / 16) * kTileBytes + (g % 16) * 64 + 4 * n], &w.values[j], 4);
            }
        }
        for (int32_t kb = 0; kb < p->kblocks; ++kb) {
            const size_t tile = static_cast<size_t>(nb) * p->kblocks + kb;
            for (int q = 0; q < 16; ++q) {
                const int8_t* bytes = &dense[static_cast<size_t>(kb) * kTileBytes + q * 64];
                p->row_offset[tile * 16 + q] = static_cast<uint16_t>(p->values.size() - p->start[tile]);
                uint64_t mask = 0;
                for (int b = 0; b < 64; ++b) {
                    if (bytes[b] != 0) {
                        mask |= uint64_t{1} << b;
                        p->values.push_back(bytes[b]);
                    }
                }
                p->masks[tile * 16 + q] = mask;
            }
            p->start[tile + 1] = static_cast<uint32_t>(p->values.size());
        }
    }
    p->values.resize(p->values.size() + 64, 0);
    return p;
}

struct alignas(64) TileConfig {
    uint8_t palette = 1;
    uint8_t start_row = 0;
    uint8_t reserved[14] = {};
    uint16_t colsb[16] = {};
    uint8_t rows[16] = {};
};

void configure_tiles() {
    TileConfig config;
    for (int i = 0; i < 8; ++i) {
        config.colsb[i] = 64;
        config.rows[i] = 16;
    }
    _tile_loadconfig(&config);
}

// One output block's B tiles, all k-blocks, into `dst` (dense, 1 KB each).
void expand_block(const AmxWeights& p, int32_t nb, int8_t* dst) {
    const size_t first = static_cast<size_t>(nb) * p.kblocks;
    for (int32_t kb = 0; kb < p.kblocks; ++kb) {
        const size_t tile = first + static_cast<size_t>(kb);
        const uint64_t* masks = &p.masks[tile * 16];
        const uint16_t* offsets = &p.row_offset[tile * 16];
        const int8_t* src = &p.values[p.start[tile]];
        int8_t* out = dst + static_cast<size_t>(kb) * kTileBytes;
        for (int q = 0; q < 16; ++q) {
            _mm512_store_si512(out + q * 64, _mm512_maskz_expandloadu_epi8(masks[q], src + offsets[q]));
        }
    }
}

// TT token tiles (from `a`, rows `stride` bytes apart) times NT output tiles (from `b`, k-blocks 1 KB apart, the
// second output block `kblocks` tiles after the first), all k-blocks; results to `c` (TT*NT tiles of 1 KB).
template <int TT, int NT>
void multiply(const uint8_t* a, int64_t stride, const int8_t* b, int32_t kblocks, int32_t* c) {
    const int64_t b_next = static_cast<int64_t>(kblocks) * kTileBytes;
    _tile_zero(0);
    if constexpr (NT > 1) _tile_zero(1);
    if constexpr (TT > 1) _tile_zero(2);
    if constexpr (TT > 1 && NT > 1) _tile_zero(3);
    memory_barrier();  // the expanded B tiles are in memory before the tile loads read them
    for (int32_t kb = 0; kb < kblocks; ++kb) {
        // A rows two k-blocks ahead into L1 while this block's tdpbusd run: the A panel (32 tokens x K bytes) and
        // the expanded B tiles do not both fit in L1, and tile loads of A from L2 were ~40% of the op's cycles
        // (perf, BERT-base b1). Measured, idle A/B: +6-8% whole-model BERT-base b1; B prefetch added nothing.
        if (kb + 2 < kblocks) {
            const uint8_t* ahead = a + (kb + 2) * kTileK;
            for (int r = 0; r < 16 * TT; ++r) {
                _mm_prefetch(reinterpret_cast<const char*>(ahead + r * stride), _MM_HINT_T0);
            }
        }
        _tile_loadd(4, a + kb * kTileK, stride);
        if constexpr (TT > 1) _tile_loadd(5, a + 16 * stride + kb * kTileK, stride);
        _tile_loadd(6, b + static_cast<int64_t>(kb) * kTileBytes, 64);
        if constexpr (NT > 1) _tile_loadd(7, b + b_next + static_cast<int64_t>(kb) * kTileBytes, 64);
        _tile_dpbusd(0, 4, 6);
        if constexpr (NT > 1) _tile_dpbusd(1, 4, 7);
        if constexpr (TT > 1) _tile_dpbusd(2, 5, 6);
        if constexpr (TT > 1 && NT > 1) _tile_dpbusd(3, 5, 7);
    }
    _tile_stored(0, c, 64);
    if constexpr (NT > 1) _tile_stored(1, c + 256, 64);
    if constexpr (TT > 1) _tile_stored(2, c + 512, 64);
    if constexpr (TT > 1 && NT > 1) _tile_stored(3, c + 768, 64);
    memory_barrier();
}

template <int NT>
void output_blocks(const pofa_weights& w, const AmxWeights& p, const Activations& a, const Output& o, int32_t nb,
                   const int8_t* b, int32_t* c) {
    const int64_t stride = row_stride(w.cols);
    for (int64_t t0 = 0; t0 < a.padded; t0 += 2 * kTileT) {
        const uint8_t* rows = a.x4 + t0 * stride;
        const bool two = t0 + kTileT < a.padded;
        if (two) {
            multiply<2, NT>(rows, stride, b, p.kblocks, c);
        } else {
            multiply<1, NT>(rows, stride, b, p.kblocks, c);
        }
        for (int tt = 0; tt < (two ? 2 : 1); ++tt) {
            for (int nt = 0; nt < NT; ++nt) {
                const int64_t first = t0 + tt * kTileT;
                const int ntok = static_cast<int>(std::min<int64_t>(kTileT, a.tokens - first));
                if (ntok > 0) store_rows_avx512(c + 512 * tt + 256 * nt, o, w.rows, (nb + nt) * kTileN, first, ntok);
            }
        }
    }
}

void compute(const pofa_weights& w, const PreparedWeights* prepared, const Activations& a, const Output& o,
             int64_t rb_begin, int64_t rb_end) {
    static_assert(kRowBlock == kTileN, "a row block is one output tile");
    const auto& p = static_cast<const AmxWeights&>(*prepared);
    // Two output blocks' expanded B tiles (2 x 48 KB at K = 3,072) and the C tiles, per thread.
    thread_local std::vector<int8_t> expanded;
    const size_t need = static_cast<size_t>(2 * p.kblocks) * kTileBytes + 64;
    if (expanded.size() < need) expanded.resize(need);
    int8_t* b = align64(expanded.data());
    alignas(64) int32_t c[4 * 256];
    configure_tiles();
    for (int64_t rb = rb_begin; rb < rb_end; rb += 2) {
        const auto nb = static_cast<int32_t>(rb);
        expand_block(p, nb, b);
        if (rb + 1 < rb_end) {
            expand_block(p, nb + 1, b + static_cast<size_t>(p.kblocks) * kTileBytes);
            output_blocks<2>(w, p, a, o, nb, b, c);
        } else {
            output_blocks<1>(w, p, a, o, nb, b, c);
        }
    }
    _tile_release();
}

size_t activation_bytes(int64_t tokens, int32_t cols) {
    return static_cast<size_t>(padded_tokens(tokens)) * static_cast<size_t>(row_stride(cols));
}

// Quantized (f32) or as they are (u8).
template <typename In>
void quantize_pack_any(const In* x, const InputLayout& layout, int32_t cols, float scale, int32_t zero_point,
                       uint8_t* x4, int64_t t_begin, int64_t t_end) {
    const int64_t stride = row_stride(cols);
    const Quantizer16 quantize(scale, zero_point);
    for (int64_t t = t_begin; t < t_end; ++t) {
        const In* row = x + layout.token(t, cols);
        uint8_t* dst = x4 + t * stride;
        int32_t k = 0;
        for (; k + 16 <= cols; k += 16) {  // whole vectors: a plain 16-byte store (a masked vpmovdb to memory is slow)
            const __m128i q = quantized16(quantize, row + layout.column(k), kAllLanes);
            _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + k), q);
        }
        if (k < cols) {
            const __mmask16 mask = static_cast<__mmask16>((1u << (cols - k)) - 1u);
            _mm_mask_storeu_epi8(dst + k, mask, quantized16(quantize, row + layout.column(k), mask));
        }
    }
}

void quantize_pack(const float* x, const InputLayout& layout, int64_t /*tokens*/, int32_t cols, float scale,
                   int32_t zero_point, uint8_t* x4, int64_t t_begin, int64_t t_end) {
    quantize_pack_any(x, layout, cols, scale, zero_point, x4, t_begin, t_end);
}

void pack_u8(const uint8_t* x, int64_t /*tokens*/, int32_t cols, uint8_t* x4, int64_t t_begin, int64_t t_end) {
    quantize_pack_any(x, InputLayout{}, cols, 1.0f, 0, x4, t_begin, t_end);
}

}  // namespace

const Kernel& kernel_amx() {
    static const Kernel k{activation_bytes, pack_u8, quantize_pack, prepare, nullptr, compute, false,
                          residual_norm_avx512};
    return k;
}

}  // namespace pofa
