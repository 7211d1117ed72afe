// OpenVINO extension: the SparseInt8Linear op, so that attention, LayerNorm and GELU keep OpenVINO's own fast
// kernels while the Linear layers run the zero-skipping kernel. OpenVINO's CPU plugin runs a custom op through
// its evaluate() (on its own inference threads; the row blocks are spread with OpenVINO's parallel_for, i.e.
// inside the plugin's thread arena and its INFERENCE_NUM_THREADS). The ONNX frontend maps the custom-domain node
// `ai.pruneofa.SparseInt8Linear` to it, so `core.add_extension(lib); core.read_model("model.sparse.onnx")` works.
//
// Inputs: 0 x f32 or u8 [..., cols] (u8: already quantized, as the op before it wrote it; x_scale and
// x_zero_point then unused); 1 packed weights u8 (row_ptr int32 [rows + 1] | values int32 [G] | groups
// uint16 [G], G = row_ptr[rows]); 2 mult f32 [rows]; 3 offset f32 [rows]. Attributes: rows, cols, x_scale,
// x_zero_point, activation (optional: 0 none, 1 GELU, fused into the epilogue so the FFN's GELU is not a
// separate pass over the f32 output, as OpenVINO fuses it into its own FullyConnected), linears (optional, default
// 1: how many of the model's Linears the op computes, e.g. 3 when attention's query, key and value, which read one
// quantized input, are merged into one op; bookkeeping only), splits (optional: the rows of each output, e.g.
// query, key and value each in its own output, so no Split copies them; all but the last a multiple of 16),
// output_type (optional: "f32", the default, or "u8" = quantized with out_scale and out_zero_point as the next
// op's input, when that op is its only reader: the FFN's first Linear feeding its second, one byte per value
// instead of four and no second quantizing pass), transposed (optional, per output: 1 = [batch, rows, seq] for an
// input [batch, seq, cols], each sequence's result transposed, as attention's key is before its product with the
// query; f32 only), heads (optional, per output: H > 0 = [batch, H, seq, rows / H] for an input [batch, seq, cols],
// split into attention heads as attention reads its query and value, rows / H a multiple of 16; f32 only),
// input_heads (optional: H > 0 = input 0 is [batch, H, seq, cols / H], attention's context as its product with
// the value leaves it, read in place of the transpose and reshape that make it [batch, seq, cols]; f32, cols / H
// a multiple of 16), norm_epsilon (optional, with inputs 4 residual f32 [..., rows], 5 gamma f32 [rows], 6 beta
// f32 [rows]: the result is LayerNorm(y + residual) * gamma + beta over its rows, the residual Add and LayerNorm
// that follow attention's output Linear and the FFN's second in BERT, done as the op's last pass over its own
// output while it is in cache instead of as two more nodes; one f32 output). Outputs: [..., rows] (or
// [..., splits[i]]), of output_type.
// See pruneofa_sparse.h for the arithmetic.
//
// A chain (then_* attributes): the op runs further Linears after its own, each reading the one before, with
// their constants as inputs 7.. (per stage: packed, mult, offset, and gamma, beta with a norm): then_rows,
// then_activation, then_x_scale, then_x_zero_point, then_norm_epsilon (0: none), then_norm_residual (k: stage k's
// result, 0 the op's own Linear; -1 input 4), then_u8_input (1: reads the stage before as u8, which that stage
// writes quantized with this one's x_scale / x_zero_point). BERT's layer tail (attention's output Linear + norm,
// the FFN's first with GELU, its second + norm, whose residual is the first's result) is one chain: each thread
// takes its tokens through all three with no fork/join between them and nothing handed back to OpenVINO (each
// op is a node OpenVINO infers shapes for, allocates and synchronizes on every inference; MiniLM: 26 -> 14 ops,
// +2.5% at batch 1). The output is the last stage's rows, f32.
//
// Held constants: when the ONNX frontend gives the packed weights, mult, offset (and gamma, beta) as Constants,
// as every model.sparse.onnx does, the op keeps them itself and its only inputs are x (and the residual). The
// CPU plugin infers a custom op's output shapes on every inference of a dynamic-shape model by cloning it with
// each input turned into a new Constant node: measured on a chain of ops, 7.9 us per op of dynamic-shape cost with
// 4 inputs, 4.6 with 1 (MiniLM +7.8% at batch 1). An OpenVINO IR saved from such a model would not carry the held
// constants: read model.sparse.onnx instead (pruneofa never writes the op to IR).
#include <algorithm>
#include <cstring>
#include <openvino/core/extension.hpp>
#include <openvino/core/op_extension.hpp>
#include <openvino/core/parallel.hpp>
#include <openvino/op/constant.hpp>
#include <openvino/frontend/onnx/extension/conversion.hpp>
#include <openvino/op/op.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernel.hpp"
#include "packed_layer.hpp"

#ifndef POFA_OPENVINO_BUILD_VERSION
#define POFA_OPENVINO_BUILD_VERSION "unknown"
#endif

namespace pofa {

class SparseInt8Linear : public ov::op::Op {
public:
    OPENVINO_OP("SparseInt8Linear", "pruneofa");

