/* pruneofa sparse int8 kernel: C API (used by Python through ctypes, and by the OpenVINO extension).
 *
 * Weights are stored in "K-group" form: K is cut into groups of 4 consecutive input features (the 4 bytes one
 * VNNI lane multiplies), and each output row keeps only its non-empty groups: row_ptr[n]..row_ptr[n+1] index
 * `groups` (the group number g, features 4g..4g+3) and `values` (the 4 int8 weights of the group, little endian,
 * byte j = feature 4g+j). At 90% unstructured sparsity about a third of the groups are non-empty, so the kernel
 * issues ~3x fewer multiply-adds than dense int8 and reads ~2x fewer weight bytes.
 *
 * Activations are u8 (per-tensor scale and zero point, as the QAT model's QuantizeLinear), weights s8 with one
 * scale per output row; products are summed exactly in int32.
 */
#ifndef PRUNEOFA_SPARSE_H
#define PRUNEOFA_SPARSE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define POFA_API __attribute__((visibility("default")))

/* Kernel paths; POFA_ISA_AUTO picks the best the CPU runs (or $PRUNEOFA_SPARSE_ISA when set). */
enum {
    POFA_ISA_AUTO = -1,
    POFA_ISA_SCALAR = 0,
    POFA_ISA_AVX2 = 1,
    POFA_ISA_AVX512_VNNI = 2,
    POFA_ISA_AMX = 3, /* AMX-INT8 tiles fed from bitmask-compressed weights (kernel_amx.cpp); block-sparse weights
                         (16 outputs x 4 inputs) take the AVX-512 VNNI blocks form, which measured faster */
    POFA_ISA_COUNT = 4
};

typedef struct {
    int32_t rows;             /* N, output features */
    int32_t cols;             /* K, input features */
    const int32_t* row_ptr;   /* [N + 1] */
    const uint16_t* groups;   /* [row_ptr[N]] group numbers, ascending within a row */
    const int32_t* values;    /* [row_ptr[N]] 4 int8 weights per group */
} pofa_weights;

/* Name of a path ("scalar", "avx2", "avx512_vnni", "amx"), NULL for an unknown one. */
POFA_API const char* pofa_isa_name(int isa);
/* 1 if this CPU (and OS) can run the path. */
POFA_API int pofa_isa_supported(int isa);
/* The path POFA_ISA_AUTO resolves to: $PRUNEOFA_SPARSE_ISA if set (-1 if it names an unknown or unsupported
 * path), else the best supported one. */
POFA_API int pofa_isa_selected(void);

/* out[t, n] = sum_k x[t, k] * w[n, k], exact int32; x is u8 [tokens, cols] row-major, out int32 [tokens, rows].
 * Returns 0, or -1 if the path is unknown or unsupported here or `w` is malformed (row_ptr not non-decreasing
 * from 0, a row's groups not strictly ascending, or a group number past the last group of cols). */
POFA_API int pofa_sparse_gemm_s32(const pofa_weights* w, const uint8_t* x, int64_t tokens, int32_t* out, int isa,
                                  int threads);

/* Activations the fused linear layer can apply to its f32 result. */
enum { POFA_ACT_NONE = 0, POFA_ACT_GELU = 1 /* 0.5 y (1 + erf(y / sqrt 2)), BERT's GELU */ };

/* The fused linear layer: q = clamp(round(x / x_scale) + x_zero_point, 0, 255) (ONNX QuantizeLinear), then
 * out[t, n] = (sum_k q[t, k] * w[n, k]) * mult[n] + offset[n], with mult = x_scale * w_scale[n] and
 * offset = bias[n] - mult[n] * x_zero_point * sum_k w[n, k] precomputed by the caller. x, out f32 row-major. */
POFA_API int pofa_sparse_linear_f32(const pofa_weights* w, const float* x, int64_t tokens, float x_scale,
                                    int32_t x_zero_point, const float* mult, const float* offset, float* out,
                                    int isa, int threads);

/* pofa_sparse_linear_f32 followed by `activation` (POFA_ACT_*) on each output value. */
POFA_API int pofa_sparse_linear_act_f32(const pofa_weights* w, const float* x, int64_t tokens, float x_scale,
                                        int32_t x_zero_point, const float* mult, const float* offset, float* out,
                                        int activation, int isa, int threads);

/* Element types of the typed entry point below. */
enum { POFA_TYPE_F32 = 0, POFA_TYPE_U8 = 1 };

/* pofa_sparse_linear_act_f32 with the input's and the output's types chosen, as the OpenVINO op runs them:
 * x f32 or u8 (already quantized: x_scale and x_zero_point are not used); out f32 or u8 (the result, after the
 * activation, quantized as QuantizeLinear with out_scale and out_zero_point: the next layer's input; the float
 * result rounds to an integer as x * (1 / out_scale), not exactly as the division at near-ties). */
POFA_API int pofa_sparse_linear_typed(const pofa_weights* w, const void* x, int x_type, int64_t tokens, float x_scale,
                                      int32_t x_zero_point, const float* mult, const float* offset, int activation,
                                      void* out, int out_type, float out_scale, int32_t out_zero_point, int isa,
                                      int threads);

#ifdef __cplusplus
}
#endif
#endif
