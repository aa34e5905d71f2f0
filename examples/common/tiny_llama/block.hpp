#pragma once
// One transformer block of the decoder, forward and backward, as functions of the residual stream:
//   x += o(attention(rope(q(norm(x))), rope(k(norm(x))), v(norm(x))))
//   x += down(silu(gate(norm(x))) * up(norm(x)))
// The whole-model passes (forward.hpp) and the block-wise view (blockwise.hpp) both run a block through these, so the
// math of a block is written once. The block's pre-activations (norm, then q, k, v, before rotation) have their own
// pair of functions: block-wise reconstruction measures errors there.
#include <vector>

#include <npft/core/eigen.hpp>
#include <npft/core/error.hpp>

#include "config.hpp"
#include "layers.hpp"
#include "parallel.hpp"
#include "weights.hpp"

namespace tiny_llama {

using npft::Vector;

/// What the backward pass needs from one block.
struct BlockActivations {
    Matrix x_in;  // block input (residual stream)
    Vector inv_rms_attn;
    Matrix h_attn;   // normalized input of q, k, v
    Matrix q, k, v;  // q and k after rotation
    std::vector<Matrix> probs;
    Matrix attn;   // concatenated head outputs (input of o)
    Matrix x_mid;  // residual stream after attention
    Vector inv_rms_mlp;
    Matrix h_mlp;  // normalized input of gate, up
    Matrix gate, up, act;
};

/// y = x W^T for the linear `kind` of block `layer`; y arrives sized (tokens x out_features).
template <class F>
concept LinearFn = requires(const F& f, Index layer, LinearKind kind, const Matrix& x, Matrix& y) { f(layer, kind, x, y); };


/// Runs block `layer` on the residual stream `x` (tokens x dim: sequences of `length` tokens stacked), in place.
/// `a` receives the activations; with `keep_for_backward` false the attention probabilities and the block input are
/// not kept (a forward-only pass), and `a` is only scratch. `threads` runs the norms, rotations, attention and SwiGLU
/// on that many threads (the linears thread as `linear` does), with the same bits for every count.
template <LinearFn Linears>
void block_forward(const Config& config, const LayerWeights& lw, const layers::RopeTable& rope, const Linears& linear,
                   Index layer, Index length, Matrix& x, BlockActivations& a, bool keep_for_backward, int threads = 1) {
    npft::require(length >= 1 && length <= config.context && x.rows() % length == 0, "block input of ", x.rows(),
                  " tokens must hold whole sequences of 1 to ", config.context, " tokens, got length ", length);
    npft::require(x.cols() == config.dim, "block input must have ", config.dim, " columns, got ", x.cols());
    const Index tokens = x.rows();
    layers::rmsnorm_forward(x, lw.attn_norm, config.norm_eps, a.h_attn, a.inv_rms_attn, threads);
    a.q.resize(tokens, config.dim);
    a.k.resize(tokens, config.kv_dim());
    a.v.resize(tokens, config.kv_dim());
    linear(layer, LinearKind::q, a.h_attn, a.q);
    linear(layer, LinearKind::k, a.h_attn, a.k);
    linear(layer, LinearKind::v, a.h_attn, a.v);
    layers::rope_rotate(a.q, length, config.head_dim(), rope, false, threads);
    layers::rope_rotate(a.k, length, config.head_dim(), rope, false, threads);
    layers::attention_forward(a.q, a.k, a.v, length, config.heads, a.attn, keep_for_backward ? &a.probs : nullptr,
                              threads);
    Matrix projected(tokens, config.dim);
    linear(layer, LinearKind::o, a.attn, projected);
    if (keep_for_backward) a.x_in = x;
    x += projected;
    if (keep_for_backward) a.x_mid = x;

    layers::rmsnorm_forward(x, lw.mlp_norm, config.norm_eps, a.h_mlp, a.inv_rms_mlp, threads);
    a.gate.resize(tokens, config.hidden);
    a.up.resize(tokens, config.hidden);
    linear(layer, LinearKind::gate, a.h_mlp, a.gate);
    linear(layer, LinearKind::up, a.h_mlp, a.up);
    layers::swiglu_forward(a.gate, a.up, a.act, threads);
    linear(layer, LinearKind::down, a.act, projected);
    x += projected;
}

/// Backward through one block: `dx` holds dL/d(block output) on entry and dL/d(block input) on return. Writes (does
/// not accumulate) every gradient of the block into `lg`. `a` must come from block_forward with keep_for_backward.
/// Every product and layer runs on `threads` threads, split as parallel.hpp says: the same bits for every count.
inline void block_backward(const Config& config, const LayerWeights& lw, const layers::RopeTable& rope, Index length,
                           const BlockActivations& a, Matrix& dx, LayerWeights& lg, int threads = 1) {
    npft::require(dx.rows() == a.x_mid.rows() && dx.cols() == config.dim, "block output gradient must be ",
                  a.x_mid.rows(), " x ", config.dim, ", got ", dx.rows(), " x ", dx.cols());
    lg.attn_norm.setZero(1, config.dim);
    lg.mlp_norm.setZero(1, config.dim);
    Matrix dact, dgate, dup, dh, dattn, dq, dk, dv;

    // MLP: dx is the gradient of the block's output, which the residual passes to x_mid unchanged.
    parallel::dyt_x(dx, a.act, lg.down, threads);
    parallel::dy_w(dx, lw.down, dact, false, threads);
    layers::swiglu_backward(a.gate, a.up, dact, dgate, dup, threads);
    parallel::dyt_x(dgate, a.h_mlp, lg.gate, threads);
    parallel::dyt_x(dup, a.h_mlp, lg.up, threads);
    parallel::dy_w(dgate, lw.gate, dh, false, threads);
    parallel::dy_w(dup, lw.up, dh, true, threads);
    layers::rmsnorm_backward(a.x_mid, lw.mlp_norm, a.inv_rms_mlp, dh, dx, lg.mlp_norm, threads);

    // Attention.
    parallel::dyt_x(dx, a.attn, lg.o, threads);
    parallel::dy_w(dx, lw.o, dattn, false, threads);
    layers::attention_backward(a.q, a.k, a.v, a.probs, dattn, length, config.heads, dq, dk, dv, threads);
    layers::rope_rotate(dq, length, config.head_dim(), rope, true, threads);
    layers::rope_rotate(dk, length, config.head_dim(), rope, true, threads);
    parallel::dyt_x(dq, a.h_attn, lg.q, threads);
    parallel::dyt_x(dk, a.h_attn, lg.k, threads);
    parallel::dyt_x(dv, a.h_attn, lg.v, threads);
    parallel::dy_w(dq, lw.q, dh, false, threads);
    parallel::dy_w(dk, lw.k, dh, true, threads);
    parallel::dy_w(dv, lw.v, dh, true, threads);
    layers::rmsnorm_backward(a.x_in, lw.attn_norm, a.inv_rms_attn, dh, dx, lg.attn_norm, threads);
}

/// The block's pre-activations for input x: [q | k | v] of norm(x) (tokens x (dim + 2 kv_dim)), before the rotation.
inline Matrix preactivation_forward(const Config& config, const LayerWeights& lw, const Matrix& x) {
    npft::require(x.cols() == config.dim, "block input must have ", config.dim, " columns, got ", x.cols());
    Matrix h;
    Vector inv_rms;
    layers::rmsnorm_forward(x, lw.attn_norm, config.norm_eps, h, inv_rms);
    Matrix out(x.rows(), config.dim + 2 * config.kv_dim());
    out.leftCols(config.dim).noalias() = h * lw.q.transpose();
    out.middleCols(config.dim, config.kv_dim()).noalias() = h * lw.k.transpose();
    out.rightCols(config.kv_dim()).noalias() = h * lw.v.transpose();
    return out;
}

/// dL/dx for a gradient dp (tokens x (dim + 2 kv_dim)) on preactivation_forward's output.
inline Matrix preactivation_backward(const Config& config, const LayerWeights& lw, const Matrix& x, const Matrix& dp) {
    npft::require(x.cols() == config.dim, "block input must have ", config.dim, " columns, got ", x.cols());
    const Index width = config.dim + 2 * config.kv_dim();
    npft::require(dp.rows() == x.rows() && dp.cols() == width, "pre-activation gradient must be ", x.rows(), " x ", width,
                  ", got ", dp.rows(), " x ", dp.cols());
    Matrix h;
    Vector inv_rms;
    layers::rmsnorm_forward(x, lw.attn_norm, config.norm_eps, h, inv_rms);
    Matrix dh(x.rows(), config.dim);
    dh.noalias() = dp.leftCols(config.dim) * lw.q;
    dh.noalias() += dp.middleCols(config.dim, config.kv_dim()) * lw.k;
    dh.noalias() += dp.rightCols(config.kv_dim()) * lw.v;
    Matrix dx = Matrix::Zero(x.rows(), x.cols());
    Matrix unused_gain = Matrix::Zero(1, config.dim);
    layers::rmsnorm_backward(x, lw.attn_norm, inv_rms, dh, dx, unused_gain);
    return dx;
}

}  // namespace tiny_llama