    SparseInt8Linear() = default;
    struct Options {
        int64_t activation = POFA_ACT_NONE;  // absent from files written before it existed: none
        int64_t linears = 1;
        std::vector<int64_t> splits;  // empty: one output of all rows
        std::string output_type;      // empty: f32
        std::vector<int64_t> transposed;  // per output, 1: [batch, rows, seq]; empty: none
        std::vector<int64_t> heads;       // per output, H > 0: [batch, H, seq, rows / H]; empty: none
        int64_t input_heads = 0;          // H > 0: input 0 is [batch, H, seq, cols / H]
        int64_t norm_residual = -1;       // a chain stage's norm: -1 the op's residual input, k stage k's result
        int64_t u8_input = 0;             // a chain stage: reads the stage before as u8
        float out_scale = 0.0f;
        int64_t out_zero_point = 0;
        float norm_epsilon = 0.0f;  // with inputs 4..6: the residual Add + LayerNorm after the Linear
    };

    // The logical inputs 1-3, 5, 6 the op holds instead of reading them as inputs (see the top of the file).
    struct Held {
        std::shared_ptr<ov::op::v0::Constant> packed, mult, offset, gamma, beta;  // gamma, beta: with a norm
    };

    using Stages = std::vector<std::shared_ptr<const SparseInt8Linear>>;

    SparseInt8Linear(const ov::OutputVector& args, int64_t rows, int64_t cols, float x_scale, int64_t x_zero_point,
                     Options options, std::shared_ptr<const Held> held = nullptr, Stages then = {})
        : Op(args),
          rows_(rows),
          cols_(cols),
          x_scale_(x_scale),
          x_zero_point_(x_zero_point),
          options_(std::move(options)),
          held_(std::move(held)),
          then_(std::move(then)) {
        constructor_validate_and_infer_types();
    }

