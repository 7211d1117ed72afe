// What the engine ops (openvino_op.cpp, and onnxruntime_op.cpp for the probe) keep per layer and per thread: the
// packed weights bytes of model.sparse.onnx read once into aligned arrays, each kernel path's prepared form of them
// built on that path's first call, and the calling thread's activation scratch.
#pragma once

#include <array>
#include <cstring>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernel.hpp"

namespace pofa {

// One layer's weights. The packed bytes are row_ptr int32 [rows + 1] | values int32 [G] | groups uint16 [G], with
// G = row_ptr[rows] (pruneofa/kernels/group_weights.py); a tensor's buffer need not be aligned for int32, so they
// are copied. Thread-safe: every thread of every call may ask; the work is done once.
class PackedLayer {
public:
    // The weights, read from `bytes` on the first call (std::runtime_error naming the problem if malformed).
    const pofa_weights& weights(const void* bytes, size_t size, int64_t rows, int64_t cols) {
        std::call_once(read_, [&] {
            const auto* in = static_cast<const uint8_t*>(bytes);
            const size_t ptr_bytes = static_cast<size_t>(rows + 1) * 4;
            if (size < ptr_bytes) throw std::runtime_error("pruneofa SparseInt8Linear: packed weights truncated");
            row_ptr_.resize(static_cast<size_t>(rows + 1));
            std::memcpy(row_ptr_.data(), in, ptr_bytes);
            const auto groups = static_cast<size_t>(row_ptr_.back());
            if (size != ptr_bytes + groups * 6) {
                throw std::runtime_error("pruneofa SparseInt8Linear: packed weights have " + std::to_string(size) +
                                         " bytes, expected " + std::to_string(ptr_bytes + groups * 6));
            }
            values_.resize(groups);
            groups_.resize(groups);
            std::memcpy(values_.data(), in + ptr_bytes, groups * 4);
            std::memcpy(groups_.data(), in + ptr_bytes + groups * 4, groups * 2);
            w_ = pofa_weights{static_cast<int32_t>(rows), static_cast<int32_t>(cols), row_ptr_.data(), groups_.data(),
                              values_.data()};
            if (!valid_weights(w_)) {
                throw std::runtime_error("pruneofa SparseInt8Linear: packed weights are malformed (row offsets or "
                                         "group numbers out of order); re-export the model");
            }
        });
        return w_;
    }

    // `kernel`'s own form of `w` (AMX: compressed tiles; the AVX-512 paths: the blocks form where it pays), built on
    // path `isa`'s first call; nullptr where the path reads pofa_weights as they are.
    const PreparedWeights* form(const Kernel& kernel, int isa, const pofa_weights& w) {
        if (kernel.prepare == nullptr) return nullptr;
        Form& slot = forms_[static_cast<size_t>(isa)];
        std::call_once(slot.once, [&] { slot.form = kernel.prepare(w); });
        return slot.form.get();
    }

private:
    struct Form {
        std::once_flag once;
        std::unique_ptr<PreparedWeights> form;
    };
    std::once_flag read_;
    std::array<Form, POFA_ISA_COUNT> forms_;
    std::vector<int32_t> row_ptr_;
    std::vector<int32_t> values_;
    std::vector<uint16_t> groups_;
    pofa_weights w_{};
};

// The calling thread's scratch, kept between calls (a fresh vector of a few hundred KB is an mmap + page faults
// on every call), 64-byte aligned (align64), zeroed where the caller's packing leaves padding to it.
inline uint8_t* thread_scratch(size_t bytes, bool zeroed) {
    thread_local std::vector<uint8_t> buffer;
    if (buffer.size() < bytes + 64) buffer.resize(bytes + 64);
    uint8_t* aligned = align64(buffer.data());
    if (zeroed) std::memset(aligned, 0, bytes);
    return aligned;
}

}  // namespace pofa
