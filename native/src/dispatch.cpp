// The C API: path selection at run time (CPU flags, or $PRUNEOFA_SPARSE_ISA to force one so every path can be
// tested and benchmarked on any machine), activation packing, and a split of the output rows over threads.
#include <cpuid.h>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>
#ifdef __linux__
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "kernel.hpp"

namespace pofa {
namespace {

const char* const kNames[POFA_ISA_COUNT] = {"scalar", "avx2", "avx512_vnni", "amx"};

bool avx512_vnni() {
    // libgcc's checks include the OS enabling the AVX-512 register state (XCR0).
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
}

// AMX-TILE + AMX-INT8 (+ AVX512-VBMI2 for vpexpandb), the OS saving the tile state (XCR0 bits 17-18), and, on
// Linux, this process's permission to use the tile data (asked once; the permission is per process).
bool amx_usable() {
    static const bool usable = [] {
        unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
        if (!avx512_vnni() || !__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return false;
        const bool tile = (edx >> 24) & 1u, int8 = (edx >> 25) & 1u, vbmi2 = (ecx >> 6) & 1u;
        if (!(tile && int8 && vbmi2)) return false;
        unsigned xcr0_lo = 0, xcr0_hi = 0;
        asm volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
        if ((xcr0_lo & (3u << 17)) != (3u << 17)) return false;
#ifdef __linux__
        constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
        return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
#else
        return false;
#endif
    }();
    return usable;
}

bool cpu_has(int isa) {
    switch (isa) {
        case POFA_ISA_SCALAR: return true;
        case POFA_ISA_AVX2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
        case POFA_ISA_AVX512_VNNI: return avx512_vnni();
        case POFA_ISA_AMX: return amx_usable();
        default: return false;
    }
}

// Parallel over row blocks: every thread reads all activations (small) and writes disjoint output columns.
template <typename Body>
void parallel_rows(int64_t blocks, int threads, Body body) {
    const int n = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(threads, blocks)));
    if (n <= 1) {
        body(0, blocks);
        return;
    }
    std::vector<std::thread> pool;
    for (int i = 0; i < n; ++i) {
        const int64_t begin = blocks * i / n, end = blocks * (i + 1) / n;
        pool.emplace_back([=] { body(begin, end); });
    }
    for (auto& t : pool) t.join();
}

int run(const pofa_weights* w, const Input& x, int64_t tokens, float scale, int32_t zp, const Output& out, int isa,
        int threads) {
    const Kernel* kernel = kernel_for(isa);
    if (kernel == nullptr || w == nullptr || tokens < 0 || !valid_weights(*w)) return -1;
    if (tokens == 0 || w->rows == 0) return 0;
    const std::unique_ptr<PreparedWeights> prepared = kernel->prepare ? kernel->prepare(*w) : nullptr;
    const Kernel& k = kernel_for_form(*kernel, prepared.get());
    std::vector<uint8_t> buffer(k.activation_bytes(tokens, w->cols) + 128);  // zero-filled
    uint8_t* x4 = align64(buffer.data());
    pack_input(k, x, tokens, w->cols, scale, zp, x4, 0, tokens);
    const Activations a{x4, tokens, padded_tokens(tokens)};
    parallel_rows(row_blocks(*w), threads, [&](int64_t b, int64_t e) { k.compute(*w, prepared.get(), a, out, b, e); });
    return 0;
}

}  // namespace

int resolve_isa(int isa) { return isa == POFA_ISA_AUTO ? pofa_isa_selected() : isa; }

bool valid_weights(const pofa_weights& w) {
    if (w.rows < 0 || w.cols < 0 || w.row_ptr == nullptr || w.row_ptr[0] != 0) return false;
    const int32_t groups = col_groups(w.cols);
    for (int32_t n = 0; n < w.rows; ++n) {
        if (w.row_ptr[n + 1] < w.row_ptr[n]) return false;
        for (int32_t j = w.row_ptr[n]; j < w.row_ptr[n + 1]; ++j) {
            if (w.groups[j] >= groups || (j > w.row_ptr[n] && w.groups[j] <= w.groups[j - 1])) return false;
        }
    }
    return true;
}

