// onnxruntime custom-op library: the SparseInt8Linear op of model.sparse.onnx run by onnxruntime, the second of
// the two engines issue 14 asked to plug the kernel into. Built only for the probe that chose between them
// (benchmarks/onnxruntime_probe.py; CMake option POFA_ONNXRUNTIME_INCLUDE_DIR), because onnxruntime's wheel
// ships no C API header; pruneofa itself runs the op in OpenVINO (NOTES.md, "Sparse kernel": why).
//
// It runs the op's unfused form, which `sparse_form.rewrite(model, fuse=False)` writes: one op per Linear, f32
// input, one f32 output, GELU folded into the epilogue (inputs 0 x f32 [..., cols], 1 packed weights u8, 2 mult
// f32 [rows], 3 offset f32 [rows]; attributes rows, cols, x_scale, x_zero_point, activation, linears). A node
// with any of the fused forms' attributes is refused when the session is created. The kernels, their dispatch
// ($PRUNEOFA_SPARSE_ISA) and the work split are the OpenVINO op's: whole 64-token blocks per thread where the
// path can split tokens, else quantized in parallel and then split by output rows; the threads are onnxruntime's
// intra-op pool (KernelContext_ParallelFor).
//
// Register with `SessionOptions.register_custom_ops_library(path)`.
#define ORT_API_MANUAL_INIT
#include <onnxruntime_cxx_api.h>
#undef ORT_API_MANUAL_INIT

#include <array>
#include <mutex>
#include <string>
#include <vector>

#include "kernel.hpp"
#include "packed_layer.hpp"

namespace pofa {
namespace {

constexpr const char* kDomain = "ai.pruneofa";
constexpr const char* kOpType = "SparseInt8Linear";
// Attributes of the fused forms (sparse_form.rewrite with fuse=True), which this library does not run.
constexpr std::array<const char*, 7> kFusedAttributes = {"splits",     "output_type", "transposed", "heads",
                                                         "input_heads", "norm_epsilon", "then_rows"};

// Whether the node has attribute `name` (of any of the types the op's attributes have): the C API has no
// look-up by name alone, only a typed read that fails.
bool has_attribute(const Ort::ConstKernelInfo& info, const char* name) {
    const auto readable = [&](const auto& read) {
        try {
            read();
            return true;
        } catch (const Ort::Exception&) {
            return false;
        }
    };
    return readable([&] { (void)info.GetAttribute<int64_t>(name); }) ||
           readable([&] { (void)info.GetAttribute<float>(name); }) ||
           readable([&] { (void)info.GetAttribute<std::string>(name); }) ||
           readable([&] { (void)info.GetAttributes<int64_t>(name); });
}

class SparseLinearKernel {
public:
    explicit SparseLinearKernel(const OrtKernelInfo* raw) {
        const Ort::ConstKernelInfo info(raw);
        rows_ = info.GetAttribute<int64_t>("rows");
        cols_ = info.GetAttribute<int64_t>("cols");
        x_scale_ = info.GetAttribute<float>("x_scale");
        x_zero_point_ = static_cast<int32_t>(info.GetAttribute<int64_t>("x_zero_point"));
        if (has_attribute(info, "activation")) activation_ = info.GetAttribute<int64_t>("activation");
        for (const char* name : kFusedAttributes) {
            if (has_attribute(info, name)) {
                throw Ort::Exception(std::string("pruneofa SparseInt8Linear (onnxruntime): attribute '") + name +
                                         "' belongs to a fused form this library does not run; rewrite the model "
                                         "with sparse_form.rewrite(model, fuse=False)",
                                     ORT_INVALID_ARGUMENT);
            }
        }
        if (activation_ != POFA_ACT_NONE && activation_ != POFA_ACT_GELU) {
            throw Ort::Exception("pruneofa SparseInt8Linear (onnxruntime): activation must be 0 or 1",
                                 ORT_INVALID_ARGUMENT);
        }
    }

    // An error as onnxruntime's status (its message reaches the caller), not an exception across the C API.
    OrtStatusPtr ComputeV2(OrtKernelContext* raw) {
        return as_status([&] { Compute(raw); });
    }

