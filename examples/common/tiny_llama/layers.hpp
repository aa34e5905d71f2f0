#pragma once
// The building blocks of the decoder with their hand-written backward passes: RMSNorm, rotary position embeddings,
// causal softmax attention, SwiGLU. Activations are (tokens x features) row-major matrices, tokens of all sequences stacked.
// Each takes a thread count and splits its work as parallel.hpp says: fixed tiles of rows (or, for the norm gains'
// gradients, of columns), so that the bits do not depend on the thread count.
#include <cmath>
#include <vector>

#include <npft/core/eigen.hpp>
#include <npft/core/error.hpp>

#include "config.hpp"
#include "parallel.hpp"

namespace tiny_llama::layers {

using npft::Matrix;
using npft::Vector;

// ---- RMSNorm: y = x / rms(x) * gain, rms(x) = sqrt(mean(x^2) + eps) ------------------------------------------------

/// Writes y and the per-row 1/rms that the backward pass needs.
inline void rmsnorm_forward(const Matrix& x, const Matrix& gain, float eps, Matrix& y, Vector& inv_rms, int threads = 1) {
    const Index n = x.rows(), d = x.cols();
    y.resize(n, d);
    inv_rms.resize(n);
    parallel::for_each_row_tile(n, parallel::token_tile, threads, [&](Index begin, Index end) {
        for (Index r = begin; r < end; ++r) {
            const float mean_square = x.row(r).squaredNorm() / static_cast<float>(d);
            inv_rms(r) = 1.0f / std::sqrt(mean_square + eps);
            y.row(r) = x.row(r).cwiseProduct(gain.row(0)) * inv_rms(r);
        }
    });
}

/// Given dL/dy: adds dL/dx to dx and dL/dgain to dgain.
///   dx = s * (g dy) - x * s^3 / d * sum(g dy x),  s = 1/rms
/// dx is split over rows; dgain, a sum over rows, over columns, each column summed in row order by one thread.
inline void rmsnorm_backward(const Matrix& x, const Matrix& gain, const Vector& inv_rms, const Matrix& dy, Matrix& dx,
                             Matrix& dgain, int threads = 1) {
    const Index n = x.rows(), d = x.cols();
    parallel::for_each_row_tile(n, parallel::token_tile, threads, [&](Index begin, Index end) {
        for (Index r = begin; r < end; ++r) {
            const float s = inv_rms(r);
            const auto gdy = dy.row(r).cwiseProduct(gain.row(0));
            const float dot = gdy.dot(x.row(r));
            dx.row(r) += s * gdy - x.row(r) * (s * s * s * dot / static_cast<float>(d));
        }
    });
    parallel::for_each_row_tile(d, parallel::feature_tile, threads, [&](Index begin, Index end) {
        const Index w = end - begin;
        for (Index r = 0; r < n; ++r)
            dgain.row(0).segment(begin, w) += dy.row(r).segment(begin, w).cwiseProduct(x.row(r).segment(begin, w)) * inv_rms(r);
    });
}

// ---- Rotary position embeddings (interleaved pairs, as Meta's LLaMA code) --------------------------------------------

/// cos and sin of position p times frequency theta^(-2i/head_dim), for p < context and i < head_dim / 2.
struct RopeTable {
    Matrix cos, sin;  // context x head_dim/2

