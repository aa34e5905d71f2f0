#pragma once
// Outlier attribution: how much of round-to-nearest's damage to the loss the outliers cause. That share is the most
// NPFT (or keeping the outliers exact, dense-and-sparse) can recover, so it is worth measuring before fine-tuning.
#include <limits>
#include <map>
#include <ranges>
#include <string>
#include <vector>

#include "../core/eigen.hpp"
#include "../core/error.hpp"
#include "../core/tensor_view.hpp"
#include "../outliers/outlier_mask.hpp"
#include "../quant/grid.hpp"
#include "../quant/quantizer.hpp"
#include "differentiable_model.hpp"

namespace npft::train {

/// Mean losses of one model under four treatments of the tensors named in the masks (other tensors stay as they are).
struct OutlierAttribution {
    double fp32 = 0.0;                     ///< (a) the model as it is
    double all_quantized = 0.0;            ///< (b) every weight of the tensors round-to-nearest quantized
    double outliers_exact = 0.0;           ///< (c) quantized, except the outliers, which keep their exact values
    double only_outliers_quantized = 0.0;  ///< (d) exact, except the outliers, which take their quantized values

    /// The share of the quantization damage (b - a) that keeping the outliers exact removes: (b - c) / (b - a).
    /// 1 means the outliers cause all of it, 0 none; NaN when quantization does no damage (b == a).
    double outlier_share() const {
        const double damage = all_quantized - fp32;
        return damage == 0.0 ? std::numeric_limits<double>::quiet_NaN() : (all_quantized - outliers_exact) / damage;
    }
};

namespace detail {
template <class Q>
auto as_quantizer(const Q& q) {
    if constexpr (quant::Grid<Q>) {
        return quant::Quantizer<Q>(q);
    } else {
        return q;
    }
}
}  // namespace detail

/// Evaluates `model` (a DifferentiableModel: its loss(batch) when it has one, else loss_and_gradient) on
/// `batches` under the four treatments of OutlierAttribution. `quantizer` is a quant::Grid (round to nearest) or a
/// quant::Quantizer<Grid>; it is fitted on each whole tensor, outliers included, as plain RTN is. `masks` maps tensor
/// names to their outliers (e.g. Pipeline::selections()). The model's weights are restored bit for bit afterwards.
template <class Model, std::ranges::input_range Batches, class QuantizerOrGrid>
OutlierAttribution outlier_attribution(Model& model, const Batches& batches, const QuantizerOrGrid& quantizer,
                                       const std::map<std::string, outliers::OutlierMask>& masks) {
    static_assert(DifferentiableModel<Model, std::ranges::range_value_t<Batches>>,
                  "outlier_attribution needs a npft::train::DifferentiableModel<Model, Batch>");
    require(!masks.empty(), "outlier_attribution: no masks given");
    require(std::ranges::begin(batches) != std::ranges::end(batches), "outlier_attribution: no batches given");
    const auto q = detail::as_quantizer(quantizer);

    struct Tensor {
        MatrixView<float> value;
        const outliers::OutlierMask* mask;
        Matrix exact, quantized;
    };
    std::vector<Tensor> tensors;
    const std::vector<Parameter> parameters = model.parameters();
    for (const auto& [name, mask] : masks) {
        const Parameter* found = nullptr;
        for (const Parameter& p : parameters)
            if (p.name == name) found = &p;
        require(found != nullptr, "outlier_attribution: the model has no parameter named '", name, "'");
        require(mask.rows == found->value.rows() && mask.cols == found->value.cols(), "outlier_attribution: the mask of '",
                name, "' is ", mask.rows, " x ", mask.cols, ", the tensor is ", found->value.rows(), " x ",
                found->value.cols());
        Tensor t{found->value, &mask, to_eigen(MatrixView<const float>(found->value)), Matrix()};
        try {
            t.quantized = q.quantize(MatrixView<const float>(found->value)).dequantize();
        } catch (const Error& e) {
            fail("outlier_attribution: quantizing '", name, "' failed: ", e.what());
        }
        tensors.push_back(std::move(t));
    }

    const auto mean_loss = [&] {
        double sum = 0.0;
        Index count = 0;
        for (const auto& batch : batches) {
            sum += evaluate_loss(model, batch);
            ++count;
        }
        return sum / static_cast<double>(count);
    };
    // Writes `base` everywhere and `at_outliers` at the outlier positions.
    const auto write = [&](bool base_quantized, bool outliers_quantized) {
        for (Tensor& t : tensors) {
            to_eigen(t.value) = base_quantized ? t.quantized : t.exact;
            const Matrix& source = outliers_quantized ? t.quantized : t.exact;
            for (const Index p : t.mask->positions)
                t.value(t.mask->row_of(p), t.mask->col_of(p)) = source(t.mask->row_of(p), t.mask->col_of(p));
        }
    };

    OutlierAttribution out;
    struct Restore {
        std::vector<Tensor>& tensors;
        ~Restore() {
            for (Tensor& t : tensors) to_eigen(t.value) = t.exact;
        }
    } restore{tensors};
    write(false, false);
    out.fp32 = mean_loss();
    write(true, true);
    out.all_quantized = mean_loss();
    write(true, false);
    out.outliers_exact = mean_loss();
    write(false, true);
    out.only_outliers_quantized = mean_loss();
    return out;
}

}  // namespace npft::train

namespace npft {
using train::outlier_attribution;
using train::OutlierAttribution;
}  // namespace npft
