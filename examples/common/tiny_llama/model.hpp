#pragma once
// tiny_llama::Model: a small LLaMA-style decoder that satisfies npft::train::DifferentiableModel<Model, Batch>.
// float32, deterministic: the same weights and batch give the same bits, on 1 thread or several (set_threads).
#include <cstdint>
#include <string>
#include <vector>

#include <npft/core/eigen.hpp>
#include <npft/train/differentiable_model.hpp>

#include "config.hpp"
#include "forward.hpp"
#include "layers.hpp"
#include "weights.hpp"

namespace tiny_llama {

class Model {
public:
    explicit Model(const Config& config, std::uint64_t seed = 0) : Model(config, initial_weights(config, seed)) {}
    Model(const Config& config, Weights weights)
        : config_(config), weights_(std::move(weights)), grads_(Weights::zeros(config)),
          rope_(config.context, config.head_dim(), config.rope_theta) {
        config_.validate();
        const Weights expected = Weights::zeros(config_);
        std::vector<std::pair<Index, Index>> shapes;
        expected.for_each([&](const std::string&, const Matrix& m) { shapes.emplace_back(m.rows(), m.cols()); });
        std::size_t i = 0;
        npft::require(weights_.layers.size() == expected.layers.size(), "weights hold ", weights_.layers.size(),
                      " layers, the config says ", config_.layers);
        weights_.for_each([&](const std::string& name, const Matrix& m) {
            npft::require(m.rows() == shapes[i].first && m.cols() == shapes[i].second, "weight ", name, " must be ",
                          shapes[i].first, " x ", shapes[i].second, ", got ", m.rows(), " x ", m.cols());
            ++i;
        });
    }
    // Parameter views point into this object: copying would leave them pointing at the original.
    Model(const Model&) = delete;
    Model& operator=(const Model&) = delete;

    const Config& config() const { return config_; }
    const Weights& weights() const { return weights_; }
    Weights& weights() { return weights_; }
    const Weights& gradients() const { return grads_; }
    const layers::RopeTable& rope() const { return rope_; }

    /// Threads of the forward and backward passes (the caller plus the shared worker pool). Any count gives the same
    /// bits: the work is cut into tiles of fixed shape (parallel.hpp).
    void set_threads(int threads) {
        npft::require(threads >= 1, "model thread count must be at least 1, got ", threads);
        threads_ = threads;
    }
    int threads() const { return threads_; }

    /// Every tensor with its gradient, in a fixed order: embedding, per block attn_norm, attn.{q,k,v,o}, mlp_norm,
    /// mlp.{gate,up,down}, then final_norm and head. The views stay valid for the model's lifetime.
    std::vector<npft::train::Parameter> parameters() {
        std::vector<npft::train::Parameter> out;
        std::vector<Matrix*> grads;
        grads_.for_each([&](const std::string&, Matrix& g) { grads.push_back(&g); });
        std::size_t i = 0;
        weights_.for_each([&](const std::string& name, Matrix& m) {
            out.push_back({name, npft::as_matrix_view(m), npft::as_matrix_view(*grads[i++])});
        });
        return out;
    }

    /// Names of the 7 x layers linear weights (the ones quantization and NPFT act on).
    std::vector<std::string> linear_names() const {
        std::vector<std::string> out;
        for (Index l = 0; l < config_.layers; ++l)
            for (const LinearKind kind : linear_kinds) out.push_back(linear_name(l, kind));
        return out;
    }

    /// Mean next-token cross-entropy; overwrites every gradient.
    double loss_and_gradient(const Batch& batch) {
        const double sum =
            forward_loss_sum(config_, weights_, rope_, DenseLinears{&weights_, threads_}, batch, &activations_, threads_);
        const double predictions = static_cast<double>(batch.count() * batch.positions());
        backward(config_, weights_, rope_, batch, activations_, static_cast<float>(1.0 / predictions), grads_, threads_);
        return sum / predictions;
    }

    /// Mean next-token cross-entropy, forward only.
    double loss(const Batch& batch) const {
        return forward_loss_sum(config_, weights_, rope_, DenseLinears{&weights_, threads_}, batch, nullptr, threads_) /
               static_cast<double>(batch.count() * batch.positions());
    }

private:
    Config config_;
    Weights weights_;
    Weights grads_;
    layers::RopeTable rope_;
    Activations activations_;
    int threads_ = 1;
};

static_assert(npft::train::DifferentiableModel<Model, Batch>);
static_assert(npft::train::ModelWithLoss<Model, Batch>);

}  // namespace tiny_llama
