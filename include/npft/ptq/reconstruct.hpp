#pragma once
// Block-wise post-training reconstruction: after quantization (RTN, GPTQ, NPFT + RTN, ...), fine-tune each window of
// blocks' quantization metadata (scales or LUT levels; codes fixed) so that the quantized blocks reproduce the
// full-precision model where the objective measures the error (objectives.hpp).
//
// Memory: the calibration activations at the current block boundary, the window's targets and the next boundary's
// activations are cached (3 x calibration tokens x width floats); each optimisation step runs on one calibration batch,
// so the working set of a step is bounded by one batch, whatever the calibration set's size.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "../core/eigen.hpp"
#include "../core/error.hpp"
#include "../quant/quantized_matrix.hpp"
#include "../train/optimizer.hpp"
#include "block_model.hpp"
#include "objectives.hpp"
#include "trainable_metadata.hpp"

namespace npft::ptq {

/// Where the error of one window stood before and after its reconstruction.
struct WindowReport {
    std::string objective;
    Index first_block = 0;
    Index last_block = 0;
    double loss_before = 0.0;  ///< mean squared error over the calibration set, RTN (or given) metadata
    double loss_after = 0.0;   ///< the same after reconstruction, with the metadata rounded to fp16 as stored
    double seconds = 0.0;
};

struct ReconstructionOptions {
    Index steps = 200;            ///< optimiser steps per window, one calibration batch per step (cycled in order)
    float learning_rate = 1e-3f;  ///< AdamW on theta (trainable_metadata.hpp): relative change of a scale per step
    bool fp_inputs = true;        ///< true: each window sees the FP model's inputs; false: the partly quantized model's
    std::function<void(const WindowReport&)> on_window;  ///< called after each window (progress)
};

struct ReconstructionReport {
    std::vector<WindowReport> windows;
    double seconds = 0.0;
};

namespace detail {

inline double mean_squared_error(const Matrix& output, const Matrix& target) {
    return static_cast<double>((output - target).squaredNorm()) / static_cast<double>(output.size());
}

/// One trainable matrix of the current window.
struct TrainableTensor {
    Index block = 0;
    std::string name;
    MatrixView<float> value;
    MatrixView<float> grad;
    TrainableMetadata metadata;
    train::AdamW::State state;
    std::vector<float> grad_theta;
};

}  // namespace detail

/// Reconstructs every block of `model` in windows of `objective`. `packed` holds the quantized matrices by parameter
/// name (names from block_parameters); matrices not in it stay in full precision and are not trained. On return `packed`
/// holds the learned metadata and the model's block weights hold their dequantized values (as the packed matrices decode).
template <BlockwiseModel M, ReconstructionObjective O>
ReconstructionReport reconstruct(M& model, std::map<std::string, quant::QuantizedMatrix>& packed,
                                 std::span<const Matrix> calibration_inputs, const O& objective,
                                 const ReconstructionOptions& options = {}) {
    using clock = std::chrono::steady_clock;
    const auto started = clock::now();
    const Index blocks = model.num_blocks();
    const Index window = objective.window_size();
    const Index depth = objective.downstream_depth();
    require(blocks > 0, "block-wise reconstruction needs a model with at least one block");
    require(!calibration_inputs.empty(), "block-wise reconstruction needs at least one calibration batch");
    require(options.steps >= 0, "reconstruction steps must be non-negative, got ", options.steps);
    require(options.learning_rate >= 0.0f && std::isfinite(options.learning_rate),
            "reconstruction learning rate must be finite and non-negative, got ", options.learning_rate);
    for (const Matrix& x : calibration_inputs) {
        require(x.size() > 0 && x.cols() == calibration_inputs.front().cols(),
                "calibration batches must be non-empty with the same width, got ", x.rows(), " x ", x.cols());
        require(x.allFinite(), "a calibration batch holds a non-finite value");
    }
    for (const auto& [name, matrix] : packed) {
        bool found = false;
        for (Index b = 0; b < blocks && !found; ++b)
            for (const train::Parameter& p : model.block_parameters(b))
                if (p.name == name) {
                    require(p.value.rows() == matrix.rows() && p.value.cols() == matrix.cols(), "packed matrix '", name,
                            "' is ", matrix.rows(), " x ", matrix.cols(), " but the model's tensor is ", p.value.rows(), " x ",
                            p.value.cols());
                    found = true;
                }
        require(found, "packed matrix '", name, "' names no block parameter of the model");
    }

    const train::AdamW adam{.beta1 = 0.9f, .beta2 = 0.999f, .epsilon = 1e-12f, .weight_decay = 0.0f};
    const Index calibration = static_cast<Index>(calibration_inputs.size());
    std::vector<Matrix> fp_boundary(calibration_inputs.begin(), calibration_inputs.end());
    std::vector<Matrix> quantized_boundary;  // only for fp_inputs == false
    if (!options.fp_inputs) quantized_boundary = fp_boundary;

    ReconstructionReport report;
    for (Index first = 0; first < blocks; first += window) {
        const auto window_started = clock::now();
        const Index last = std::min(first + window, blocks) - 1;
        // The measured block must exist: near the end of the model a downstream objective measures at the window output.
        const Index measured_depth = (depth > 0 && last + depth < blocks) ? depth : 0;

        // Targets, with every block from `first` on still in full precision.
        std::vector<Matrix> targets(static_cast<std::size_t>(calibration)), next_boundary(targets.size());
        for (Index k = 0; k < calibration; ++k) {
            Matrix h = fp_boundary[static_cast<std::size_t>(k)];
            for (Index j = first; j <= last; ++j) h = model.block_forward(j, h);
            next_boundary[static_cast<std::size_t>(k)] = h;
            if (measured_depth > 0) {
                for (Index j = last + 1; j < last + measured_depth; ++j) h = model.block_forward(j, h);
                h = model.preactivation_forward(last + measured_depth, h);
            }
            targets[static_cast<std::size_t>(k)] = std::move(h);
        }

        std::vector<detail::TrainableTensor> trainables;
        for (Index j = first; j <= last; ++j) {
            for (const train::Parameter& p : model.block_parameters(j)) {
                const auto found = packed.find(p.name);
                if (found == packed.end()) continue;
                TrainableMetadata metadata(found->second);
                auto state = adam.make_state(static_cast<Index>(metadata.parameters().size()));
                std::vector<float> grad_theta(metadata.parameters().size());
                trainables.push_back({j, p.name, p.value, p.grad, std::move(metadata), std::move(state), std::move(grad_theta)});
                trainables.back().metadata.write_weights(p.value);
            }
        }

        const std::vector<Matrix>& inputs = options.fp_inputs ? fp_boundary : quantized_boundary;
        auto run_forward = [&](const Matrix& input, std::vector<Matrix>* window_inputs, std::vector<Matrix>* downstream_inputs) {
            Matrix h = input;
            for (Index j = first; j <= last; ++j) {
                if (window_inputs) window_inputs->push_back(h);
                h = model.block_forward(j, h);
            }
            if (measured_depth > 0) {
                for (Index j = last + 1; j < last + measured_depth; ++j) {
                    if (downstream_inputs) downstream_inputs->push_back(h);
                    h = model.block_forward(j, h);
                }
                if (downstream_inputs) downstream_inputs->push_back(h);
                h = model.preactivation_forward(last + measured_depth, h);
            }
            return h;
        };
        auto calibration_loss = [&]() {
            double total = 0.0;
            for (Index k = 0; k < calibration; ++k)
                total += detail::mean_squared_error(run_forward(inputs[static_cast<std::size_t>(k)], nullptr, nullptr),
                                                    targets[static_cast<std::size_t>(k)]);
            return total / static_cast<double>(calibration);
        };

        WindowReport window_report{objective.name(), first, last, calibration_loss(), 0.0, 0.0};
        if (!trainables.empty()) {
            for (Index step = 0; step < options.steps; ++step) {
                const std::size_t k = static_cast<std::size_t>(step % calibration);
                std::vector<Matrix> window_inputs, downstream_inputs;
                const Matrix output = run_forward(inputs[k], &window_inputs, &downstream_inputs);
                require(output.allFinite(), "reconstruction of blocks ", first, "..", last, " diverged at step ", step);
                Matrix grad = (output - targets[k]) * (2.0f / static_cast<float>(output.size()));
                if (measured_depth > 0) {
                    grad = model.preactivation_backward(last + measured_depth, downstream_inputs.back(), grad);
                    // Full-precision blocks between the window and the measured block: their parameter gradients are not used.
                    for (Index j = last + measured_depth - 1; j > last; --j)
                        grad = model.block_backward(j, downstream_inputs[static_cast<std::size_t>(j - last - 1)], grad);
                }
                for (Index j = last; j >= first; --j) {
                    grad = model.block_backward(j, window_inputs[static_cast<std::size_t>(j - first)], grad);
                    for (detail::TrainableTensor& t : trainables)
                        if (t.block == j) t.metadata.gradient(t.grad, t.grad_theta);
                }
                // Cosine decay to zero over the window's steps: the last steps settle into the optimum.
                const double progress = static_cast<double>(step) / static_cast<double>(options.steps);
                const auto lr = static_cast<float>(0.5 * options.learning_rate * (1.0 + std::cos(3.141592653589793 * progress)));
                for (detail::TrainableTensor& t : trainables) {
                    adam.step(t.state, t.metadata.parameters(), t.grad_theta, lr);
                    t.metadata.write_weights(t.value);
                }
            }
            for (detail::TrainableTensor& t : trainables) {
                quant::QuantizedMatrix learned = t.metadata.packed();
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

        fp_boundary = std::move(next_boundary);
        if (!options.fp_inputs)
            for (Matrix& x : quantized_boundary)
                for (Index j = first; j <= last; ++j) x = model.block_forward(j, x);
    }
    report.seconds = std::chrono::duration<double>(clock::now() - started).count();
    return report;
}

}  // namespace npft::ptq
