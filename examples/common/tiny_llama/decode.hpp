#pragma once
// Incremental decoding with a key/value cache, for the fp32 Model and the QuantizedModel alike.
//
//   KvCache cache(model.config());                  // one sequence; KvCache(config, 2) for two that advance together
//   Matrix logits = extend(model, {prompt}, cache);  // prompt processing: every linear sees all P prompt tokens at once
//   logits = extend(model, {{next}}, cache);        // generation: one token, the linears see one row
//
// extend() runs the new tokens at positions cache.length() ... through the same block math as the full forward pass
// (block.hpp), except that attention reads the keys and values of the earlier positions from the cache instead of
// recomputing them; the logits equal the full forward's up to float rounding (tests/test_llama_decode.cpp). Every piece
// is cut into tiles of fixed shape (parallel.hpp), so the bits do not depend on the thread count.
#include <algorithm>
#include <cmath>
#include <vector>

#include <npft/core/eigen.hpp>
#include <npft/core/error.hpp>

#include "block.hpp"
#include "config.hpp"
#include "forward.hpp"
#include "layers.hpp"
#include "model.hpp"
#include "parallel.hpp"
#include "quantized_model.hpp"
#include "weights.hpp"

namespace tiny_llama {

/// The next tokens of several sequences that advance together: rows[s] continues sequence s. Every sequence gets the
/// same number of tokens.
using TokenRows = std::vector<std::vector<Token>>;

/// Rotated keys and values of every layer for `sequences` sequences of equal length, up to the model's context.
class KvCache {
public:
    explicit KvCache(const Config& config, Index sequences = 1)
        : sequences_(sequences), capacity_(config.context), kv_dim_(config.kv_dim()) {
        config.validate();
        npft::require(sequences >= 1, "a key/value cache needs at least one sequence, got ", sequences);
        keys_.assign(static_cast<std::size_t>(config.layers), Matrix::Zero(sequences * capacity_, kv_dim_));
        values_ = keys_;
    }

    Index sequences() const { return sequences_; }
    /// Positions cached per sequence (the next token goes to this position).
    Index length() const { return length_; }
    /// The most positions a sequence can hold: the model's context.
    Index capacity() const { return capacity_; }
    Index layers() const { return static_cast<Index>(keys_.size()); }
    Index kv_dim() const { return kv_dim_; }
    /// Forgets every position (the memory stays allocated).
    void clear() { length_ = 0; }

    /// Keys of `layer` (after rotation): sequence s, position p at row s * capacity() + p.
    Matrix& keys(Index layer) { return keys_[static_cast<std::size_t>(layer)]; }
    Matrix& values(Index layer) { return values_[static_cast<std::size_t>(layer)]; }
    const Matrix& keys(Index layer) const { return keys_[static_cast<std::size_t>(layer)]; }
    const Matrix& values(Index layer) const { return values_[static_cast<std::size_t>(layer)]; }

