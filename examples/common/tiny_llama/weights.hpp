#pragma once
// The tensors of the decoder, named as a LLaMA checkpoint names them (in a shorter form). Every tensor is an
// npft::Matrix (row-major); linear weights have rows = output features, so a layer computes y = x W^T.
// Gain vectors of the RMSNorms are 1 x dim matrices so that every tensor is seen the same way.
#include <array>
#include <cmath>
#include <string>
#include <vector>

#include <npft/core/eigen.hpp>
#include <npft/core/random.hpp>

#include "config.hpp"

namespace tiny_llama {

using npft::Matrix;

/// The seven linear layers of a block, in the order the forward pass applies them.
enum class LinearKind { q, k, v, o, gate, up, down };
inline constexpr std::array<LinearKind, 7> linear_kinds = {LinearKind::q,    LinearKind::k,  LinearKind::v,   LinearKind::o,
                                                           LinearKind::gate, LinearKind::up, LinearKind::down};

inline const char* linear_suffix(LinearKind kind) {
    switch (kind) {
        case LinearKind::q: return "attn.q";
        case LinearKind::k: return "attn.k";
        case LinearKind::v: return "attn.v";
        case LinearKind::o: return "attn.o";
        case LinearKind::gate: return "mlp.gate";
        case LinearKind::up: return "mlp.up";
        case LinearKind::down: return "mlp.down";
    }
    return "";
}

/// "layers.{layer}.attn.q" and so on.
inline std::string linear_name(Index layer, LinearKind kind) {
    return "layers." + std::to_string(layer) + "." + linear_suffix(kind);
}

struct LayerWeights {
    Matrix attn_norm;  // 1 x dim
    Matrix q, o;        // dim x dim
    Matrix k, v;        // kv_dim x dim (kv_dim = dim without grouped-query attention)
    Matrix mlp_norm;    // 1 x dim
    Matrix gate, up;    // hidden x dim
    Matrix down;        // dim x hidden

    Matrix& linear(LinearKind kind) {
        switch (kind) {
            case LinearKind::q: return q;
            case LinearKind::k: return k;
            case LinearKind::v: return v;
            case LinearKind::o: return o;
            case LinearKind::gate: return gate;
            case LinearKind::up: return up;
            case LinearKind::down: return down;
        }
        return q;
    }
    const Matrix& linear(LinearKind kind) const { return const_cast<LayerWeights&>(*this).linear(kind); }
};

struct Weights {
    Matrix embedding;  // vocab x dim
    std::vector<LayerWeights> layers;
    Matrix final_norm;  // 1 x dim
    Matrix head;        // vocab x dim

    /// All tensors at their shapes, filled with zeros.
    static Weights zeros(const Config& c) {
        Weights w;
        w.embedding = Matrix::Zero(c.vocab, c.dim);
        w.layers.resize(static_cast<std::size_t>(c.layers));
        for (auto& l : w.layers) {
            l.attn_norm = Matrix::Zero(1, c.dim);
            l.q = l.o = Matrix::Zero(c.dim, c.dim);
            l.k = l.v = Matrix::Zero(c.kv_dim(), c.dim);
            l.mlp_norm = Matrix::Zero(1, c.dim);
            l.gate = l.up = Matrix::Zero(c.hidden, c.dim);
            l.down = Matrix::Zero(c.dim, c.hidden);
        }
        w.final_norm = Matrix::Zero(1, c.dim);
        w.head = Matrix::Zero(c.vocab, c.dim);
        return w;
    }

    /// Calls f(name, tensor) for every tensor, always in the same order.
    template <class Self, class F>
    static void visit(Self& self, F&& f) {
        f(std::string("embedding"), self.embedding);
        for (std::size_t i = 0; i < self.layers.size(); ++i) {
            auto& l = self.layers[i];
            const std::string prefix = "layers." + std::to_string(i) + ".";
            f(prefix + "attn_norm", l.attn_norm);
            for (const LinearKind kind : linear_kinds) {
                if (kind == LinearKind::gate) f(prefix + "mlp_norm", l.mlp_norm);
                f(prefix + linear_suffix(kind), l.linear(kind));
            }
        }
        f(std::string("final_norm"), self.final_norm);
        f(std::string("head"), self.head);
    }
    template <class F>
    void for_each(F&& f) {
        visit(*this, f);
    }
    template <class F>
    void for_each(F&& f) const {
        visit(*this, f);
    }

    Index parameter_count() const {
        Index n = 0;
        for_each([&](const std::string&, const Matrix& m) { n += m.size(); });
        return n;
    }
};

/// GPT-2 style initialisation: N(0, 0.02) everywhere, the projections that write into the residual stream (attn.o,
/// mlp.down) scaled by 1/sqrt(2 layers) so the residual variance does not grow with depth; norm gains 1.
/// Every value is a pure function of (seed, tensor number, element).
inline Weights initial_weights(const Config& c, std::uint64_t seed) {
    Weights w = Weights::zeros(c);
    std::uint64_t tensor = 0;
    const float residual_scale = 1.0f / std::sqrt(2.0f * static_cast<float>(c.layers));
    w.for_each([&](const std::string& name, Matrix& m) {
        const npft::RandomKey key{seed, npft::make_stream(0x1a1a, tensor++)};
        if (name.ends_with("norm")) {
            m.setOnes();
            return;
        }
        const float std_dev = 0.02f * ((name.ends_with("attn.o") || name.ends_with("mlp.down")) ? residual_scale : 1.0f);
        for (Index i = 0; i < m.size(); ++i) m.data()[i] = std_dev * npft::gaussian(key, static_cast<std::uint64_t>(i));
    });
    return w;
}

}  // namespace tiny_llama
