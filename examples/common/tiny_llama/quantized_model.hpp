#pragma once
// tiny_llama::QuantizedModel: the decoder with every linear layer run from packed quantized weights through npft's
// CPU kernels (never from a dequantized fp32 copy). Embedding, norms and the output head stay fp32, as in the paper.
#include <algorithm>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include <npft/core/eigen.hpp>
#include <npft/kernels/cpu/multiply.hpp>
#include <npft/quant/dense_sparse.hpp>
#include <npft/quant/quantized_matrix.hpp>

#include "forward.hpp"
#include "model.hpp"

namespace tiny_llama {

/// A packed linear weight (rows = output features): a quantized matrix, or a quantized dense part plus fp16 outliers.
class PackedLinear {
public:
    explicit PackedLinear(npft::quant::QuantizedMatrix w) : weight_(std::move(w)) {}
    explicit PackedLinear(npft::quant::DenseSparseMatrix w) : weight_(std::move(w)) {}

    Index rows() const { return std::visit([](const auto& w) { return w.rows(); }, weight_); }
    Index cols() const { return std::visit([](const auto& w) { return w.cols(); }, weight_); }
    /// Storage bytes, metadata included.
    std::size_t bytes() const { return std::visit([](const auto& w) { return w.bytes(); }, weight_); }

    /// y = x W^T, y already sized tokens x rows().
    void multiply(const Matrix& x, Matrix& y, const npft::kernels::cpu::MultiplyOptions& options = {}) const {
        std::visit([&](const auto& w) { multiply_packed(w, x, y, options); }, weight_);
    }

private:
    static void multiply_packed(const npft::quant::QuantizedMatrix& w, const Matrix& x, Matrix& y,
                                const npft::kernels::cpu::MultiplyOptions& options) {
        npft::kernels::cpu::multiply(w, npft::MatrixView<const float>(npft::as_matrix_view(x)), npft::as_matrix_view(y), options);
    }
    /// The dense part through the kernel, then y[:, r] += v x[:, c] for each fp16 outlier (r, c, v) of the CSR part.
    static void multiply_packed(const npft::quant::DenseSparseMatrix& w, const Matrix& x, Matrix& y,
                                const npft::kernels::cpu::MultiplyOptions& options) {
        multiply_packed(w.dense, x, y, options);
        const auto& s = w.sparse;
        for (Index r = 0; r < s.rows; ++r) {
            for (auto k = s.row_offsets[static_cast<std::size_t>(r)]; k < s.row_offsets[static_cast<std::size_t>(r + 1)]; ++k) {
                const float v = static_cast<float>(s.values[static_cast<std::size_t>(k)]);
                y.col(r) += v * x.col(s.columns[static_cast<std::size_t>(k)]);
            }
        }
    }

    std::variant<npft::quant::QuantizedMatrix, npft::quant::DenseSparseMatrix> weight_;
};

/// The packed linears of a QuantizedModel as a LinearFn (block.hpp): table[layer * 7 + kind] runs with `options`.
struct PackedLinears {
    std::vector<const PackedLinear*> table;
    npft::kernels::cpu::MultiplyOptions options;
    void operator()(Index layer, LinearKind kind, const Matrix& x, Matrix& y) const {
        table[static_cast<std::size_t>(layer * 7 + static_cast<Index>(kind))]->multiply(x, y, options);
    }
};

class QuantizedModel {
public:
    /// Shares `model`'s embedding, norms and head (the model must outlive this object); linears come from set_linear.
    explicit QuantizedModel(const Model& model)
        : model_(&model), packed_(static_cast<std::size_t>(7 * model.config().layers)) {}

    /// Installs the packed weight of one linear, by name ("layers.0.attn.q"); it must have that linear's shape.
    void set_linear(const std::string& name, PackedLinear packed) {
        const Index slot = find_linear(name);
        npft::require(slot >= 0, "'", name, "' is not a linear layer of the model");
        const Matrix& fp32 = model_->weights().layers[static_cast<std::size_t>(slot / 7)].linear(linear_kinds[static_cast<std::size_t>(slot % 7)]);
        npft::require(packed.rows() == fp32.rows() && packed.cols() == fp32.cols(), "packed weight for ", name, " must be ",
                      fp32.rows(), " x ", fp32.cols(), ", got ", packed.rows(), " x ", packed.cols());
        packed_[static_cast<std::size_t>(slot)] = std::move(packed);
    }

    bool complete() const { return installed() == packed_.size(); }

    /// How every linear runs (threads, kernel path, fp32 or int8 activations); default: MultiplyOptions{} (int8
    /// activations, 1 thread). The norms, rotations and attention run on options.threads threads too.
    void set_multiply_options(const npft::kernels::cpu::MultiplyOptions& options) { options_ = options; }
    const npft::kernels::cpu::MultiplyOptions& multiply_options() const { return options_; }

    /// The fp32 model whose embedding, norms and head this one shares.
    const Model& model() const { return *model_; }

    /// Storage bits per weight over all linear layers, metadata included.
    double bits_per_weight() const {
        double bits = 0.0, weights = 0.0;
        for (const auto& p : packed_) {
            if (!p) continue;
            bits += 8.0 * static_cast<double>(p->bytes());
            weights += static_cast<double>(p->rows() * p->cols());
        }
        return weights > 0.0 ? bits / weights : 0.0;
    }

    /// Storage bytes of all linear layers, metadata included (what one token reads of them).
    std::size_t linear_bytes() const {
        std::size_t bytes = 0;
        for (const auto& p : packed_)
            if (p) bytes += p->bytes();
        return bytes;
    }

    /// Every linear as a LinearFn for the forward passes (forward.hpp, decode.hpp); the model must be complete.
    PackedLinears linears() const {
        npft::require(complete(), "quantized model has ", installed(), " of ", packed_.size(), " linear layers installed");
        PackedLinears out{{}, options_};
        for (const auto& p : packed_) out.table.push_back(&*p);
        return out;
    }

    /// Mean next-token cross-entropy with every linear run from its packed weight.
    double loss(const Batch& batch) const {
        return forward_loss_sum(model_->config(), model_->weights(), model_->rope(), linears(), batch, nullptr,
                                options_.threads) /
               static_cast<double>(batch.count() * batch.positions());
    }

private:
    std::size_t installed() const {
        return static_cast<std::size_t>(std::count_if(packed_.begin(), packed_.end(), [](const auto& p) { return p.has_value(); }));
    }

    /// layer * 7 + kind of the linear called `name`, or -1.
    Index find_linear(const std::string& name) const {
        for (Index l = 0; l < model_->config().layers; ++l)
            for (const LinearKind kind : linear_kinds)
                if (linear_name(l, kind) == name) return l * 7 + static_cast<Index>(kind);
        return -1;
    }

    npft::kernels::cpu::MultiplyOptions options_{};
    const Model* model_;
    std::vector<std::optional<PackedLinear>> packed_;  // by layer * 7 + kind
};

}  // namespace tiny_llama