const Kernel& kernel_for_form(const Kernel& path, const PreparedWeights* form) {
    // Only the AVX-512 paths prepare forms, so the check never runs where AVX-512 does not.
    return form != nullptr && is_blocks_form(*form) ? kernel_avx512_vnni() : path;
}

const Kernel* kernel_for(int isa) {
    isa = resolve_isa(isa);
    if (isa < 0 || isa >= POFA_ISA_COUNT || !cpu_has(isa)) return nullptr;
    switch (isa) {
        case POFA_ISA_AMX: return &kernel_amx();
        case POFA_ISA_AVX512_VNNI: return &kernel_avx512_vnni();
        case POFA_ISA_AVX2: return &kernel_avx2();
        default: return &kernel_scalar();
    }
}

}  // namespace pofa

extern "C" {

const char* pofa_isa_name(int isa) { return isa >= 0 && isa < POFA_ISA_COUNT ? pofa::kNames[isa] : nullptr; }

int pofa_isa_supported(int isa) { return pofa::cpu_has(isa) ? 1 : 0; }

int pofa_isa_selected(void) {
    const char* forced = std::getenv("PRUNEOFA_SPARSE_ISA");
    if (forced != nullptr && *forced != '\0') {
        for (int isa = 0; isa < POFA_ISA_COUNT; ++isa) {
            if (std::strcmp(forced, pofa::kNames[isa]) == 0) return pofa::cpu_has(isa) ? isa : -1;
        }
        return -1;
    }
    for (int isa = POFA_ISA_COUNT - 1; isa > 0; --isa) {
        if (pofa::cpu_has(isa)) return isa;
    }
    return POFA_ISA_SCALAR;
}

int pofa_sparse_gemm_s32(const pofa_weights* w, const uint8_t* x, int64_t tokens, int32_t* out, int isa,
                         int threads) {
    return pofa::run(w, pofa::Input{x, nullptr}, tokens, 1.0f, 0, pofa::Output{out, nullptr, nullptr, nullptr},
                     isa, threads);
}

int pofa_sparse_linear_act_f32(const pofa_weights* w, const float* x, int64_t tokens, float x_scale,
                               int32_t x_zero_point, const float* mult, const float* offset, float* out,
                               int activation, int isa, int threads) {
    return pofa_sparse_linear_typed(w, x, POFA_TYPE_F32, tokens, x_scale, x_zero_point, mult, offset, activation, out,
                                    POFA_TYPE_F32, 1.0f, 0, isa, threads);
}

int pofa_sparse_linear_typed(const pofa_weights* w, const void* x, int x_type, int64_t tokens, float x_scale,
                             int32_t x_zero_point, const float* mult, const float* offset, int activation, void* out,
                             int out_type, float out_scale, int32_t out_zero_point, int isa, int threads) {
    if (x == nullptr || out == nullptr || mult == nullptr || offset == nullptr) return -1;
    if (activation != POFA_ACT_NONE && activation != POFA_ACT_GELU) return -1;
    pofa::Input in{nullptr, nullptr};
    switch (x_type) {
        case POFA_TYPE_F32: in.f32 = static_cast<const float*>(x); break;
        case POFA_TYPE_U8: in.u8 = static_cast<const uint8_t*>(x); break;
        default: return -1;
    }
    if (x_type != POFA_TYPE_U8 && x_scale <= 0.0f) return -1;
    pofa::Output o{nullptr, nullptr, mult, offset, activation};
    switch (out_type) {
        case POFA_TYPE_F32: o.f32 = static_cast<float*>(out); break;
        case POFA_TYPE_U8:
            if (out_scale <= 0.0f || out_zero_point < 0 || out_zero_point > 255) return -1;
            o.u8 = static_cast<uint8_t*>(out);
            o.out_scale = out_scale;
            o.out_zero_point = out_zero_point;
            break;
        default: return -1;
    }
    return pofa::run(w, in, tokens, x_scale, x_zero_point, o, isa, threads);
}

int pofa_sparse_linear_f32(const pofa_weights* w, const float* x, int64_t tokens, float x_scale, int32_t x_zero_point,
                           const float* mult, const float* offset, float* out, int isa, int threads) {
    return pofa_sparse_linear_act_f32(w, x, tokens, x_scale, x_zero_point, mult, offset, out, POFA_ACT_NONE, isa,
                                      threads);
}

}  // extern "C"