    /// Marks `count` more positions as cached (extend() does this once every layer has written them).
    void advance(Index count) {
        npft::require(count >= 0 && length_ + count <= capacity_, "cannot cache ", count, " more positions after ", length_,
                      " of ", capacity_);
        length_ += count;
    }

private:
    Index sequences_, capacity_, kv_dim_;
    Index length_ = 0;
    std::vector<Matrix> keys_, values_;
};

/// Which logits extend() returns: every new position, or only the last of each sequence (prompt processing before
/// generation needs no more).
enum class LogitRows { all, last };

/// fp32 linears for decoding: y = x W^T in tiles of 64 output features, so that even one token spreads over the
/// threads; the tiles have fixed shapes, so the bits do not depend on the thread count.
struct FeatureTiledLinears {
    const Weights* weights;
    int threads = 1;
    void operator()(Index layer, LinearKind kind, const Matrix& x, Matrix& y) const {
        const Matrix& w = weights->layers[static_cast<std::size_t>(layer)].linear(kind);
        parallel::for_each_row_tile(w.rows(), parallel::feature_tile, threads, [&](Index begin, Index end) {
            y.middleCols(begin, end - begin).noalias() = x * w.middleRows(begin, end - begin).transpose();
        });
    }
};

namespace detail {

/// Causal attention of `count` new tokens per sequence (q: sequences * count rows) over the cached positions
/// [0, start + count) of each sequence; the same softmax as layers::attention_forward. One tile per (sequence, head).
inline void cached_attention(const Matrix& q, const Matrix& keys, const Matrix& values, Index capacity, Index start,
                             Index count, Index heads, Matrix& out, int threads) {
    const Index dim = q.cols(), head_dim = dim / heads, sequences = q.rows() / count, seen = start + count;
    const Index group = heads / (keys.cols() / head_dim);  // query heads per key/value head
    const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
    out.resize(q.rows(), dim);
    parallel::for_each_tile(sequences * heads, threads, [&](Index tile) {
        const Index s = tile / heads, h = tile % heads;
        const auto qh = q.block(s * count, h * head_dim, count, head_dim);
        const auto kh = keys.block(s * capacity, (h / group) * head_dim, seen, head_dim);
        const auto vh = values.block(s * capacity, (h / group) * head_dim, seen, head_dim);
        Matrix p = (qh * kh.transpose()) * scale;
        for (Index t = 0; t < count; ++t) {
            auto visible = p.row(t).head(start + t + 1).array();  // new token t sits at position start + t
            visible = (visible - visible.maxCoeff()).exp();
            visible /= visible.sum();
            p.row(t).tail(count - t - 1).setZero();
        }
        out.block(s * count, h * head_dim, count, head_dim).noalias() = p * vh;
    });
}

/// One block on the new tokens' residual stream x (sequences * count rows), writing their keys and values into the
/// cache at positions [start, start + count).
template <LinearFn Linears>
void block_step(const Config& config, const LayerWeights& lw, const layers::RopeTable& rope, const Linears& linear,
                Index layer, Index start, Index count, Matrix& x, KvCache& cache, int threads) {
    const Index tokens = x.rows(), sequences = tokens / count;
    Matrix h, q(tokens, config.dim), k(tokens, config.kv_dim()), v(tokens, config.kv_dim());
    Vector inv_rms;
    layers::rmsnorm_forward(x, lw.attn_norm, config.norm_eps, h, inv_rms, threads);
    linear(layer, LinearKind::q, h, q);
    linear(layer, LinearKind::k, h, k);
    linear(layer, LinearKind::v, h, v);
    layers::rope_rotate(q, count, config.head_dim(), rope, false, threads, start);
    layers::rope_rotate(k, count, config.head_dim(), rope, false, threads, start);
    Matrix& keys = cache.keys(layer);
    Matrix& values = cache.values(layer);
    for (Index s = 0; s < sequences; ++s) {
        keys.middleRows(s * cache.capacity() + start, count) = k.middleRows(s * count, count);
        values.middleRows(s * cache.capacity() + start, count) = v.middleRows(s * count, count);
    }
    Matrix attn;
    cached_attention(q, keys, values, cache.capacity(), start, count, config.heads, attn, threads);
    Matrix projected(tokens, config.dim);
    linear(layer, LinearKind::o, attn, projected);
    x += projected;

    Matrix gate(tokens, config.hidden), up(tokens, config.hidden), act;
    layers::rmsnorm_forward(x, lw.mlp_norm, config.norm_eps, h, inv_rms, threads);
    linear(layer, LinearKind::gate, h, gate);
    linear(layer, LinearKind::up, h, up);
    layers::swiglu_forward(gate, up, act, threads);
    linear(layer, LinearKind::down, act, projected);
    x += projected;
}

/// logits = head(norm(x)), the head in tiles of 64 vocabulary entries (one token still spreads over the threads).
inline Matrix head_logits(const Config& config, const Weights& w, const Matrix& x, int threads) {
    Matrix h;
    Vector inv_rms;
    layers::rmsnorm_forward(x, w.final_norm, config.norm_eps, h, inv_rms, threads);
    Matrix logits(x.rows(), config.vocab);
    parallel::for_each_row_tile(config.vocab, parallel::feature_tile, threads, [&](Index begin, Index end) {
        logits.middleCols(begin, end - begin).noalias() = h * w.head.middleRows(begin, end - begin).transpose();
    });
    return logits;
}

}  // namespace detail

/// Runs `tokens` (rows[s]: the next tokens of sequence s of the cache) at positions cache.length() onwards, appends
/// their keys and values to the cache and returns their logits: (sequences * count) x vocab, sequence by sequence,
/// or with LogitRows::last one row per sequence. `threads`: as block_forward (the linears thread as `linear` does).
template <LinearFn Linears>
Matrix extend(const Config& config, const Weights& w, const layers::RopeTable& rope, const Linears& linear,
              const TokenRows& tokens, KvCache& cache, LogitRows rows = LogitRows::all, int threads = 1) {
    npft::require(cache.layers() == config.layers && cache.kv_dim() == config.kv_dim() && cache.capacity() == config.context,
                  "key/value cache of ", cache.layers(), " layers, width ", cache.kv_dim(), " and ", cache.capacity(),
                  " positions does not fit the model (", config.layers, " layers, width ", config.kv_dim(), ", context ",
                  config.context, ")");
    npft::require(static_cast<Index>(tokens.size()) == cache.sequences(), "tokens: got ", tokens.size(),
                  " sequences, the key/value cache holds ", cache.sequences());
    const Index count = static_cast<Index>(tokens.front().size()), start = cache.length();
    npft::require(count >= 1, "tokens: the prompt is empty (each sequence needs at least one new token)");
    for (const auto& row : tokens) {
        npft::require(static_cast<Index>(row.size()) == count, "tokens: every sequence must get the same number of new ",
                      "tokens, got ", count, " and ", row.size());
        for (const Token t : row)
            npft::require(t >= 0 && t < config.vocab, "tokens: token ", t, " is outside the vocabulary [0, ", config.vocab, ")");
    }
    npft::require(start + count <= config.context, "tokens: positions ", start, " to ", start + count - 1,
                  " are past the context of ", config.context, " positions");

    const Index sequences = cache.sequences();
    Matrix x(sequences * count, config.dim);
    for (Index s = 0; s < sequences; ++s)
        for (Index t = 0; t < count; ++t)
            x.row(s * count + t) = w.embedding.row(tokens[static_cast<std::size_t>(s)][static_cast<std::size_t>(t)]);
    for (Index l = 0; l < config.layers; ++l)
        detail::block_step(config, w.layers[static_cast<std::size_t>(l)], rope, linear, l, start, count, x, cache, threads);
    cache.advance(count);

    if (rows == LogitRows::last && count > 1) {
        Matrix last(sequences, config.dim);
        for (Index s = 0; s < sequences; ++s) last.row(s) = x.row(s * count + count - 1);
        return detail::head_logits(config, w, last, threads);
    }
    return detail::head_logits(config, w, x, threads);
}

/// extend() with the fp32 model's weights, on its thread count.
inline Matrix extend(const Model& model, const TokenRows& tokens, KvCache& cache, LogitRows rows = LogitRows::all) {
    return extend(model.config(), model.weights(), model.rope(), FeatureTiledLinears{&model.weights(), model.threads()},
                  tokens, cache, rows, model.threads());
}

/// extend() with the packed linears, on the quantized model's multiply-options thread count.
inline Matrix extend(const QuantizedModel& model, const TokenRows& tokens, KvCache& cache, LogitRows rows = LogitRows::all) {
    const Model& m = model.model();
    return extend(m.config(), m.weights(), m.rope(), model.linears(), tokens, cache, rows, model.multiply_options().threads);
}

/// The logits of the full forward pass (no cache): sequences x length positions, sequence by sequence.
template <LinearFn Linears>
Matrix forward_logits(const Config& config, const Weights& w, const layers::RopeTable& rope, const Linears& linear,
                      const TokenRows& tokens, int threads = 1) {
    npft::require(!tokens.empty() && !tokens.front().empty(), "tokens: need at least one sequence of at least one token");
    const Index length = static_cast<Index>(tokens.front().size());
    Matrix x(static_cast<Index>(tokens.size()) * length, config.dim);
    for (std::size_t s = 0; s < tokens.size(); ++s) {
        npft::require(static_cast<Index>(tokens[s].size()) == length, "tokens: every sequence must have ", length,
                      " tokens, got ", tokens[s].size());
        for (Index t = 0; t < length; ++t) {
            const Token token = tokens[s][static_cast<std::size_t>(t)];
            npft::require(token >= 0 && token < config.vocab, "tokens: token ", token, " is outside the vocabulary");
            x.row(static_cast<Index>(s) * length + t) = w.embedding.row(token);
        }
    }
    BlockActivations scratch;
    for (Index l = 0; l < config.layers; ++l)
        block_forward(config, w.layers[static_cast<std::size_t>(l)], rope, linear, l, length, x, scratch, false, threads);
    Matrix h, logits;
    Vector inv_rms;
    layers::rmsnorm_forward(x, w.final_norm, config.norm_eps, h, inv_rms, threads);
    parallel::x_wt(h, w.head, logits, threads);
    return logits;
}

/// The index of the largest logit of row `r` (the first of equal ones): greedy decoding's next token.
inline Token argmax_token(const Matrix& logits, Index r) {
    Index best = 0;
    logits.row(r).maxCoeff(&best);
    return static_cast<Token>(best);
}

}  // namespace tiny_llama
