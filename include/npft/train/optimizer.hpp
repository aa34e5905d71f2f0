#pragma once
// Optimizers for the trainable (PEFT) parameters: AdamW and SGD with momentum. An optimizer is a stateless policy plus
// one State per trainable tensor; the state is plain float buffers and a step count, so checkpoints can save it as is.
#include <cmath>
#include <concepts>
#include <cstdint>
#include <span>
#include <vector>

#include "../core/config.hpp"
#include "../core/error.hpp"

namespace npft::train {

/// An optimizer policy.
///   O::State                       per-tensor state, default-constructible: `steps` (updates taken) and `buffers()`
///                                  (its float buffers, for checkpoints)
///   o.make_state(size)             fresh state for a tensor of `size` elements
///   o.step(state, params, grads, lr) one update of `params` (flattened tensor) from `grads`, in place
template <class O>
concept Optimizer = requires(const O& o, typename O::State& state, std::span<float> params, std::span<const float> grads,
                             float lr, Index size) {
    { o.make_state(size) } -> std::same_as<typename O::State>;
    o.step(state, params, grads, lr);
    { state.steps } -> std::convertible_to<std::int64_t>;
    { state.buffers() } -> std::same_as<std::vector<std::span<float>>>;
} && std::default_initializable<typename O::State>;

namespace detail {
inline void require_same_size(std::span<float> params, std::span<const float> grads, std::size_t state_size) {
    require(params.size() == grads.size() && params.size() == state_size, "optimizer step: params (", params.size(),
            "), grads (", grads.size(), ") and state (", state_size, ") must have the same size");
}
}  // namespace detail

/// AdamW (Loshchilov & Hutter) as PyTorch computes it: decoupled weight decay p -= lr*wd*p, then the bias-corrected
/// Adam step p -= lr * m_hat / (sqrt(v_hat) + eps). Defaults follow method.md (weight decay 0.01).
struct AdamW {
    float beta1 = 0.9f;
    float beta2 = 0.999f;
    float epsilon = 1e-8f;
    float weight_decay = 0.01f;

    struct State {
        std::vector<float> first_moment;
        std::vector<float> second_moment;
        std::int64_t steps = 0;
        std::vector<std::span<float>> buffers() { return {first_moment, second_moment}; }
    };

    State make_state(Index size) const {
        require(size >= 0, "optimizer state size must be non-negative, got ", size);
        return State{std::vector<float>(static_cast<std::size_t>(size), 0.0f),
                     std::vector<float>(static_cast<std::size_t>(size), 0.0f), 0};
    }

    void step(State& state, std::span<float> params, std::span<const float> grads, float lr) const {
        detail::require_same_size(params, grads, state.first_moment.size());
        ++state.steps;
        // Bias corrections in double: beta^t for large t is where float loses digits first.
        const double t = static_cast<double>(state.steps);
        const auto correction1 = static_cast<float>(1.0 - std::pow(static_cast<double>(beta1), t));
        const auto correction2 = static_cast<float>(1.0 - std::pow(static_cast<double>(beta2), t));
        const float decay = 1.0f - lr * weight_decay;
        for (std::size_t i = 0; i < params.size(); ++i) {
            const float g = grads[i];
            float& m = state.first_moment[i];
            float& v = state.second_moment[i];
            m = beta1 * m + (1.0f - beta1) * g;
            v = beta2 * v + (1.0f - beta2) * g * g;
            const float m_hat = m / correction1;
            const float v_hat = v / correction2;
            params[i] = params[i] * decay - lr * m_hat / (std::sqrt(v_hat) + epsilon);
        }
    }
};

/// SGD with (heavy-ball) momentum as PyTorch computes it: g' = g + wd*p; buf = momentum*buf + g'; p -= lr*buf
/// (with nesterov: p -= lr*(g' + momentum*buf)).
struct SgdMomentum {
    float momentum = 0.9f;
    float weight_decay = 0.0f;
    bool nesterov = false;

    struct State {
        std::vector<float> velocity;
        std::int64_t steps = 0;
        std::vector<std::span<float>> buffers() { return {velocity}; }
    };

    State make_state(Index size) const {
        require(size >= 0, "optimizer state size must be non-negative, got ", size);
        return State{std::vector<float>(static_cast<std::size_t>(size), 0.0f), 0};
    }

    void step(State& state, std::span<float> params, std::span<const float> grads, float lr) const {
        detail::require_same_size(params, grads, state.velocity.size());
        ++state.steps;
        for (std::size_t i = 0; i < params.size(); ++i) {
            const float g = grads[i] + weight_decay * params[i];
            float& buf = state.velocity[i];
            buf = momentum * buf + g;
            params[i] -= lr * (nesterov ? g + momentum * buf : buf);
        }
    }
};

static_assert(Optimizer<AdamW>);
static_assert(Optimizer<SgdMomentum>);

}  // namespace npft::train