    RopeTable() = default;
    RopeTable(Index context, Index head_dim, float theta) : cos(context, head_dim / 2), sin(context, head_dim / 2) {
        for (Index p = 0; p < context; ++p) {
            for (Index i = 0; i < head_dim / 2; ++i) {
                const double frequency = std::pow(static_cast<double>(theta), -2.0 * static_cast<double>(i) / static_cast<double>(head_dim));
                const double angle = static_cast<double>(p) * frequency;
                cos(p, i) = static_cast<float>(std::cos(angle));
                sin(p, i) = static_cast<float>(std::sin(angle));
            }
        }
    }
};

/// Rotates each (2i, 2i+1) pair of every head of x (rows: `sequences` sequences of `length` tokens) by the angle of its
/// position; `inverse` rotates back, which is also the backward pass (the rotation is orthogonal). Token t of a
/// sequence sits at position first_position + t (incremental decoding continues a sequence from its cached length).
inline void rope_rotate(Matrix& x, Index length, Index head_dim, const RopeTable& table, bool inverse, int threads = 1,
                        Index first_position = 0) {
    npft::require(first_position >= 0 && first_position + length <= table.cos.rows(), "rotary positions ", first_position,
                  " to ", first_position + length - 1, " are past the table's ", table.cos.rows(), " positions (the context)");
    const Index pairs = head_dim / 2, heads = x.cols() / head_dim;
    const float direction = inverse ? -1.0f : 1.0f;
    parallel::for_each_row_tile(x.rows(), parallel::token_tile, threads, [&](Index begin, Index end) {
        for (Index r = begin; r < end; ++r) {
            const Index position = first_position + r % length;
            float* row = x.row(r).data();
            for (Index h = 0; h < heads; ++h) {
                float* head = row + h * head_dim;
                for (Index i = 0; i < pairs; ++i) {
                    const float c = table.cos(position, i), s = direction * table.sin(position, i);
                    const float a = head[2 * i], b = head[2 * i + 1];
                    head[2 * i] = a * c - b * s;
                    head[2 * i + 1] = a * s + b * c;
                }
            }
        }
    });
}

// ---- Causal multi-head attention: softmax(q k^T / sqrt(d) + mask) v, per sequence and head --------------------------
// Grouped-query attention: k and v may have fewer heads than q (k.cols() / head_dim of them); query head h then reads
// key/value head h / (heads / kv_heads), as Hugging Face's LLaMA and llama.cpp group them.

/// Writes out (tokens x dim) and, when `probs` is given, keeps each (sequence, head) probability matrix for backward.
/// One tile per (sequence, head): each writes its own block of `out`.
inline void attention_forward(const Matrix& q, const Matrix& k, const Matrix& v, Index length, Index heads, Matrix& out,
                              std::vector<Matrix>* probs, int threads = 1) {
    const Index dim = q.cols(), head_dim = dim / heads, sequences = q.rows() / length;
    const Index group = heads / (k.cols() / head_dim);  // query heads per key/value head
    const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
    out.resize(q.rows(), dim);
    if (probs) probs->resize(static_cast<std::size_t>(sequences * heads));
    parallel::for_each_tile(sequences * heads, threads, [&](Index tile) {
        const Index s = tile / heads, h = tile % heads;
        Matrix local;
        Matrix& p = probs ? (*probs)[static_cast<std::size_t>(tile)] : local;
        const auto qh = q.block(s * length, h * head_dim, length, head_dim);
        const auto kh = k.block(s * length, (h / group) * head_dim, length, head_dim);
        const auto vh = v.block(s * length, (h / group) * head_dim, length, head_dim);
        p.noalias() = (qh * kh.transpose()) * scale;
        for (Index t = 0; t < length; ++t) {
            // Causal: token t sees positions 0..t; the masked tail gets probability exactly 0. Eigen's exp is
            // vectorized (std::exp in a loop is not), and the row's sum is Eigen's fixed-order reduction.
            auto seen = p.row(t).head(t + 1).array();
            seen = (seen - seen.maxCoeff()).exp();
            seen /= seen.sum();
            p.row(t).tail(length - t - 1).setZero();
        }
        out.block(s * length, h * head_dim, length, head_dim).noalias() = p * vh;
    });
}

/// Given dL/dout: writes dL/dq, dL/dk, dL/dv.
///   dv = P^T dO;  dP = dO v^T;  dS = P (dP - rowsum(P dP));  dq = dS k / sqrt(d);  dk = dS^T q / sqrt(d)
/// A key/value head shared by several query heads sums their contributions, in head order, within one tile per
/// (sequence, key/value head).
inline void attention_backward(const Matrix& q, const Matrix& k, const Matrix& v, const std::vector<Matrix>& probs,
                               const Matrix& dout, Index length, Index heads, Matrix& dq, Matrix& dk, Matrix& dv,
                               int threads = 1) {
    const Index dim = q.cols(), head_dim = dim / heads, sequences = q.rows() / length;
    const Index kv_heads = k.cols() / head_dim, group = heads / kv_heads;
    const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
    dq.resize(q.rows(), dim);
    dk.setZero(k.rows(), k.cols());
    dv.setZero(v.rows(), v.cols());
    parallel::for_each_tile(sequences * kv_heads, threads, [&](Index tile) {
        const Index s = tile / kv_heads, kv = (tile % kv_heads) * head_dim;
        const auto kh = k.block(s * length, kv, length, head_dim);
        const auto vh = v.block(s * length, kv, length, head_dim);
        Matrix dp;
        for (Index h = (tile % kv_heads) * group; h < (tile % kv_heads + 1) * group; ++h) {
            const Matrix& p = probs[static_cast<std::size_t>(s * heads + h)];
            const auto qh = q.block(s * length, h * head_dim, length, head_dim);
            const auto doh = dout.block(s * length, h * head_dim, length, head_dim);
            dv.block(s * length, kv, length, head_dim).noalias() += p.transpose() * doh;
            dp.noalias() = doh * vh.transpose();
            for (Index t = 0; t < length; ++t) {
                const float inner = p.row(t).dot(dp.row(t));
                dp.row(t) = p.row(t).cwiseProduct((dp.row(t).array() - inner).matrix()) * scale;
            }
            dq.block(s * length, h * head_dim, length, head_dim).noalias() = dp * kh;
            dk.block(s * length, kv, length, head_dim).noalias() += dp.transpose() * qh;
        }
    });
}

// ---- SwiGLU: act = silu(gate) * up ---------------------------------------------------------------------------------

inline float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

inline void swiglu_forward(const Matrix& gate, const Matrix& up, Matrix& act, int threads = 1) {
    act.resize(gate.rows(), gate.cols());
    parallel::for_each_row_tile(gate.rows(), parallel::token_tile, threads, [&](Index begin, Index end) {
        // Whole rows as Eigen arrays: the exp is vectorized.
        const auto g = gate.middleRows(begin, end - begin).array();
        act.middleRows(begin, end - begin).array() = g / (1.0f + (-g).exp()) * up.middleRows(begin, end - begin).array();
    });
}

/// Given dL/dact: writes dL/dgate and dL/dup. silu'(g) = sigmoid(g) (1 + g (1 - sigmoid(g))).
inline void swiglu_backward(const Matrix& gate, const Matrix& up, const Matrix& dact, Matrix& dgate, Matrix& dup,
                            int threads = 1) {
    dgate.resize(gate.rows(), gate.cols());
    dup.resize(gate.rows(), gate.cols());
    parallel::for_each_row_tile(gate.rows(), parallel::token_tile, threads, [&](Index begin, Index end) {
        const auto g = gate.middleRows(begin, end - begin).array();
        const auto d = dact.middleRows(begin, end - begin).array();
        const Eigen::Array<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> sg = 1.0f / (1.0f + (-g).exp());
        dup.middleRows(begin, end - begin).array() = d * g * sg;
        dgate.middleRows(begin, end - begin).array() = d * up.middleRows(begin, end - begin).array() * sg * (1.0f + g * (1.0f - sg));
    });
}

}  // namespace tiny_llama::layers
