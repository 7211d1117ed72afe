// Internal interface between the C API (dispatch.cpp), the OpenVINO extension and the per-ISA kernels.
// Each kernel_*.cpp is compiled with its own ISA flags and only ever called after a runtime CPU check.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "pruneofa_sparse.h"

namespace pofa {

constexpr int kRowBlock = 16;    // output rows computed together (one 16-lane transpose in the epilogue)
constexpr int kTokenAlign = 16;  // tokens padded to this in the activation layout
constexpr int kMaxTile = 64;     // widest token block a kernel computes at once
// Activation bytes of one K chunk in the K-group paths: a row block sweeps K chunk by chunk, so its 16 rows read
// the chunk from L1 (at K = 3072 a token block's activations are far larger than L1, and a row's scattered group
// loads from L2 stall: 768x3072 at 128 tokens ran 2.5x faster chunked on the AVX-512 VNNI path).
constexpr int64_t kChunkBytes = 24 * 1024;

// `p` rounded up to a multiple of 64 bytes. Every activation layout starts on a cache line: the kernels load it
// 64 bytes at a time (a 16-token group, an AMX tile row), and from a malloc'd buffer (16-byte aligned) each such
// load straddled two lines: measured, one thread, 90% unstructured at 128 tokens, the AVX-512 VNNI rows form ran
// 1.23-1.32x faster from an aligned layout (benchmarks: NOTES.md, issue 14, seventh session).
template <typename T>
inline T* align64(T* p) {
    return reinterpret_cast<T*>((reinterpret_cast<uintptr_t>(p) + 63) & ~uintptr_t{63});
}

inline int64_t padded_tokens(int64_t tokens) { return (tokens + kTokenAlign - 1) / kTokenAlign * kTokenAlign; }
inline int32_t col_groups(int32_t cols) { return (cols + 3) / 4; }
inline int64_t row_blocks(const pofa_weights& w) { return (w.rows + kRowBlock - 1) / kRowBlock; }
// Bytes of the activation layout: blocks of kMaxTile tokens (the last one as wide as the padded tokens left),
// each [col_groups][block width][4]: the 4 u8 of one group of one token together, so a 64-byte load holds one
// group of 16 consecutive tokens (one VNNI instruction's worth), and one block's activations are contiguous
// (a small, fixed group stride: no cache-set aliasing however many tokens there are).
inline size_t packed_bytes(int64_t tokens, int32_t cols) {
    return static_cast<size_t>(col_groups(cols)) * static_cast<size_t>(padded_tokens(tokens)) * 4;
}
inline int64_t block_width(int64_t padded, int64_t t0) { return std::min<int64_t>(kMaxTile, padded - t0); }
// Byte offset of (token t, group g).
inline int64_t packed_offset(int64_t t, int32_t g, int32_t groups, int64_t padded) {
    const int64_t t0 = t / kMaxTile * kMaxTile;
    return (t0 * groups + static_cast<int64_t>(g) * block_width(padded, t0) + (t - t0)) * 4;
}

struct Activations {
    const uint8_t* x4;
    int64_t tokens;  // real tokens
    int64_t padded;  // padded_tokens(tokens)
};

// Where results go: int32 (mult == nullptr) or y = act(acc * mult[n] + offset[n]) as f32, or quantized to u8 as
// QuantizeLinear(y, out_scale, out_zero_point) (the next layer's input, when that layer is its only reader: the
// FFN's first Linear feeding its second); row-major [tokens, ld]. An output may hold a range of the layer's rows
// only (the op that computes query, key and value writes each to its own tensor): row n goes to column
// n - first_row. With `seq` > 0 the output is transposed per sequence of `seq` tokens, [batch][row][seq] (f32
// only: attention's keys, as its product with the query reads them); with `head` > 0 it is split into attention
// heads, [batch][heads][seq][head] (the query and the value).
struct Output {
    int32_t* s32;
    float* f32;
    const float* mult;
    const float* offset;
    int activation = POFA_ACT_NONE;  // not for s32: POFA_ACT_GELU applies 0.5 y (1 + erf(y / sqrt 2))
    uint8_t* u8 = nullptr;
    float out_scale = 1.0f;
    int32_t out_zero_point = 0;
    int64_t ld = 0;  // the output's rows (elements from one token's outputs to the next); 0: the layer's rows
    int32_t first_row = 0;
    int64_t seq = 0;     // > 0: transposed per sequence of this many tokens
    int64_t token0 = 0;  // the layer's token that the kernel's token 0 is (a thread's share of the tokens)
    // > 0: split into attention heads of this many outputs (a multiple of kRowBlock, so a row block's 16 outputs
    // stay together), [batch][heads][head_seq][head]: the layout attention's products read the query and value in.
    int32_t head = 0;
    int64_t head_seq = 0;  // tokens per sequence, with `head`
};

// Index of (token t, row n) in `o`, for a layer of `rows` outputs.
inline int64_t output_index(const Output& o, int64_t t, int32_t n, int32_t rows) {
    t += o.token0;
    const int64_t ld = o.ld > 0 ? o.ld : rows;
    const int64_t c = n - o.first_row;
    if (o.seq > 0) return (t / o.seq) * ld * o.seq + c * o.seq + t % o.seq;
    if (o.head > 0) {
        const int64_t head = (t / o.head_seq) * (ld / o.head) + c / o.head;
        return (head * o.head_seq + t % o.head_seq) * o.head + c % o.head;
    }
    return t * ld + c;
}

// (index of token t0's output n, elements from one token's to the next) for tokens t0 .. t0 + ntok - 1 of `o`
// (not transposed): one output_index() for a run of tokens instead of one each (a per-head output's index takes
// two divisions); {-1, 0} where the run crosses sequences of a per-head output.
struct TokenRun {
    int64_t index;
    int64_t stride;
};
inline TokenRun token_run(const Output& o, int64_t t0, int ntok, int32_t n, int32_t rows) {
    if (o.head > 0) {
        if ((o.token0 + t0) % o.head_seq + ntok > o.head_seq) return {-1, 0};
        return {output_index(o, t0, n, rows), o.head};
    }
    return {output_index(o, t0, n, rows), o.ld > 0 ? o.ld : rows};
}
inline int64_t run_index(const Output& o, const TokenRun& run, int64_t t0, int t, int32_t n, int32_t rows) {
    return run.index >= 0 ? run.index + t * run.stride : output_index(o, t0 + t, n, rows);
}

// A Linear's residual Add and the LayerNorm after it (over each token's outputs), done by the op as its last pass
// over the output: y[t] = (x - mean) / sqrt(var + epsilon) * gamma + beta for x = y[t] + residual[t], both rows
// of n floats, as ONNX LayerNormalization (axis -1) computes it.
struct ResidualNorm {
    const float* residual;
    const float* gamma;
    const float* beta;
    float epsilon;
};
// Tokens [t_begin, t_end) of y (rows of n floats) in place.
using ResidualNormFn = void (*)(float* y, const ResidualNorm& norm, int32_t n, int64_t t_begin, int64_t t_end);
void residual_norm_portable(float* y, const ResidualNorm& norm, int32_t n, int64_t t_begin, int64_t t_end);
// The same with AVX-512 (kernel_avx512_vnni.cpp; call only where AVX-512F runs: the avx512_vnni and amx paths).
void residual_norm_avx512(float* y, const ResidualNorm& norm, int32_t n, int64_t t_begin, int64_t t_end);

// A path's own form of a layer's weights, built once per layer (the AMX path's compressed tiles); the K-group
// paths read pofa_weights as they are and need none.
struct PreparedWeights {
    virtual ~PreparedWeights() = default;
};

// Where token t's inputs are: rows of `cols` (head == 0), or split into attention heads, [batch][cols / head]
// [seq][head] (attention's context as its product with the value leaves it; head a multiple of 16, so that the
// 16 inputs a pack reads at once are contiguous): input k of token t at token(t, cols) + column(k).
struct InputLayout {
    int32_t head = 0;
    int64_t seq = 0;  // tokens per sequence, with `head`
    int64_t token(int64_t t, int32_t cols) const {
        return head == 0 ? t * cols : (t / seq) * seq * cols + (t % seq) * head;
    }
    int64_t column(int32_t k) const { return head == 0 ? k : static_cast<int64_t>(k / head) * seq * head + k % head; }
};

struct Kernel {
    // Bytes of this path's activation layout (the K-group paths: packed_bytes; AMX: token-major rows).
    size_t (*activation_bytes)(int64_t tokens, int32_t cols);
    // Tokens [t_begin, t_end) of u8 activations (already quantized) into the layout, as quantize_pack.
    void (*pack_u8)(const uint8_t* x, int64_t tokens, int32_t cols, uint8_t* x4, int64_t t_begin, int64_t t_end);
    // Tokens [t_begin, t_end) of x, quantized as QuantizeLinear, into the layout `x4`, which the caller has
    // zero-filled unless fills_layout (the padding must be 0); disjoint token ranges can be written in parallel.
    // t_begin must be a multiple of kTokenAlign, and t_end too unless it is `tokens` (the K-group layouts write 16
    // tokens at once).
    void (*quantize_pack)(const float* x, const InputLayout& layout, int64_t tokens, int32_t cols, float scale,
                          int32_t zero_point, uint8_t* x4, int64_t t_begin, int64_t t_end);
    // nullptr where the path computes from pofa_weights directly.
    std::unique_ptr<PreparedWeights> (*prepare)(const pofa_weights& w);
    // Where the threads may split the tokens instead of the output rows: the byte offset in the layout of token
    // t (a multiple of kMaxTile), so that compute() can run on a token range as on a layer of its own; nullptr
    // where the rows must be split (AMX: each thread would otherwise expand every weight tile).
    int64_t (*token_block_offset)(int64_t t, int32_t cols);
    // Output rows [rb_begin * kRowBlock, rb_end * kRowBlock) for every token; `prepared` is prepare(w)'s result.
    void (*compute)(const pofa_weights& w, const PreparedWeights* prepared, const Activations& a, const Output& o,
                    int64_t rb_begin, int64_t rb_end);
    // Whether pack_u8 / quantize_pack write every byte of their tokens' part of the layout, padding included, so
    // the caller need not zero-fill it first (a memset of up to K x tokens bytes per call).
    bool fills_layout = false;
    // The residual Add + LayerNorm pass of an op that fuses them (sparse_form.py), in this path's instructions.
    ResidualNormFn residual_norm = residual_norm_portable;
};

// A layer's input: u8 activations as they are (already quantized), or f32 ones to quantize (exactly one set).
struct Input {
    const uint8_t* u8;
    const float* f32;
    InputLayout layout{};  // f32 only
};

// Tokens [t_begin, t_end) of x into `kernel`'s layout (quantize_pack's contract on the range).
inline void pack_input(const Kernel& kernel, const Input& x, int64_t tokens, int32_t cols, float scale,
                       int32_t zero_point, uint8_t* x4, int64_t t_begin, int64_t t_end) {
    if (x.u8 != nullptr) {
        kernel.pack_u8(x.u8, tokens, cols, x4, t_begin, t_end);
    } else {
        kernel.quantize_pack(x.f32, x.layout, tokens, cols, scale, zero_point, x4, t_begin, t_end);
    }
}

const Kernel& kernel_scalar();
const Kernel& kernel_avx2();
const Kernel& kernel_avx512_vnni();
const Kernel& kernel_amx();

// Block-sparse weights (sparsify --block_rows 16 --block 4): the 16 rows of an output block share few non-empty
// groups, and the AVX-512 paths then keep a "blocks" form (per output block: its groups, 16 rows' weights each)
// instead of each row's own groups. Each output block's non-empty groups (the union over its rows), ascending:
std::vector<std::vector<uint16_t>> block_groups(const pofa_weights& w);
// Whether the blocks form pays: it multiplies each kept group for all 16 rows of a block, the rows form only for
// the rows that have it (but with two loads per multiply-add instead of one), so it pays where a block's rows
// share their groups: 16 x (groups the blocks keep) <= kBlockFormMaxSpread x (non-empty row groups). Measured
// (benchmarks/sparse_kernel.py, avx512_vnni, 128 tokens, 768x768 and 3072x768): 16x4 blocks at 50-70% zeros
// (spread 1) blocks 1.4-1.8x rows; unstructured 90% (spread 2.4) a tie; 1x4 blocks at 90% (spread 8) rows
// 1.3-1.5x. $PRUNEOFA_SPARSE_FORM=rows|blocks forces the answer (tests, benchmarks).
constexpr double kBlockFormMaxSpread = 2.0;
bool blocks_form_pays(const std::vector<std::vector<uint16_t>>& found, const pofa_weights& w);
// The AVX-512 VNNI path's blocks form (kernel_avx512_vnni.cpp; call only where AVX-512 VNNI runs), which the amx
// path's prepare() returns for block-sparse weights too: nullptr where the weights do not pay for it.
std::unique_ptr<PreparedWeights> prepare_blocks_avx512(const pofa_weights& w);
bool is_blocks_form(const PreparedWeights& form);
// The kernel that runs `path`'s form of a layer's weights (prepare()'s result): the avx512_vnni kernel for the
// blocks form, whichever path built it; else the path's own.
const Kernel& kernel_for_form(const Kernel& path, const PreparedWeights* form);

// The kernel of a path, or nullptr if unknown/unsupported; POFA_ISA_AUTO resolves through pofa_isa_selected().
const Kernel* kernel_for(int isa);
int resolve_isa(int isa);

// Whether `w` is well formed: row_ptr non-decreasing from 0, and each row's group numbers strictly ascending and
// below col_groups(cols) (the kernels walk a row's groups in order, chunk by chunk).
bool valid_weights(const pofa_weights& w);

// Portable pieces the ISA kernels share (the K-group activation layout).
int64_t group_layout_offset(int64_t t, int32_t cols);
void pack_u8_portable(const uint8_t* x, int64_t tokens, int32_t cols, uint8_t* x4, int64_t t_begin, int64_t t_end);
void quantize_pack_portable(const float* x, const InputLayout& layout, int64_t tokens, int32_t cols, float scale,
                            int32_t zero_point, uint8_t* x4, int64_t t_begin, int64_t t_end);
uint8_t quantize_one(float x, float scale, int32_t zero_point);
float gelu_scalar(float y);  // 0.5 y (1 + erf(y / sqrt 2)) with std::erf

// tile[r][t] (row stride kMaxTile) holds rows n0..n0+nrows, tokens t0..t0+ntok: write them to the output.
void store_tile_portable(const int32_t* tile, int32_t rows, int32_t n0, int nrows, int64_t t0, int ntok,
                         const Output& o);

}  // namespace pofa
