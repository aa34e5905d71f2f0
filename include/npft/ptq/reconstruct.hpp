#pragma once
// Block-wise post-training reconstruction: after quantization (RTN, GPTQ, NPFT + RTN, ...), fine-tune each window of
// blocks' quantization (what is trained is a policy: trainable_parameters.hpp) so that the quantized blocks reproduce
// the full-precision model where the objective measures the error (objectives.hpp).
//
// Memory: the activations at the current block boundary, the window's targets and the next boundary's activations are
// kept in ActivationStores (activation_store.hpp): on disk by default, so that the memory held is a few calibration
// batches whatever the calibration set's size; each optimisation step runs on one batch.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "../core/eigen.hpp"
#include "../core/error.hpp"
#include "../quant/quantized_matrix.hpp"
#include "../train/optimizer.hpp"
#include "activation_store.hpp"
#include "block_model.hpp"
#include "objectives.hpp"
#include "trainable_metadata.hpp"
#include "trainable_parameters.hpp"

namespace npft::ptq {

/// Where the error of one window stood before and after its reconstruction.
struct WindowReport {
    std::string objective;
    Index first_block = 0;
    Index last_block = 0;
    double loss_before = 0.0;   ///< mean squared error over the calibration set, the given quantization
    double loss_trained = 0.0;  ///< the same with the trained parameters as trained (soft rounding, continuous zeros)
    double loss_after = 0.0;    ///< the same with the final packed matrices (hardened rounding, fp16 metadata)
    double seconds = 0.0;
};

struct ReconstructionOptions {
    Index steps = 200;            ///< optimiser steps per window, one calibration batch per step (cycled in order)
    float learning_rate = 1e-3f;  ///< AdamW's step on the policy's parameters
    bool cosine_decay = true;     ///< true: the learning rate decays to 0 over a window's steps; false: constant (AdaRound:
                                  ///< the rounding penalty bites at the end, where a decayed rate could not follow it)
    bool fp_inputs = true;        ///< true: each window sees the FP model's inputs; false: the partly quantized model's
    ActivationStorage storage = ActivationStorage::disk;  ///< where boundary activations and targets wait
    std::function<void(const WindowReport&)> on_window;   ///< called after each window (progress)
};

struct ReconstructionReport {
    std::vector<WindowReport> windows;
    double seconds = 0.0;
    std::size_t peak_activation_bytes = 0;  ///< the most bytes of activation matrices held at once (ActivationBytes)
};

/// Block-0 inputs of the calibration batches, made on demand (e.g. embedded from token ids), so that the caller need
/// not hold them all either. batch(k) must return the same matrix every time it is called with k.
struct CalibrationSource {
    Index count = 0;
    std::function<Matrix(Index)> batch;
};

namespace detail {

inline double mean_squared_error(const Matrix& output, const Matrix& target) {
    return static_cast<double>((output - target).squaredNorm()) / static_cast<double>(output.size());
}

/// One trainable matrix of the current window.
template <class T>
struct TrainableTensor {
    Index block = 0;
    std::string name;
    MatrixView<float> value;
    MatrixView<float> grad;
    T parameters;
    train::AdamW::State state;
    std::vector<float> grad_parameters;
};

template <BlockwiseModel M>
void check_packed_names(M& model, const std::map<std::string, quant::QuantizedMatrix>& packed) {
    for (const auto& [name, matrix] : packed) {
        bool found = false;
        for (Index b = 0; b < model.num_blocks() && !found; ++b)
            for (const train::Parameter& p : model.block_parameters(b))
                if (p.name == name) {
                    require(p.value.rows() == matrix.rows() && p.value.cols() == matrix.cols(), "packed matrix '", name,
                            "' is ", matrix.rows(), " x ", matrix.cols(), " but the model's tensor is ", p.value.rows(), " x ",
                            p.value.cols());
                    found = true;
                }
        require(found, "packed matrix '", name, "' names no block parameter of the model");
    }
}

}  // namespace detail

/// Reconstructs every block of `model` in windows of `objective`, training what `policy` says. `packed` holds the
/// quantized matrices by parameter name (names from block_parameters); matrices not in it stay in full precision and
/// are not trained. On return `packed` holds the learned matrices and the model's block weights hold their dequantized
/// values (as the packed matrices decode).
template <BlockwiseModel M, ReconstructionObjective O, ParameterPolicy P = TrainScales>
ReconstructionReport reconstruct(M& model, std::map<std::string, quant::QuantizedMatrix>& packed,
                                 const CalibrationSource& calibration_source, const O& objective,
                                 const ReconstructionOptions& options = {}, const P& policy = {}) {
    using clock = std::chrono::steady_clock;
    using Trainable = decltype(policy.make(std::declval<const quant::QuantizedMatrix&>(), std::declval<MatrixView<const float>>(), std::uint64_t{0}));
    const auto started = clock::now();
    const Index blocks = model.num_blocks();
    const Index window = objective.window_size();
    const Index depth = objective.downstream_depth();
    const Index calibration = calibration_source.count;
    require(blocks > 0, "block-wise reconstruction needs a model with at least one block");
    require(calibration > 0 && calibration_source.batch, "block-wise reconstruction needs at least one calibration batch");
    require(options.steps >= 0, "reconstruction steps must be non-negative, got ", options.steps);
    require(options.learning_rate >= 0.0f && std::isfinite(options.learning_rate),
            "reconstruction learning rate must be finite and non-negative, got ", options.learning_rate);
    detail::check_packed_names(model, packed);

    ActivationBytes bytes;
    std::optional<Index> width;
    auto source_batch = [&](Index k) {
        Activation x(calibration_source.batch(k), bytes);
        if (!width) width = x.matrix().cols();
        require(x.matrix().size() > 0 && x.matrix().cols() == *width, "calibration batches must be non-empty with the same "
                "width, batch ", k, " is ", x.matrix().rows(), " x ", x.matrix().cols());
        require(x.matrix().allFinite(), "calibration batch ", k, " holds a non-finite value");
        return x;
    };

    const train::AdamW adam{.beta1 = 0.9f, .beta2 = 0.999f, .epsilon = 1e-12f, .weight_decay = 0.0f};
    // Boundary activations of the FP model (and of the partly quantized one): empty before block 0 (the source is read).
    std::optional<ActivationStore> fp_boundary, quantized_boundary;

    ReconstructionReport report;
    for (Index first = 0; first < blocks; first += window) {
        const auto window_started = clock::now();
        const Index last = std::min(first + window, blocks) - 1;
        // The measured block must exist: near the end of the model a downstream objective measures at the window output.
        const Index measured_depth = (depth > 0 && last + depth < blocks) ? depth : 0;
        const bool preactivations = measured_depth > 0 && objective.readout() == Readout::preactivations;
        auto fp_input = [&](Index k) { return fp_boundary ? fp_boundary->read(k) : source_batch(k); };
        auto input = [&](Index k) {
            if (options.fp_inputs || !quantized_boundary) return fp_input(k);
            return quantized_boundary->read(k);
        };

        // Targets, with every block from `first` on still in full precision.
        ActivationStore targets(options.storage, bytes), next_boundary(options.storage, bytes);
        for (Index k = 0; k < calibration; ++k) {
            Matrix h = fp_input(k).matrix();
            for (Index j = first; j <= last; ++j) h = model.block_forward(j, h);
            next_boundary.append(h);
            for (Index j = last + 1; j <= last + measured_depth; ++j)
                h = (preactivations && j == last + measured_depth) ? model.preactivation_forward(j, h) : model.block_forward(j, h);
            targets.append(h);
        }

        std::vector<detail::TrainableTensor<Trainable>> trainables;
        for (Index j = first; j <= last; ++j) {
            const std::vector<train::Parameter> parameters = model.block_parameters(j);
            for (std::size_t i = 0; i < parameters.size(); ++i) {
                const train::Parameter& p = parameters[i];
                const auto found = packed.find(p.name);
                if (found == packed.end()) continue;
                // The block's weights are still full precision here: earlier windows only wrote their own blocks.
                const auto tensor = static_cast<std::uint64_t>(j) * 4096u + i;
                Trainable trainable = policy.make(found->second, MatrixView<const float>(p.value), tensor);
                auto state = adam.make_state(static_cast<Index>(trainable.parameters().size()));
                std::vector<float> grad(trainable.parameters().size());
                trainables.push_back({j, p.name, p.value, p.grad, std::move(trainable), std::move(state), std::move(grad)});
                // The error before is the given quantization's (a policy may start elsewhere: soft rounding at W).
                const Matrix given = found->second.dequantize();
                for (Index r = 0; r < p.value.rows(); ++r)
                    for (Index c = 0; c < p.value.cols(); ++c) p.value(r, c) = given(r, c);
            }
        }

        // The window's output where the objective reads it; `inputs_seen` (when given) gets each block's input in order.
        auto run_forward = [&](const Matrix& x, std::vector<Activation>* inputs_seen) {
            Matrix h = x;
            for (Index j = first; j <= last + measured_depth; ++j) {
                if (inputs_seen) inputs_seen->emplace_back(h, bytes);
                h = (preactivations && j == last + measured_depth) ? model.preactivation_forward(j, h) : model.block_forward(j, h);
            }
            return h;
        };
        auto calibration_loss = [&]() {
            double total = 0.0;
            for (Index k = 0; k < calibration; ++k)
                total += detail::mean_squared_error(run_forward(input(k).matrix(), nullptr), targets.read(k).matrix());
            return total / static_cast<double>(calibration);
        };

        WindowReport window_report{objective.name(), first, last, calibration_loss(), 0.0, 0.0, 0.0};
        window_report.loss_trained = window_report.loss_before;
        if (!trainables.empty()) {
            for (auto& t : trainables) t.parameters.write_weights(t.value);
            const double error_unit = window_report.loss_before > 0.0 ? window_report.loss_before : 1.0;
            for (Index step = 0; step < options.steps; ++step) {
                const Index k = step % calibration;
                const double progress = static_cast<double>(step) / static_cast<double>(options.steps);
                std::vector<Activation> inputs_seen;
                const Matrix output = run_forward(input(k).matrix(), &inputs_seen);
                require(output.allFinite(), "reconstruction of blocks ", first, "..", last, " diverged at step ", step);
                // The loss is the error relative to the given quantization's: AdamW does not see the scale, and a
                // penalty (rounding) is weighed against a dimensionless error whatever the model's activation scale.
                Matrix grad = (output - targets.read(k).matrix()) * static_cast<float>(2.0 / (error_unit * static_cast<double>(output.size())));
                // Blocks after the window (full precision; their parameter gradients are not used), then the window.
                for (Index j = last + measured_depth; j >= first; --j) {
                    const Matrix& x = inputs_seen[static_cast<std::size_t>(j - first)].matrix();
                    grad = (preactivations && j == last + measured_depth) ? model.preactivation_backward(j, x, grad)
                                                                          : model.block_backward(j, x, grad);
                    if (j > last) continue;
                    for (auto& t : trainables)
                        if (t.block == j) {
                            t.parameters.gradient(t.grad, t.grad_parameters);
                            t.parameters.add_regularizer_gradient(progress, t.grad_parameters);
                        }
                }
                // Cosine decay to zero over the window's steps: the last steps settle into the optimum.
                const auto lr = options.cosine_decay
                                    ? static_cast<float>(0.5 * options.learning_rate * (1.0 + std::cos(3.141592653589793 * progress)))
                                    : options.learning_rate;
                for (auto& t : trainables) {
                    adam.step(t.state, t.parameters.parameters(), t.grad_parameters, lr);
                    t.parameters.write_weights(t.value);
                }
            }
            window_report.loss_trained = calibration_loss();
            for (auto& t : trainables) {
                quant::QuantizedMatrix learned = t.parameters.packed();
                const Matrix weights = learned.dequantize();
                for (Index r = 0; r < t.value.rows(); ++r)
                    for (Index c = 0; c < t.value.cols(); ++c) t.value(r, c) = weights(r, c);
                packed[t.name] = std::move(learned);
            }
        }
        window_report.loss_after = calibration_loss();
        window_report.seconds = std::chrono::duration<double>(clock::now() - window_started).count();
        if (options.on_window) options.on_window(window_report);
        report.windows.push_back(window_report);

        if (!options.fp_inputs) {
            ActivationStore next_quantized(options.storage, bytes);
            for (Index k = 0; k < calibration; ++k) {
                Matrix x = input(k).matrix();
                for (Index j = first; j <= last; ++j) x = model.block_forward(j, x);
                next_quantized.append(x);
            }
            quantized_boundary.reset();
            quantized_boundary.emplace(std::move(next_quantized));
        }
        fp_boundary.reset();
        fp_boundary.emplace(std::move(next_boundary));
    }
    report.seconds = std::chrono::duration<double>(clock::now() - started).count();
    report.peak_activation_bytes = bytes.peak;
    return report;
}

/// The same with the calibration batches held by the caller.
template <BlockwiseModel M, ReconstructionObjective O, ParameterPolicy P = TrainScales>
ReconstructionReport reconstruct(M& model, std::map<std::string, quant::QuantizedMatrix>& packed,
                                 std::span<const Matrix> calibration_inputs, const O& objective,
                                 const ReconstructionOptions& options = {}, const P& policy = {}) {
    for (const Matrix& x : calibration_inputs) {
        require(x.size() > 0 && x.cols() == calibration_inputs.front().cols(),
                "calibration batches must be non-empty with the same width, got ", x.rows(), " x ", x.cols());
        require(x.allFinite(), "a calibration batch holds a non-finite value");
    }
    const CalibrationSource source{static_cast<Index>(calibration_inputs.size()),
                                   [&](Index k) { return calibration_inputs[static_cast<std::size_t>(k)]; }};
    return reconstruct(model, packed, source, objective, options, policy);
}

}  // namespace npft::ptq