    void validate_and_infer_types() override {
        if (held_ != nullptr) {
            NODE_VALIDATION_CHECK(this, get_input_size() == 1 || get_input_size() == 2,
                                  "SparseInt8Linear with held constants takes x (and the residual), got ",
                                  get_input_size(), " inputs");
            NODE_VALIDATION_CHECK(this, (get_input_size() == 2) == (held_->gamma != nullptr && held_->beta != nullptr),
                                  "a residual norm needs the residual, gamma and beta");
            NODE_VALIDATION_CHECK(this, held_->packed->get_element_type() == ov::element::u8 &&
                                            held_->mult->get_element_type() == ov::element::f32 &&
                                            held_->offset->get_element_type() == ov::element::f32,
                                  "packed weights must be u8, mult and offset f32");
            const size_t row_bytes = static_cast<size_t>(rows_) * sizeof(float);
            for (const auto& c : {held_->mult, held_->offset, held_->gamma, held_->beta}) {
                NODE_VALIDATION_CHECK(this, c == nullptr || (c->get_element_type() == ov::element::f32 &&
                                                             c->get_byte_size() == row_bytes),
                                      "mult, offset, gamma and beta must be f32, one per row");
            }
        } else {
            NODE_VALIDATION_CHECK(this, get_input_size() == 4 || get_input_size() == 7,
                                  "SparseInt8Linear takes 4 inputs (7 with a residual norm), got ", get_input_size());
            NODE_VALIDATION_CHECK(this, get_input_element_type(1) == ov::element::u8, "packed weights must be u8");
        }
        NODE_VALIDATION_CHECK(this, options_.activation == POFA_ACT_NONE || options_.activation == POFA_ACT_GELU,
                              "activation must be 0 (none) or 1 (gelu), got ", options_.activation);
        const ov::element::Type type = get_input_element_type(0);
        NODE_VALIDATION_CHECK(
            this, type == ov::element::f32 || type == ov::element::u8 || type.is_dynamic(),
            "input must be f32 or u8, got ", type);
        const ov::element::Type out_type = output_type();
        NODE_VALIDATION_CHECK(this, out_type != ov::element::dynamic, "output_type must be f32 or u8, got '",
                              options_.output_type, "'");
        NODE_VALIDATION_CHECK(this,
                              out_type != ov::element::u8 ||
                                  (options_.out_scale > 0.0f && options_.out_zero_point >= 0 &&
                                   options_.out_zero_point <= 255),
                              "a u8 output needs out_scale > 0 and out_zero_point in 0..255");
        const std::vector<int64_t> parts = output_rows();
        int64_t total = 0;
        for (size_t i = 0; i < parts.size(); ++i) {
            NODE_VALIDATION_CHECK(this, parts[i] > 0 && (i + 1 == parts.size() || parts[i] % kRowBlock == 0),
                                  "splits must be positive and, but for the last, multiples of ", kRowBlock);
            total += parts[i];
        }
        NODE_VALIDATION_CHECK(this, total == rows_, "splits must add up to rows=", rows_);
        NODE_VALIDATION_CHECK(this, options_.transposed.empty() || options_.transposed.size() == parts.size(),
                              "transposed needs one entry per output");
        NODE_VALIDATION_CHECK(this, !any_transposed() || out_type == ov::element::f32, "a transposed output is f32");
        NODE_VALIDATION_CHECK(this, options_.heads.empty() || options_.heads.size() == parts.size(),
                              "heads needs one entry per output");
        for (size_t i = 0; i < parts.size(); ++i) {
            if (heads(i) == 0) continue;
            NODE_VALIDATION_CHECK(this, out_type == ov::element::f32 && !transposed(i) && heads(i) > 0 &&
                                            parts[i] % heads(i) == 0 && parts[i] / heads(i) % kRowBlock == 0,
                                  "an output split into heads is f32, not transposed, and its rows / heads a "
                                  "multiple of ", kRowBlock);
        }
        if (normed()) {
            NODE_VALIDATION_CHECK(this, options_.norm_epsilon > 0.0f, "a residual norm needs norm_epsilon > 0");
            NODE_VALIDATION_CHECK(this, parts.size() == 1 && out_type == ov::element::f32 && !any_transposed(),
                                  "a residual norm needs one f32 output, not transposed");
            NODE_VALIDATION_CHECK(this, get_input_element_type(residual_input()).compatible(ov::element::f32),
                                  "the residual must be f32");
        }
        ov::PartialShape rows_shape = get_input_partial_shape(0);  // [..., cols]: the input as rows of cols
        if (options_.input_heads != 0) {
            NODE_VALIDATION_CHECK(this, options_.input_heads > 0 && cols_ % options_.input_heads == 0 &&
                                            cols_ / options_.input_heads % kRowBlock == 0 &&
                                            type.compatible(ov::element::f32) && rows_shape.rank().compatible(4),
                                  "an input split into heads is f32 [batch, H, seq, cols / H], cols / H a multiple "
                                  "of ", kRowBlock);
            if (rows_shape.rank().is_static()) {
                NODE_VALIDATION_CHECK(this, rows_shape[1].compatible(options_.input_heads) &&
                                                rows_shape[3].compatible(cols_ / options_.input_heads),
                                      "input 0 must be [batch, ", options_.input_heads, ", seq, ",
                                      cols_ / options_.input_heads, "]");
                rows_shape = ov::PartialShape{rows_shape[0], rows_shape[2], cols_};
            } else {
                rows_shape = ov::PartialShape::dynamic(3);
            }
        }
        set_output_size(parts.size());
        for (size_t i = 0; i < parts.size(); ++i) {
            ov::PartialShape shape = rows_shape;
            if (transposed(i)) {
                NODE_VALIDATION_CHECK(this, shape.rank().compatible(3), "a transposed output needs a 3-d input");
                shape = shape.rank().is_static() ? ov::PartialShape{shape[0], parts[i], shape[1]}
                                                 : ov::PartialShape::dynamic(3);
            } else if (heads(i) > 0) {
                NODE_VALIDATION_CHECK(this, shape.rank().compatible(3), "an output split into heads needs a 3-d input");
                shape = shape.rank().is_static()
                            ? ov::PartialShape{shape[0], heads(i), shape[1], parts[i] / heads(i)}
                            : ov::PartialShape::dynamic(4);
            } else if (shape.rank().is_static() && shape.rank().get_length() >= 1) {
                const auto last = shape.rank().get_length() - 1;
                NODE_VALIDATION_CHECK(this, shape[last].compatible(cols_), "input's last dim must be cols=", cols_);
                shape[last] = parts[i];
            }
            set_output_type(i, out_type, shape);
        }
        if (!then_.empty()) {  // a chain: the last stage's rows come out
            NODE_VALIDATION_CHECK(this, held_ != nullptr && normed() && parts.size() == 1 &&
                                            out_type == ov::element::f32 && !any_transposed() && options_.heads.empty(),
                                  "a chain starts with a residual norm of held constants and has one f32 output");
            NODE_VALIDATION_CHECK(this, type.compatible(ov::element::f32), "a chain's input is f32");
            int64_t cols = rows_;
            for (size_t k = 0; k < then_.size(); ++k) {
                NODE_VALIDATION_CHECK(this, then_[k]->cols_ == cols && then_[k]->held_ != nullptr,
                                      "chain stage ", k + 1, " must read the ", cols, " rows of the stage before");
                const int64_t residual = then_[k]->options_.norm_residual;
                NODE_VALIDATION_CHECK(this, !then_[k]->normed() || residual < static_cast<int64_t>(k + 1),
                                      "chain stage ", k + 1, "'s residual must be an earlier stage's result");
                NODE_VALIDATION_CHECK(this,
                                      !then_[k]->normed() || residual < 0 ||
                                          then_[static_cast<size_t>(residual)]->options_.u8_input == 0,
                                      "chain stage ", k + 1, "'s residual must be a stage that keeps its result as f32");
                cols = then_[k]->rows_;
            }
            ov::PartialShape shape = rows_shape;
            if (shape.rank().is_static()) shape[shape.rank().get_length() - 1] = cols;
            set_output_type(0, ov::element::f32, shape);
        }
    }

    std::shared_ptr<ov::Node> clone_with_new_inputs(const ov::OutputVector& args) const override {
        auto clone =
            std::make_shared<SparseInt8Linear>(args, rows_, cols_, x_scale_, x_zero_point_, options_, held_, then_);
        if (held_ != nullptr) clone->prepared_ = prepared_;  // the same constants: their prepared forms too
        return clone;
    }

    bool visit_attributes(ov::AttributeVisitor& visitor) override {
        visitor.on_attribute("rows", rows_);
        visitor.on_attribute("cols", cols_);
        visitor.on_attribute("x_scale", x_scale_);
        visitor.on_attribute("x_zero_point", x_zero_point_);
        visitor.on_attribute("activation", options_.activation);
        visitor.on_attribute("linears", options_.linears);
        visitor.on_attribute("splits", options_.splits);
        visitor.on_attribute("output_type", options_.output_type);
        visitor.on_attribute("out_scale", options_.out_scale);
        visitor.on_attribute("out_zero_point", options_.out_zero_point);
        visitor.on_attribute("transposed", options_.transposed);
        visitor.on_attribute("heads", options_.heads);
        visitor.on_attribute("input_heads", options_.input_heads);
        visitor.on_attribute("norm_epsilon", options_.norm_epsilon);
        return true;
    }