    template <typename F>
    static OrtStatusPtr as_status(const F& f) {
        try {
            f();
            return nullptr;
        } catch (const Ort::Exception& e) {
            return Ort::GetApi().CreateStatus(e.GetOrtErrorCode(), e.what());
        } catch (const std::exception& e) {
            return Ort::GetApi().CreateStatus(ORT_FAIL, e.what());
        }
    }

private:
    void Compute(OrtKernelContext* raw) {
        Ort::KernelContext context(raw);
        const int isa = resolve_isa(POFA_ISA_AUTO);
        const Kernel* path = kernel_for(isa);
        if (path == nullptr) {
            throw Ort::Exception("pruneofa SparseInt8Linear: $PRUNEOFA_SPARSE_ISA names a path this CPU cannot run",
                                 ORT_FAIL);
        }
        const Ort::ConstValue x = context.GetInput(0);
        const Ort::ConstValue packed = context.GetInput(1);
        const pofa_weights& w = layer_.weights(packed.GetTensorData<uint8_t>(),
                                               packed.GetTensorTypeAndShapeInfo().GetElementCount(), rows_, cols_);
        const PreparedWeights* form = layer_.form(*path, isa, w);
        const Kernel& kernel = kernel_for_form(*path, form);
        std::vector<int64_t> shape = x.GetTensorTypeAndShapeInfo().GetShape();
        if (shape.empty() || shape.back() != cols_) {
            throw Ort::Exception("pruneofa SparseInt8Linear: input 0's last dimension must be cols", ORT_INVALID_ARGUMENT);
        }
        const int64_t tokens = static_cast<int64_t>(x.GetTensorTypeAndShapeInfo().GetElementCount()) / cols_;
        shape.back() = rows_;
        Ort::UnownedValue y = context.GetOutput(0, shape.data(), shape.size());
        if (tokens == 0) return;
        Output out{nullptr, y.GetTensorMutableData<float>(), context.GetInput(2).GetTensorData<float>(),
                   context.GetInput(3).GetTensorData<float>(), static_cast<int>(activation_)};
        Work work{this, &kernel, &w, form, Input{nullptr, x.GetTensorData<float>()}, tokens, out, nullptr};
        // The calling thread's scratch, shared by the pool's workers.
        work.x4 = thread_scratch(kernel.activation_bytes(tokens, w.cols) + 64, !kernel.fills_layout);
        const int64_t padded = padded_tokens(tokens);
        if (kernel.token_block_offset != nullptr) {  // each unit: one block of kMaxTile tokens, all rows
            context.ParallelFor(&Work::token_block, static_cast<size_t>((padded + kMaxTile - 1) / kMaxTile), 0, &work);
            return;
        }
        context.ParallelFor(&Work::pack_chunk, static_cast<size_t>(padded / kTokenAlign), 0, &work);
        // Pairs of row blocks: the AMX path expands two output blocks' weight tiles together.
        context.ParallelFor(&Work::row_pair, static_cast<size_t>((row_blocks(w) + 1) / 2), 0, &work);
    }

    struct Work {
        const SparseLinearKernel* op;
        const Kernel* kernel;
        const pofa_weights* w;
        const PreparedWeights* form;
        Input x;
        int64_t tokens;
        Output out;
        uint8_t* x4;

        static void token_block(void* data, size_t i) {
            const auto& s = *static_cast<const Work*>(data);
            const int64_t begin = static_cast<int64_t>(i) * kMaxTile;
            const int64_t end = std::min(s.tokens, begin + kMaxTile);
            const int64_t padded_end = std::min(padded_tokens(s.tokens), begin + kMaxTile);
            pack_input(*s.kernel, s.x, s.tokens, s.w->cols, s.op->x_scale_, s.op->x_zero_point_, s.x4, begin, end);
            const Activations range{s.x4 + s.kernel->token_block_offset(begin, s.w->cols), end - begin,
                                    padded_end - begin};
            Output mine = s.out;
            mine.token0 = begin;
            s.kernel->compute(*s.w, s.form, range, mine, 0, row_blocks(*s.w));
        }
        static void pack_chunk(void* data, size_t i) {
            const auto& s = *static_cast<const Work*>(data);
            const int64_t begin = static_cast<int64_t>(i) * kTokenAlign;
            const int64_t end = std::min(s.tokens, begin + kTokenAlign);
            if (begin < end) {
                pack_input(*s.kernel, s.x, s.tokens, s.w->cols, s.op->x_scale_, s.op->x_zero_point_, s.x4, begin, end);
            }
        }
        static void row_pair(void* data, size_t i) {
            const auto& s = *static_cast<const Work*>(data);
            const Activations a{s.x4, s.tokens, padded_tokens(s.tokens)};
            const int64_t begin = static_cast<int64_t>(i) * 2;
            s.kernel->compute(*s.w, s.form, a, s.out, begin, std::min(begin + 2, row_blocks(*s.w)));
        }
    };

    int64_t rows_ = 0;
    int64_t cols_ = 0;
    float x_scale_ = 1.0f;
    int32_t x_zero_point_ = 0;
    int64_t activation_ = POFA_ACT_NONE;
    PackedLayer layer_;
};

struct SparseLinearOp : Ort::CustomOpBase<SparseLinearOp, SparseLinearKernel, /*WithStatus=*/true> {
    OrtStatusPtr CreateKernelV2(const OrtApi& /*api*/, const OrtKernelInfo* info, void** kernel) const {
        return SparseLinearKernel::as_status([&] { *kernel = new SparseLinearKernel(info); });
    }
    const char* GetName() const { return kOpType; }
    size_t GetInputTypeCount() const { return 4; }
    ONNXTensorElementDataType GetInputType(size_t index) const {
        return index == 1 ? ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8 : ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
    }
    size_t GetOutputTypeCount() const { return 1; }
    ONNXTensorElementDataType GetOutputType(size_t /*index*/) const { return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT; }
};

}  // namespace
}  // namespace pofa

extern "C" POFA_API OrtStatus* RegisterCustomOps(OrtSessionOptions* options, const OrtApiBase* api_base) {
    Ort::InitApi(api_base->GetApi(ORT_API_VERSION));
    static pofa::SparseLinearOp op;
    static std::vector<Ort::CustomOpDomain> domains;  // each must outlive the sessions made with its options
    static std::mutex lock;
    try {
        const std::lock_guard<std::mutex> guard(lock);
        domains.emplace_back(pofa::kDomain);
        domains.back().Add(&op);
        Ort::UnownedSessionOptions(options).Add(domains.back());
    } catch (const Ort::Exception& e) {
        return Ort::GetApi().CreateStatus(e.GetOrtErrorCode(), e.what());
    }
    return nullptr;
}
