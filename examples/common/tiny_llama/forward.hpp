#pragma once
// The decoder's forward and backward passes over a batch:
//   x = embedding[tokens]
//   per block:  x += o(attention(rope(q(norm(x))), rope(k(norm(x))), v(norm(x))))
//               x += down(silu(gate(norm(x))) * up(norm(x)))
//   logits = head(norm(x)); loss = mean cross-entropy of the next token.
// The forward is written against a LinearFn so that the same code runs fp32 weights or packed quantized ones.
#include <cmath>
#include <vector>

#include <npft/core/eigen.hpp>
#include <npft/core/error.hpp>

#include "block.hpp"
#include "config.hpp"
#include "layers.hpp"
#include "parallel.hpp"
#include "weights.hpp"

namespace tiny_llama {

using npft::Vector;

struct Activations {
    std::vector<BlockActivations> blocks;
    Matrix x_out;  // residual stream after the last block
    Vector inv_rms_final;
    Matrix h_final;
    Matrix probs;  // softmax of the logits
};

/// The linears straight from fp32 weights, on `threads` threads (tiled as parallel.hpp says: same bits for any count).
struct DenseLinears {
    const Weights* weights;
    int threads = 1;
    void operator()(Index layer, LinearKind kind, const Matrix& x, Matrix& y) const {
        parallel::x_wt(x, weights->layers[static_cast<std::size_t>(layer)].linear(kind), y, threads);
    }
};

inline void require_valid_batch(const Config& config, const Batch& batch) {
    npft::require(batch.count() > 0, "batch must hold at least one sequence");
    const Index n = batch.positions();
    npft::require(n >= 1 && n <= config.context, "batch sequences must hold 2 to ", config.context + 1, " tokens, got ",
                  n + 1);
    for (const auto& s : batch.sequences) {
        npft::require(static_cast<Index>(s.size()) == n + 1, "all sequences of a batch must have the same length ", n + 1,
                      ", got ", s.size());
        for (const Token t : s)
            npft::require(t >= 0 && t < config.vocab, "token ", t, " is outside the vocabulary [0, ", config.vocab, ")");
    }
}

/// Sum over the batch of -log p(next token), in double. Keeps the activations in `cache` when given (for backward).
/// `threads`: see block_forward; the per-token losses are summed in token order whatever the count.
template <LinearFn Linears>
double forward_loss_sum(const Config& config, const Weights& w, const layers::RopeTable& rope, const Linears& linear,
                        const Batch& batch, Activations* cache, int threads = 1) {
    require_valid_batch(config, batch);
    const Index length = batch.positions(), tokens = batch.count() * length;
    Matrix x(tokens, config.dim);
    for (Index s = 0; s < batch.count(); ++s)
        for (Index t = 0; t < length; ++t)
            x.row(s * length + t) = w.embedding.row(batch.sequences[static_cast<std::size_t>(s)][static_cast<std::size_t>(t)]);

    if (cache) cache->blocks.resize(static_cast<std::size_t>(config.layers));
    BlockActivations scratch;
    for (Index l = 0; l < config.layers; ++l)
        block_forward(config, w.layers[static_cast<std::size_t>(l)], rope, linear, l, length, x,
                      cache ? cache->blocks[static_cast<std::size_t>(l)] : scratch, cache != nullptr, threads);

    Matrix h_final;
    Vector inv_rms_final;
    layers::rmsnorm_forward(x, w.final_norm, config.norm_eps, h_final, inv_rms_final, threads);
    Matrix logits;
    parallel::x_wt(h_final, w.head, logits, threads);
    std::vector<double> token_loss(static_cast<std::size_t>(tokens));
    parallel::for_each_row_tile(tokens, parallel::token_tile, threads, [&](Index begin, Index end) {
        for (Index r = begin; r < end; ++r) {
            auto row = logits.row(r);
            const float top = row.maxCoeff();
            row.array() = (row.array() - top).exp();
            const float sum = row.sum();
            const Token target = batch.sequences[static_cast<std::size_t>(r / length)][static_cast<std::size_t>(r % length + 1)];
            token_loss[static_cast<std::size_t>(r)] = -std::log(static_cast<double>(row(target)) / static_cast<double>(sum));
            row /= sum;
        }
    });
    double loss_sum = 0.0;
    for (const double l : token_loss) loss_sum += l;
    if (cache) {
        cache->x_out = std::move(x);
        cache->inv_rms_final = std::move(inv_rms_final);
        cache->h_final = std::move(h_final);
        cache->probs = std::move(logits);
    }
    return loss_sum;
}

/// Gradients of (loss_sum * loss_scale) with respect to every tensor, written (not accumulated) into `grads`.
/// `threads`: see block_backward.
inline void backward(const Config& config, const Weights& w, const layers::RopeTable& rope, const Batch& batch,
                     const Activations& a, float loss_scale, Weights& grads, int threads = 1) {
    const Index length = batch.positions(), tokens = batch.count() * length;
    grads.for_each([](const std::string&, Matrix& g) { g.setZero(); });

    // Cross-entropy through softmax: dlogits = (p - onehot) * scale.
    Matrix dlogits = a.probs * loss_scale;
    for (Index s = 0; s < batch.count(); ++s)
        for (Index t = 0; t < length; ++t)
            dlogits(s * length + t, batch.sequences[static_cast<std::size_t>(s)][static_cast<std::size_t>(t + 1)]) -= loss_scale;
    parallel::dyt_x(dlogits, a.h_final, grads.head, threads);
    Matrix dh_final;
    parallel::dy_w(dlogits, w.head, dh_final, false, threads);
    Matrix dx = Matrix::Zero(tokens, config.dim);
    layers::rmsnorm_backward(a.x_out, w.final_norm, a.inv_rms_final, dh_final, dx, grads.final_norm, threads);

    for (Index l = config.layers - 1; l >= 0; --l)
        block_backward(config, w.layers[static_cast<std::size_t>(l)], rope, length, a.blocks[static_cast<std::size_t>(l)], dx,
                       grads.layers[static_cast<std::size_t>(l)], threads);

    for (Index s = 0; s < batch.count(); ++s)
        for (Index t = 0; t < length; ++t)
            grads.embedding.row(batch.sequences[static_cast<std::size_t>(s)][static_cast<std::size_t>(t)]) += dx.row(s * length + t);
}

}  // namespace tiny_llama