    bool has_evaluate() const override { return true; }

    bool evaluate(ov::TensorVector& outputs, const ov::TensorVector& inputs) const override {
        const int isa = resolve_isa(POFA_ISA_AUTO);  // per call, so $PRUNEOFA_SPARSE_ISA can switch paths
        const Kernel* path = kernel_for(isa);
        if (path == nullptr) {
            throw std::runtime_error("pruneofa SparseInt8Linear: $PRUNEOFA_SPARSE_ISA names a path this CPU cannot "
                                     "run (use scalar, avx2, avx512_vnni or amx, or unset it)");
        }
        if (!then_.empty()) return evaluate_chain(outputs, inputs, *path, isa);
        const pofa_weights& w = weights(constant(inputs, 1));
        const PreparedWeights* form = prepared_form(*path, isa, w);
        const Kernel* kernel = &kernel_for_form(*path, form);
        const ov::element::Type in_type = inputs[0].get_element_type();
        Input x{nullptr, nullptr};  // {u8, f32}
        const ov::Shape in_shape = rows_shape(inputs[0].get_shape(), x.layout);
        const std::vector<Output> outs = bind_outputs(outputs, inputs, in_shape);
        const int64_t tokens = static_cast<int64_t>(ov::shape_size(in_shape) / static_cast<size_t>(cols_));
        if (tokens == 0) return true;
        const ResidualNorm norm = residual_norm(inputs, tokens);
        const size_t bytes = kernel->activation_bytes(tokens, w.cols) + 64;
        if (in_type == ov::element::u8) {
            x.u8 = static_cast<const uint8_t*>(inputs[0].data());
        } else {
            x.f32 = inputs[0].data<const float>();
        }
        const int64_t blocks = row_blocks(w);
        // Quantized once, token ranges in parallel, then shared by every thread's rows. (Measured, idle, amx path:
        // each thread quantizing the whole input itself to save this fork/join was 5% slower at batch 1.)
        uint8_t* x4 = thread_scratch(bytes, !kernel->fills_layout);  // the calling (stream) thread's, shared by the workers
        if (kernel->token_block_offset != nullptr) {
            split_tokens(*kernel, form, w, x, tokens, x4, outs, norm);
            return true;
        }
        for_token_chunks(tokens, [&](int64_t begin, int64_t end) {
            pack_input(*kernel, x, tokens, w.cols, x_scale_, zero_point(), x4, begin, end);
        });
        const Activations a{x4, tokens, padded_tokens(tokens)};
        // One contiguous range of row blocks per OpenVINO thread: a path's per-call set-up (AMX's tile
        // configuration, its expanded-weights buffer) is paid once per thread, not once per block.
        ov::parallel_nt(0, [&](const int ithr, const int nthr) {
            compute_rows(*kernel, w, form, a, outs, blocks * ithr / nthr, blocks * (ithr + 1) / nthr);
        });
        if (norm.residual != nullptr) {  // each token's rows came from every thread: normalized once they are done
            for_tokens(tokens, [&](int64_t begin, int64_t end) {
                kernel->residual_norm(outs[0].f32, norm, w.rows, begin, end);
            });
        }
        return true;
    }

private:
    // One stage of a chain as run: its layer, its weights' form, the kernel that runs it, where its result goes
    // (the last stage's: the op's output).
    struct Step {
        const SparseInt8Linear* op;
        const pofa_weights* w;
        const PreparedWeights* form;
        const Kernel* kernel;
        float* f32;   // its result as floats, or
        uint8_t* u8;  // quantized for the next stage (which reads u8)
        uint8_t* x4;  // its input in its kernel's layout: each stage its own, as threads move on at their own pace
    };

