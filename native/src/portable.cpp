// The portable path (any x86-64 or other CPU) and the pieces every path shares: activation packing, quantizing
// as ONNX QuantizeLinear does, and the scalar epilogue.
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "kernel.hpp"

namespace pofa {

uint8_t quantize_one(float x, float scale, int32_t zero_point) {
    // QuantizeLinear: saturate(round_half_to_even(x / scale) + zero_point); nearbyint rounds half to even in
    // the default rounding mode.
    const float q = std::nearbyint(x / scale) + static_cast<float>(zero_point);
    return static_cast<uint8_t>(std::min(255.0f, std::max(0.0f, q)));
}

int64_t group_layout_offset(int64_t t, int32_t cols) {
    return t * col_groups(cols) * 4;  // token blocks are contiguous, [groups][width][4] each
}

namespace {

// Tokens [t_begin, t_end) of x into the K-group layout, each value through `to_u8`.
template <typename In, typename ToU8>
void pack_any(const In* x, const InputLayout& layout, int64_t tokens, int32_t cols, uint8_t* x4, int64_t t_begin,
              int64_t t_end, ToU8 to_u8) {
    const int64_t padded = padded_tokens(tokens);
    const int32_t groups = col_groups(cols);
    for (int64_t t = t_begin; t < t_end; ++t) {
        const In* row = x + layout.token(t, cols);
        for (int32_t g = 0; g < groups; ++g) {
            uint8_t* dst = x4 + packed_offset(t, g, groups, padded);
            const In* group = row + layout.column(4 * g);  // a group's 4 inputs never straddle two heads
            for (int j = 0; j < 4 && 4 * g + j < cols; ++j) dst[j] = to_u8(group[j]);
        }
    }
}

}  // namespace

void pack_u8_portable(const uint8_t* x, int64_t tokens, int32_t cols, uint8_t* x4, int64_t t_begin, int64_t t_end) {
    pack_any(x, InputLayout{}, tokens, cols, x4, t_begin, t_end, [](uint8_t v) { return v; });
}

void quantize_pack_portable(const float* x, const InputLayout& layout, int64_t tokens, int32_t cols, float scale,
                            int32_t zero_point, uint8_t* x4, int64_t t_begin, int64_t t_end) {
    pack_any(x, layout, tokens, cols, x4, t_begin, t_end, [=](float v) { return quantize_one(v, scale, zero_point); });
}

std::vector<std::vector<uint16_t>> block_groups(const pofa_weights& w) {
    std::vector<std::vector<uint16_t>> found(static_cast<size_t>(row_blocks(w)));
    std::vector<char> seen(static_cast<size_t>(col_groups(w.cols)));
    for (size_t nb = 0; nb < found.size(); ++nb) {
        std::fill(seen.begin(), seen.end(), 0);
        const auto n0 = static_cast<int32_t>(nb) * kRowBlock;
        for (int32_t row = n0; row < std::min(w.rows, n0 + kRowBlock); ++row) {
            for (int32_t j = w.row_ptr[row]; j < w.row_ptr[row + 1]; ++j) seen[w.groups[j]] = 1;
        }
        for (size_t g = 0; g < seen.size(); ++g) {
            if (seen[g]) found[nb].push_back(static_cast<uint16_t>(g));
        }
    }
    return found;
}

bool blocks_form_pays(const std::vector<std::vector<uint16_t>>& found, const pofa_weights& w) {
    const char* forced = std::getenv("PRUNEOFA_SPARSE_FORM");
    if (forced != nullptr && std::strcmp(forced, "blocks") == 0) return true;
    if (forced != nullptr && std::strcmp(forced, "rows") == 0) return false;
    size_t kept = 0;
    for (const auto& g : found) kept += g.size();
    return static_cast<double>(kept) * kRowBlock <= kBlockFormMaxSpread * static_cast<double>(w.row_ptr[w.rows]);
}

void residual_norm_portable(float* y, const ResidualNorm& norm, int32_t n, int64_t t_begin, int64_t t_end) {
    for (int64_t t = t_begin; t < t_end; ++t) {
        float* row = y + t * n;
        const float* residual = norm.residual + t * n;
        float sum = 0.0f;
        for (int32_t j = 0; j < n; ++j) {
            row[j] += residual[j];
            sum += row[j];
        }
        const float mean = sum / static_cast<float>(n);
        float squares = 0.0f;
        for (int32_t j = 0; j < n; ++j) squares += (row[j] - mean) * (row[j] - mean);
        const float inverse = 1.0f / std::sqrt(squares / static_cast<float>(n) + norm.epsilon);
        for (int32_t j = 0; j < n; ++j) row[j] = (row[j] - mean) * inverse * norm.gamma[j] + norm.beta[j];
    }
}

float gelu_scalar(float y) { return 0.5f * y * (1.0f + std::erf(y * 0.70710678118654752f)); }

void store_tile_portable(const int32_t* tile, int32_t rows, int32_t n0, int nrows, int64_t t0, int ntok,
                         const Output& o) {
    for (int t = 0; t < ntok; ++t) {
        for (int r = 0; r < nrows; ++r) {
            const int64_t at = output_index(o, t0 + t, n0 + r, rows);
            const int32_t acc = tile[r * kMaxTile + t];
            if (o.mult == nullptr) {
                o.s32[at] = acc;
                continue;
            }
            float y = static_cast<float>(acc) * o.mult[n0 + r] + o.offset[n0 + r];
            if (o.activation == POFA_ACT_GELU) y = gelu_scalar(y);
            if (o.u8 != nullptr) {
                o.u8[at] = quantize_one(y, o.out_scale, o.out_zero_point);
            } else {
                o.f32[at] = y;
            }
        }
    }
}

namespace {

void compute_scalar(const pofa_weights& w, const PreparedWeights* /*unused: K-group form*/, const Activations& a,
                    const Output& o, int64_t rb_begin, int64_t rb_end) {
    int32_t tile[kRowBlock * kMaxTile];
    for (int64_t t0 = 0; t0 < a.tokens; t0 += kMaxTile) {
        const int ntok = static_cast<int>(std::min<int64_t>(kMaxTile, a.tokens - t0));
        for (int64_t rb = rb_begin; rb < rb_end; ++rb) {
            const int32_t n0 = static_cast<int32_t>(rb * kRowBlock);
            const int nrows = std::min(kRowBlock, w.rows - n0);
            for (int r = 0; r < nrows; ++r) {
                const int32_t n = n0 + r;
                int32_t* acc = tile + r * kMaxTile;
                std::fill(acc, acc + ntok, 0);
                for (int32_t j = w.row_ptr[n]; j < w.row_ptr[n + 1]; ++j) {
                    int8_t wv[4];
                    std::memcpy(wv, &w.values[j], 4);
                    const uint8_t* xg = a.x4 + packed_offset(t0, w.groups[j], col_groups(w.cols), a.padded);
                    for (int t = 0; t < ntok; ++t) {
                        const uint8_t* xt = xg + t * 4;
                        acc[t] += xt[0] * wv[0] + xt[1] * wv[1] + xt[2] * wv[2] + xt[3] * wv[3];
                    }
                }
            }
            store_tile_portable(tile, w.rows, n0, nrows, t0, ntok, o);
        }
    }
}

}  // namespace

const Kernel& kernel_scalar() {
    static const Kernel k{packed_bytes, pack_u8_portable, quantize_pack_portable, nullptr, group_layout_offset,
                          compute_scalar};
    return k;
}

}  // namespace pofa
