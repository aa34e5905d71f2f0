#pragma once
// tiny_llama::BlockwiseView: the decoder seen block by block, as npft::ptq::BlockwiseModel asks for it (block-wise
// post-training reconstruction). Activations are residual streams of calibration batches whose sequences all have the
// view's fixed length; embed() turns a batch into block 0's input.
#include <string>
#include <vector>

#include <npft/core/eigen.hpp>
#include <npft/core/error.hpp>
#include <npft/ptq/block_model.hpp>
#include <npft/train/differentiable_model.hpp>

#include "block.hpp"
#include "model.hpp"

namespace tiny_llama {

class BlockwiseView {
public:
    /// Views `model` (which must outlive the view) for batches of sequences of `length` input tokens.
    BlockwiseView(Model& model, Index length) : model_(&model), length_(length) {
        const Config& c = model.config();
        npft::require(length >= 1 && length <= c.context, "block-wise sequence length must be in [1, ", c.context,
                      "], got ", length);
        grads_ = Weights::zeros(c).layers;
    }
    // Parameter views point into this object.
    BlockwiseView(const BlockwiseView&) = delete;
    BlockwiseView& operator=(const BlockwiseView&) = delete;

    Index length() const { return length_; }
    /// Threads for the blocks' forward and backward passes (the same bits on any count, as block.hpp promises).
    void set_threads(int threads) {
        npft::require(threads >= 1, "block-wise threads must be at least 1, got ", threads);
        threads_ = threads;
    }
    int threads() const { return threads_; }
    Index num_blocks() const { return model_->config().layers; }

    /// The 7 linear weights of block i, named as Model::parameters names them; gradients live in this view.
    std::vector<npft::train::Parameter> block_parameters(Index i) {
        check_block(i);
        LayerWeights& w = model_->weights().layers[static_cast<std::size_t>(i)];
        LayerWeights& g = grads_[static_cast<std::size_t>(i)];
        std::vector<npft::train::Parameter> out;
        for (const LinearKind kind : linear_kinds)
            out.push_back({linear_name(i, kind), npft::as_matrix_view(w.linear(kind)), npft::as_matrix_view(g.linear(kind))});
        return out;
    }

    Matrix block_forward(Index i, const Matrix& x) const {
        check_input(i, x);
        Matrix y = x;
        BlockActivations scratch;
        run_block(i, y, scratch, false);
        return y;
    }

    Matrix block_backward(Index i, const Matrix& x, const Matrix& dy) {
        check_input(i, x);
        npft::require(dy.rows() == x.rows() && dy.cols() == x.cols(), "block output gradient must be ", x.rows(), " x ",
                      x.cols(), ", got ", dy.rows(), " x ", dy.cols());
        Matrix y = x;
        BlockActivations a;
        run_block(i, y, a, true);
        Matrix dx = dy;
        tiny_llama::block_backward(model_->config(), layer(i), model_->rope(), length_, a, dx,
                                   grads_[static_cast<std::size_t>(i)], threads_);
        return dx;
    }

    Matrix preactivation_forward(Index i, const Matrix& x) const {
        check_input(i, x);
        return tiny_llama::preactivation_forward(model_->config(), layer(i), x);
    }

    Matrix preactivation_backward(Index i, const Matrix& x, const Matrix& dp) const {
        check_input(i, x);
        return tiny_llama::preactivation_backward(model_->config(), layer(i), x, dp);
    }

    /// Block 0's input for `batch`: the embeddings of each sequence's first length() tokens (the inputs of its
    /// next-token predictions), sequence after sequence.
    Matrix embed(const Batch& batch) const {
        require_valid_batch(model_->config(), batch);
        npft::require(batch.positions() == length_, "calibration sequences must hold ", length_ + 1, " tokens, got ",
                      batch.positions() + 1);
        const Matrix& embedding = model_->weights().embedding;
        Matrix x(batch.count() * length_, model_->config().dim);
        for (Index s = 0; s < batch.count(); ++s)
            for (Index t = 0; t < length_; ++t)
                x.row(s * length_ + t) = embedding.row(batch.sequences[static_cast<std::size_t>(s)][static_cast<std::size_t>(t)]);
        return x;
    }

    /// Gradients of the last block_backward of block i (all its tensors, norm gains included).
    const LayerWeights& block_gradients(Index i) const {
        check_block(i);
        return grads_[static_cast<std::size_t>(i)];
    }

private:
    const LayerWeights& layer(Index i) const { return model_->weights().layers[static_cast<std::size_t>(i)]; }

    void run_block(Index i, Matrix& x, BlockActivations& a, bool keep) const {
        tiny_llama::block_forward(model_->config(), layer(i), model_->rope(), DenseLinears{&model_->weights(), threads_}, i,
                                  length_, x, a, keep, threads_);
    }

    void check_block(Index i) const {
        npft::require(i >= 0 && i < num_blocks(), "block index must be in [0, ", num_blocks(), "), got ", i);
    }
    void check_input(Index i, const Matrix& x) const {
        check_block(i);
        npft::require(x.rows() > 0 && x.rows() % length_ == 0, "block input must hold whole sequences of ", length_,
                      " tokens, got ", x.rows(), " rows");
        npft::require(x.cols() == model_->config().dim, "block input must have ", model_->config().dim, " columns, got ",
                      x.cols());
    }

    Model* model_;
    Index length_;
    int threads_ = 1;
    std::vector<LayerWeights> grads_;
};

static_assert(npft::ptq::BlockwiseModel<BlockwiseView>);

}  // namespace tiny_llama