    // The chain: every stage for each thread's own tokens in one parallel region where every stage's kernel can
    // split the tokens; else stage by stage, each split over the rows as a single op is.
    bool evaluate_chain(ov::TensorVector& outputs, const ov::TensorVector& inputs, const Kernel& path, int isa) const {
        Input x{nullptr, inputs[0].data<const float>()};
        const ov::Shape in_shape = rows_shape(inputs[0].get_shape(), x.layout);
        const int64_t tokens = static_cast<int64_t>(ov::shape_size(in_shape) / static_cast<size_t>(cols_));
        ov::Shape out_shape = in_shape;
        out_shape.back() = static_cast<size_t>(then_.back()->rows_);
        outputs[0].set_shape(out_shape);
        const ov::Tensor& residual = inputs[residual_input()];
        if (residual.get_element_type() != ov::element::f32 ||
            residual.get_size() != static_cast<size_t>(tokens * rows_)) {
            throw std::runtime_error("pruneofa SparseInt8Linear: the residual must be f32 shaped as the first stage's "
                                     "result");
        }
        if (tokens == 0) return true;
        std::vector<Step> steps;
        steps.reserve(then_.size() + 1);
        size_t bytes = 0, results = 0;
        bool split = true;
        for (size_t s = 0; s <= then_.size(); ++s) {
            const SparseInt8Linear* op = s == 0 ? this : then_[s - 1].get();
            const pofa_weights& w = op->weights(op->constant(inputs, 1));
            const PreparedWeights* form = op->prepared_form(path, isa, w);
            const Kernel* kernel = &kernel_for_form(path, form);
            steps.push_back(Step{op, &w, form, kernel, nullptr, nullptr, nullptr});
            bytes += (kernel->activation_bytes(tokens, w.cols) + 64 + 63) / 64 * 64;
            split = split && kernel->token_block_offset != nullptr;
            if (s < then_.size()) results += (static_cast<size_t>(tokens * op->rows_) * 4 + 63) / 64 * 64;
        }
        // The stages' results one after the other in the calling thread's second scratch, 64-byte aligned.
        thread_local std::vector<uint8_t> arena;
        if (arena.size() < results + 64) arena.resize(results + 64);
        uint8_t* at = align64(arena.data());
        for (size_t s = 0; s + 1 < steps.size(); ++s) {
            const bool u8 = then_[s]->options_.u8_input != 0;
            if (u8) {
                steps[s].u8 = at;
            } else {
                steps[s].f32 = reinterpret_cast<float*>(at);
            }
            at += (static_cast<size_t>(tokens * steps[s].op->rows_) * (u8 ? 1 : 4) + 63) / 64 * 64;
        }
        float* y = outputs[0].data<float>();
        uint8_t* layouts = thread_scratch(bytes, false);
        for (Step& step : steps) {
            step.x4 = layouts;
            layouts += (step.kernel->activation_bytes(tokens, step.w->cols) + 64 + 63) / 64 * 64;
        }
        const int64_t padded = padded_tokens(tokens);
        const auto input_of = [&](size_t s) {  // stage s reads the op's input, or the stage before's result
            if (s == 0) return x;
            return steps[s - 1].u8 != nullptr ? Input{steps[s - 1].u8, nullptr} : Input{nullptr, steps[s - 1].f32};
        };
        const auto output_of = [&](size_t s, int64_t token0) {
            const Step& step = steps[s];
            Output o{nullptr, s + 1 == steps.size() ? y : step.f32, constant_of(*step.op, 2),
                     constant_of(*step.op, 3), static_cast<int>(step.op->options_.activation)};
            if (step.u8 != nullptr) {
                o.u8 = step.u8;
                o.out_scale = then_[s]->x_scale_;
                o.out_zero_point = then_[s]->zero_point();
            }
            o.token0 = token0;
            return o;
        };
        const auto norm_of = [&](size_t s) {  // the residual: the op's input, or an earlier stage's result
            const SparseInt8Linear& op = *steps[s].op;
            const int64_t from = s == 0 ? -1 : op.options_.norm_residual;
            return ResidualNorm{from < 0 ? residual.data<const float>() : steps[static_cast<size_t>(from)].f32,
                                constant_of(op, 5), constant_of(op, 6), op.options_.norm_epsilon};
        };
        const auto pack = [&](size_t s, int64_t t_begin, int64_t t_end) {  // a thread's tokens, split mode
            const Step& step = steps[s];
            if (!step.kernel->fills_layout) {  // an earlier call's bytes may be where this one's padding goes
                const int64_t offset = step.kernel->token_block_offset(t_begin, step.w->cols);
                std::memset(step.x4 + offset, 0, step.kernel->activation_bytes(t_end - t_begin, step.w->cols));
            }
            pack_input(*step.kernel, input_of(s), tokens, step.w->cols, step.op->x_scale_, step.op->zero_point(),
                       step.x4, t_begin, t_end);
        };
        if (split) {
            for_token_blocks(tokens, [&](int64_t t_begin, int64_t t_end, int64_t padded_end) {
                for (size_t s = 0; s < steps.size(); ++s) {
                    const Step& step = steps[s];
                    pack(s, t_begin, t_end);
                    const Activations range{step.x4 + step.kernel->token_block_offset(t_begin, step.w->cols),
                                            t_end - t_begin, padded_end - t_begin};
                    step.kernel->compute(*step.w, step.form, range, output_of(s, t_begin), 0, row_blocks(*step.w));
                    if (step.op->normed()) {
                        float* result = s + 1 == steps.size() ? y : step.f32;
                        step.kernel->residual_norm(result, norm_of(s), step.w->rows, t_begin, t_end);
                    }
                }
            });
            return true;
        }
        for (size_t s = 0; s < steps.size(); ++s) {  // stage by stage: the rows split, as a single op's
            const Step& step = steps[s];
            if (!step.kernel->fills_layout) {
                std::memset(step.x4, 0, step.kernel->activation_bytes(tokens, step.w->cols));
            }
            for_token_chunks(tokens, [&](int64_t begin, int64_t end) {
                pack_input(*step.kernel, input_of(s), tokens, step.w->cols, step.op->x_scale_, step.op->zero_point(),
                           step.x4, begin, end);
            });
            const Activations a{step.x4, tokens, padded};
            const int64_t blocks = row_blocks(*step.w);
            ov::parallel_nt(0, [&](const int ithr, const int nthr) {
                step.kernel->compute(*step.w, step.form, a, output_of(s, 0), blocks * ithr / nthr,
                                     blocks * (ithr + 1) / nthr);
            });
            if (step.op->normed()) {
                float* result = s + 1 == steps.size() ? y : step.f32;
                for_tokens(tokens, [&](int64_t begin, int64_t end) {
                    step.kernel->residual_norm(result, norm_of(s), step.w->rows, begin, end);
                });
            }
        }
        return true;
    }

    // A held constant of `op` as floats (2 mult, 3 offset, 5 gamma, 6 beta).
    static const float* constant_of(const SparseInt8Linear& op, size_t i) {
        return op.constant(ov::TensorVector{}, i).as_f32();
    }

