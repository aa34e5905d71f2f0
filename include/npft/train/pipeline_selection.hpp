#pragma once
// The pipeline's outlier selection at a stage start: the Fisher pass over the calibration data (the mean of squared
// per-sequence gradients whenever the model can split a batch into its sequences, SequenceSplittingModel, however the
// caller batched the data), the quantization steps when the selector or the noise reads them, and the selector's
// choice for every perturbed tensor, made on the clean weights or, with a continuing adapter, on the merged ones.
#include <map>
#include <ranges>
#include <string>
#include <type_traits>
#include <vector>

#include "../core/eigen.hpp"
#include "../core/error.hpp"
#include "../hessian/fisher.hpp"
#include "../quant/quantizer.hpp"
#include "differentiable_model.hpp"
#include "managed_tensors.hpp"
#include "pipeline_options.hpp"
#include "pipeline_policies.hpp"

namespace npft::train {

/// Diagonal Fisher of the parameters named in `names` over `calibration` (per sequence when the model splits batches).
/// `threads` spreads the squaring and summing over the worker pool (same bits on any count).
template <class Model, std::ranges::random_access_range Calibration>
std::map<std::string, Matrix> calibration_fisher(Model& model, const Calibration& calibration, std::vector<std::string> names,
                                                 int threads) {
    require(std::ranges::size(calibration) > 0, "the selector needs the diagonal Fisher, but no calibration batches were given");
    using Batch = std::ranges::range_value_t<Calibration>;
    hessian::DiagonalFisher fisher(std::move(names), threads);
    for (const auto& batch : calibration) {
        if constexpr (SequenceSplittingModel<Model, Batch>) {
            const std::vector<Batch> sequences = model.split_sequences(batch);
            require(!sequences.empty(), "the model's split_sequences returned no sequence for a calibration batch");
            for (const auto& sequence : sequences) fisher.accumulate(model, sequence);
        } else {
            fisher.accumulate(model, batch);
        }
    }
    return fisher.result();
}

/// The weights selection and quantization steps are computed on: the clean weights, or with a continuing adapter the
/// merged W0 + (alpha/r) B A (the same arithmetic as the values written into the model).
template <class Opt>
Matrix selection_basis(const ManagedTensor<Opt>& t, const PipelineOptions& options) {
    const auto* lora = t.lora();
    if (!(continues_adapter(options) && lora)) return t.clean;
    Matrix merged;
    lora->merged(t.clean, merged);
    return merged;
}

/// Per-weight quantization steps of `basis` under the quantizer's grid.
template <class Quantizer>
Matrix quantization_steps(const Quantizer& quantizer, const Matrix& basis) {
    static_assert(!std::is_same_v<Quantizer, NoQuantizer>, "quantization steps need a grid (check_steps_have_a_grid)");
    return quant::quantization_steps(quantizer.grid(), MatrixView<const float>::dense(basis.data(), basis.rows(), basis.cols()));
}

/// Fisher pass (when the selector reads it), quantization steps (when the selector or the noise reads them) and the
/// selection of every perturbed tensor; clears the tensors' noise.
template <class Selector, class Noise, class Quantizer, class Opt, class Model, class Calibration>
void select_outliers(const Selector& selector, const Quantizer& quantizer, ManagedTensors<Opt>& tensors,
                     const PipelineOptions& options, Model& model, const Calibration& calibration) {
    constexpr bool needs_fisher = Selector::needs_fisher;
    constexpr bool needs_steps = Selector::needs_quant_steps || Noise::needs_quant_steps;
    const auto view_of = [](const Matrix& m) {
        return m.size() == 0 ? MatrixView<const float>() : MatrixView<const float>::dense(m.data(), m.rows(), m.cols());
    };
    std::map<std::string, Matrix> fisher;
    if constexpr (needs_fisher) {
        std::vector<std::string> names;
        for (const auto& t : tensors.all())
            if (t.perturbed) names.push_back(t.name);
        fisher = calibration_fisher(model, calibration, std::move(names), options.threads);
    }
    for (auto& t : tensors.all()) {
        if (!t.perturbed) continue;
        const Matrix basis = selection_basis(t, options);
        if constexpr (needs_steps) t.perturbation.quant_steps = quantization_steps(quantizer, basis);
        outliers::SelectionInputs in{view_of(basis), needs_fisher ? view_of(fisher.at(t.name)) : MatrixView<const float>(),
                                     Selector::needs_quant_steps ? view_of(t.perturbation.quant_steps) : MatrixView<const float>()};
        outliers::OutlierMask mask = selector.select(in);
        require(mask.rows == t.clean.rows() && mask.cols == t.clean.cols(), "the selector returned a ", mask.rows, " x ",
                mask.cols, " mask for tensor '", t.name, "', which is ", t.clean.rows(), " x ", t.clean.cols());
        t.perturbation.selection = std::move(mask);
        t.perturbation.noise.clear();
    }
}

}  // namespace npft::train
