#pragma once
// Shape of the tiny LLaMA-style decoder, and the batch it trains on.
#include <cstdint>
#include <string>
#include <vector>

#include <npft/core/config.hpp>
#include <npft/core/error.hpp>

namespace tiny_llama {

using npft::Index;
using Token = std::int32_t;

struct Config {
    Index vocab = 256;  ///< byte-level by default
    Index layers = 4;
    Index dim = 128;
    Index heads = 4;
    Index kv_heads = 0;  ///< key/value heads for grouped-query attention; 0 means one per query head
    Index hidden = 384;   ///< SwiGLU inner width
    Index context = 128;  ///< longest sequence (RoPE table size)
    float rope_theta = 10000.0f;
    float norm_eps = 1e-5f;

    Index head_dim() const { return dim / heads; }
    Index kv_head_count() const { return kv_heads == 0 ? heads : kv_heads; }
    /// Width of k and v: kv heads x head dim (dim itself without grouped-query attention).
    Index kv_dim() const { return kv_head_count() * head_dim(); }

    /// The default: trains in a few minutes on 2 cores. Every linear input width (128, 384) is a multiple of 128,
    /// so group-128 quantization applies to every layer.
    static Config small() { return {}; }
    /// The larger configuration for the full benchmark.
    static Config large() {
        Config c;
        c.dim = 256;
        c.hidden = 768;
        c.heads = 8;
        return c;
    }

    void validate() const {
        npft::require(vocab > 0 && layers > 0 && dim > 0 && heads > 0 && hidden > 0 && context > 0,
                      "model config sizes must be positive");
        npft::require(dim % heads == 0, "model dim ", dim, " must be a multiple of the head count ", heads);
        npft::require(head_dim() % 2 == 0, "head dim ", head_dim(), " must be even for rotary embeddings");
        npft::require(kv_heads >= 0 && heads % kv_head_count() == 0, "the head count ", heads,
                      " must be a multiple of the key/value head count ", kv_head_count());
    }

    /// A stable text form (used to key checkpoints and logs).
    std::string describe() const {
        return "vocab=" + std::to_string(vocab) + " layers=" + std::to_string(layers) + " dim=" + std::to_string(dim) +
               " heads=" + std::to_string(heads) + " hidden=" + std::to_string(hidden) +
               " context=" + std::to_string(context) + " rope_theta=" + std::to_string(rope_theta) +
               " norm_eps=" + std::to_string(norm_eps) +
               // Only grouped-query models say so, so that earlier checkpoints keep their keys.
               (kv_head_count() != heads ? " kv_heads=" + std::to_string(kv_heads) : std::string());
    }
};

/// Next-token prediction on a few sequences of equal length: position t predicts token t+1, so a sequence of n tokens
/// gives n-1 predictions. The loss is the mean cross-entropy over all predictions of the batch.
struct Batch {
    std::vector<std::vector<Token>> sequences;

    Index count() const { return static_cast<Index>(sequences.size()); }
    /// Input positions per sequence (sequence length minus one).
    Index positions() const { return sequences.empty() ? 0 : static_cast<Index>(sequences.front().size()) - 1; }
};

}  // namespace tiny_llama