    // Each output shaped for `in_shape` and described for the kernels' epilogue: its rows of the layer, its type,
    // its layout.
    std::vector<Output> bind_outputs(ov::TensorVector& outputs, const ov::TensorVector& inputs,
                                     const ov::Shape& in_shape) const {
        const std::vector<int64_t> parts = output_rows();
        std::vector<Output> outs;
        int32_t first_row = 0;
        for (size_t i = 0; i < parts.size(); ++i) {
            ov::Shape out_shape = in_shape;
            out_shape.back() = static_cast<size_t>(parts[i]);
            if ((transposed(i) || heads(i) > 0) && in_shape.size() != 3) {
                throw std::runtime_error("pruneofa SparseInt8Linear: a transposed or per-head output needs a 3-d input");
            }
            if (transposed(i)) out_shape = {in_shape[0], static_cast<size_t>(parts[i]), in_shape[1]};
            if (heads(i) > 0) {
                out_shape = {in_shape[0], static_cast<size_t>(heads(i)), in_shape[1],
                             static_cast<size_t>(parts[i] / heads(i))};
            }
            outputs[i].set_shape(out_shape);
            Output o{nullptr, nullptr, constant(inputs, 2).as_f32(), constant(inputs, 3).as_f32(),
                     static_cast<int>(options_.activation)};
            if (outputs[i].get_element_type() == ov::element::u8) {
                o.u8 = static_cast<uint8_t*>(outputs[i].data());
                o.out_scale = options_.out_scale;
                o.out_zero_point = static_cast<int32_t>(options_.out_zero_point);
            } else {
                o.f32 = outputs[i].data<float>();
            }
            o.ld = parts[i];
            o.first_row = first_row;
            if (transposed(i)) o.seq = static_cast<int64_t>(in_shape[1]);
            if (heads(i) > 0) {
                o.head = static_cast<int32_t>(parts[i] / heads(i));
                o.head_seq = static_cast<int64_t>(in_shape[1]);
            }
            first_row += static_cast<int32_t>(parts[i]);
            outs.push_back(o);
        }
        return outs;
    }

    int32_t zero_point() const { return static_cast<int32_t>(x_zero_point_); }

    // Input 0's shape as rows of cols ([batch, seq, cols] for an input split into heads, whose layout goes to
    // `layout`).
    ov::Shape rows_shape(const ov::Shape& shape, InputLayout& layout) const {
        if (options_.input_heads == 0) return shape;
        const auto heads = static_cast<size_t>(options_.input_heads);
        if (shape.size() != 4 || shape[1] != heads || shape[3] * heads != static_cast<size_t>(cols_)) {
            throw std::runtime_error("pruneofa SparseInt8Linear: input 0 must be [batch, heads, seq, cols / heads]");
        }
        layout = InputLayout{static_cast<int32_t>(shape[3]), static_cast<int64_t>(shape[2])};
        return ov::Shape{shape[0], shape[2], static_cast<size_t>(cols_)};
    }

    bool normed() const { return get_input_size() == (held_ != nullptr ? 2 : 7); }
    size_t residual_input() const { return held_ != nullptr ? 1 : 4; }

    // A constant operand (1 packed, 2 mult, 3 offset, 5 gamma, 6 beta): held, or the input of that number.
    struct Bytes {
        const void* data;
        size_t size;  // bytes
        const float* as_f32() const { return static_cast<const float*>(data); }
    };
    Bytes constant(const ov::TensorVector& inputs, size_t i) const {
        if (held_ == nullptr) return Bytes{inputs[i].data(), inputs[i].get_byte_size()};
        const auto& c = i == 1 ? held_->packed : i == 2 ? held_->mult : i == 3 ? held_->offset : i == 5 ? held_->gamma
                                                                                                     : held_->beta;
        return Bytes{c->get_data_ptr(), c->get_byte_size()};
    }

    // The residual Add + LayerNorm's operands (residual == nullptr: the op has none), checked against the output.
    ResidualNorm residual_norm(const ov::TensorVector& inputs, int64_t tokens) const {
        if (!normed()) return ResidualNorm{nullptr, nullptr, nullptr, 0.0f};
        const ov::Tensor& residual = inputs[residual_input()];
        const Bytes gamma = constant(inputs, 5), beta = constant(inputs, 6);
        const size_t row_bytes = static_cast<size_t>(rows_) * sizeof(float);
        if (residual.get_element_type() != ov::element::f32 ||
            residual.get_size() != static_cast<size_t>(tokens * rows_) || gamma.size != row_bytes ||
            beta.size != row_bytes) {
            throw std::runtime_error("pruneofa SparseInt8Linear: the residual must be f32 shaped as the output, gamma "
                                     "and beta f32 as its rows");
        }
        return ResidualNorm{residual.data<const float>(), gamma.as_f32(), beta.as_f32(), options_.norm_epsilon};
    }

    bool transposed(size_t i) const { return i < options_.transposed.size() && options_.transposed[i] != 0; }
    int64_t heads(size_t i) const { return i < options_.heads.size() ? options_.heads[i] : 0; }
    bool any_transposed() const {
        return std::any_of(options_.transposed.begin(), options_.transposed.end(), [](int64_t t) { return t != 0; });
    }

    std::vector<int64_t> output_rows() const {
        return options_.splits.empty() ? std::vector<int64_t>{rows_} : options_.splits;
    }

    // The output_type attribute's type; dynamic when it names none of f32, u8.
    ov::element::Type output_type() const {
        const std::string& name = options_.output_type;
        if (name.empty() || name == "f32") return ov::element::f32;
        if (name == "u8") return ov::element::u8;
        return ov::element::dynamic;
    }

    // Row blocks [begin, end) of the layer, each output's share of them into that output.
    static void compute_rows(const Kernel& kernel, const pofa_weights& w, const PreparedWeights* form,
                             const Activations& a, const std::vector<Output>& outs, int64_t begin, int64_t end) {
        for (size_t i = 0; i < outs.size(); ++i) {
            const int64_t first = outs[i].first_row / kRowBlock;
            const int64_t last = i + 1 < outs.size() ? outs[i + 1].first_row / kRowBlock : row_blocks(w);
            const int64_t from = std::max(begin, first), to = std::min(end, last);
            if (from < to) kernel.compute(w, form, a, outs[i], from, to);
        }
    }

    // The ways the op spreads tokens over OpenVINO's threads (one fork/join each): f(t_begin, t_end, padded_end) on
    // each thread's whole blocks of kMaxTile tokens (a kernel then runs the range as a layer of its own; padded_end:
    // the range's end in the padded layout); f(begin, end) on whole kTokenAlign chunks (packing, whose ranges may
    // not share a chunk); f(begin, end) on any split (row-wise passes).
    template <typename F>
    static void for_token_blocks(int64_t tokens, const F& f) {
        const int64_t padded = padded_tokens(tokens);
        const int64_t blocks = (padded + kMaxTile - 1) / kMaxTile;
        ov::parallel_nt(0, [&](const int ithr, const int nthr) {
            const int64_t first = blocks * ithr / nthr, last = blocks * (ithr + 1) / nthr;
            if (first < last) f(first * kMaxTile, std::min(tokens, last * kMaxTile), std::min(padded, last * kMaxTile));
        });
    }
    template <typename F>
    static void for_token_chunks(int64_t tokens, const F& f) {
        const int64_t chunks = padded_tokens(tokens) / kTokenAlign;
        ov::parallel_nt(0, [&](const int ithr, const int nthr) {
            const int64_t begin = std::min(tokens, chunks * ithr / nthr * kTokenAlign);
            const int64_t end = std::min(tokens, chunks * (ithr + 1) / nthr * kTokenAlign);
            if (begin < end) f(begin, end);
        });
    }
    template <typename F>
    static void for_tokens(int64_t tokens, const F& f) {
        ov::parallel_nt(0, [&](const int ithr, const int nthr) { f(tokens * ithr / nthr, tokens * (ithr + 1) / nthr); });
    }

    // Each thread quantizes and multiplies its own blocks of kMaxTile tokens, all output rows: one fork/join per
    // call instead of two (quantize, then multiply), and no thread waits for another's quantized tokens.
    // With a residual norm, each thread then normalizes its own tokens: it has all of their rows.
    void split_tokens(const Kernel& kernel, const PreparedWeights* form, const pofa_weights& w, const Input& x,
                      int64_t tokens, uint8_t* x4, const std::vector<Output>& outs, const ResidualNorm& norm) const {
        for_token_blocks(tokens, [&](int64_t t_begin, int64_t t_end, int64_t padded_end) {
            pack_input(kernel, x, tokens, w.cols, x_scale_, zero_point(), x4, t_begin, t_end);
            const Activations range{x4 + kernel.token_block_offset(t_begin, w.cols), t_end - t_begin,
                                    padded_end - t_begin};
            std::vector<Output> mine = outs;  // the range's tokens are tokens 0.. to the kernel
            for (Output& o : mine) o.token0 = t_begin;
            compute_rows(kernel, w, form, range, mine, 0, row_blocks(w));
            if (norm.residual != nullptr) kernel.residual_norm(outs[0].f32, norm, w.rows, t_begin, t_end);
        });
    }

    // The packed weights (input or held constant 1) as pofa_weights, read once per layer.
    const pofa_weights& weights(const Bytes& packed) const {
        return prepared_->weights(packed.data, packed.size, rows_, cols_);
    }

    // The path's own form of the weights (AMX: compressed tiles), built on the path's first call.
    const PreparedWeights* prepared_form(const Kernel& kernel, int isa, const pofa_weights& w) const {
        return prepared_->form(kernel, isa, w);
    }

    int64_t rows_ = 0;
    int64_t cols_ = 0;
    float x_scale_ = 1.0f;
    int64_t x_zero_point_ = 0;
    Options options_;
    std::shared_ptr<const Held> held_;
    Stages then_;  // a chain's further stages (their own layers, held constants and prepared forms)
    std::shared_ptr<PackedLayer> prepared_ = std::make_shared<PackedLayer>();
};

}  // namespace pofa

extern "C" POFA_API const char* pofa_openvino_built_with(void) { return POFA_OPENVINO_BUILD_VERSION; }

namespace {

// The ONNX node -> the op. A conversion function rather than an attribute-mapping OpExtension, because the
// attributes after x_zero_point are optional (files written before them have none) and a mapped attribute
// is not.
// A chain's further stages (then_* attributes), with their constants from the node's inputs 7..: each its own
// layer, reading the stage before (u8 where then_u8_input says so: the stage before writes it quantized with this
// one's x_scale and x_zero_point).
pofa::SparseInt8Linear::Stages chain_stages(const ov::frontend::NodeContext& node, const ov::OutputVector& inputs,
                                            int64_t first_rows) {
    using Op = pofa::SparseInt8Linear;
    using Constant = ov::op::v0::Constant;
    const auto rows = node.get_attribute<std::vector<int64_t>>("then_rows", std::vector<int64_t>{});
    if (rows.empty()) return {};
    const auto ints = [&](const char* name) {
        auto v = node.get_attribute<std::vector<int64_t>>(name, std::vector<int64_t>(rows.size(), 0));
        if (v.size() != rows.size()) throw std::runtime_error(std::string("pruneofa chain: ") + name + " needs one "
                                                              "entry per stage");
        return v;
    };
    const auto floats = [&](const char* name) {  // (the ONNX frontend gives float lists as doubles)
        const auto d = node.get_attribute<std::vector<double>>(name, std::vector<double>(rows.size(), 0.0));
        std::vector<float> v(d.begin(), d.end());
        if (v.size() != rows.size()) throw std::runtime_error(std::string("pruneofa chain: ") + name + " needs one "
                                                              "entry per stage");
        return v;
    };
    const auto activation = ints("then_activation"), zero_point = ints("then_x_zero_point");
    const auto residual = ints("then_norm_residual"), u8_input = ints("then_u8_input");
    const auto scale = floats("then_x_scale"), epsilon = floats("then_norm_epsilon");
    Op::Stages stages;
    size_t next = 7;  // the first stage's constants are inputs 1-3, 5, 6
    int64_t cols = first_rows;
    for (size_t k = 0; k < rows.size(); ++k) {
        const auto constant = [&]() {
            auto c = next < inputs.size() ? ov::as_type_ptr<Constant>(inputs[next].get_node_shared_ptr()) : nullptr;
            if (c == nullptr) throw std::runtime_error("pruneofa chain: stage constants must be initializers");
            ++next;
            return c;
        };
        auto held = std::make_shared<Op::Held>();
        held->packed = constant();
        held->mult = constant();
        held->offset = constant();
        Op::Options options;
        options.activation = activation[k];
        options.norm_epsilon = epsilon[k];
        options.norm_residual = residual[k];
        options.u8_input = u8_input[k];
        ov::OutputVector args{std::make_shared<ov::op::v0::Parameter>(u8_input[k] ? ov::element::u8 : ov::element::f32,
                                                                      ov::PartialShape::dynamic())};
        if (epsilon[k] > 0.0f) {
            held->gamma = constant();
            held->beta = constant();
            args.push_back(std::make_shared<ov::op::v0::Parameter>(ov::element::f32, ov::PartialShape::dynamic()));
        }
        auto stage = std::make_shared<Op>(args, rows[k], cols, scale[k], zero_point[k], options, std::move(held));
        cols = rows[k];
        stages.push_back(stage);
    }
    if (next != inputs.size()) throw std::runtime_error("pruneofa chain: unexpected inputs after the stages'");
    return stages;
}

ov::OutputVector from_onnx(const ov::frontend::NodeContext& node) {
    ov::OutputVector inputs;
    for (size_t i = 0; i < node.get_input_size(); ++i) inputs.push_back(node.get_input(static_cast<int>(i)));
    pofa::SparseInt8Linear::Options options;
    options.activation = node.get_attribute<int64_t>("activation", int64_t{POFA_ACT_NONE});
    options.linears = node.get_attribute<int64_t>("linears", 1);
    options.splits = node.get_attribute<std::vector<int64_t>>("splits", std::vector<int64_t>{});
    options.output_type = node.get_attribute<std::string>("output_type", std::string{});
    options.out_scale = node.get_attribute<float>("out_scale", 0.0f);
    options.out_zero_point = node.get_attribute<int64_t>("out_zero_point", int64_t{0});
    options.transposed = node.get_attribute<std::vector<int64_t>>("transposed", std::vector<int64_t>{});
    options.heads = node.get_attribute<std::vector<int64_t>>("heads", std::vector<int64_t>{});
    options.input_heads = node.get_attribute<int64_t>("input_heads", int64_t{0});
    options.norm_epsilon = node.get_attribute<float>("norm_epsilon", 0.0f);
    const auto rows = node.get_attribute<int64_t>("rows");
    pofa::SparseInt8Linear::Stages then = chain_stages(node, inputs, rows);
    // Constant operands held by the op, its inputs then x (and the residual) only (see the top of the file).
    using Constant = ov::op::v0::Constant;
    const auto constant = [&](size_t i) {
        return i < inputs.size() ? ov::as_type_ptr<Constant>(inputs[i].get_node_shared_ptr()) : nullptr;
    };
    std::shared_ptr<const pofa::SparseInt8Linear::Held> held;
    const bool normed = inputs.size() >= 7;
    if (constant(1) && constant(2) && constant(3) && (!normed || (constant(5) && constant(6)))) {
        auto found = std::make_shared<pofa::SparseInt8Linear::Held>();
        found->packed = constant(1);
        found->mult = constant(2);
        found->offset = constant(3);
        if (normed) {
            found->gamma = constant(5);
            found->beta = constant(6);
        }
        held = std::move(found);
        inputs = normed ? ov::OutputVector{inputs[0], inputs[4]} : ov::OutputVector{inputs[0]};
    }
    const auto op = std::make_shared<pofa::SparseInt8Linear>(
        inputs, rows, node.get_attribute<int64_t>("cols"), node.get_attribute<float>("x_scale"),
        node.get_attribute<int64_t>("x_zero_point"), std::move(options), std::move(held), std::move(then));
    return op->outputs();
}

}  // namespace

OPENVINO_CREATE_EXTENSIONS(std::vector<ov::Extension::Ptr>(
    {std::make_shared<ov::OpExtension<pofa::SparseInt8Linear>>(),
     std::make_shared<ov::frontend::onnx::ConversionExtension>("SparseInt8Linear", "ai.pruneofa", from_onnx)}));
