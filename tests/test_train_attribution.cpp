// Outlier attribution on a model whose loss is the squared distance of its weights to their original values, so every
// figure is a sum of squared rounding errors that can be worked out by hand.
#include <catch2/catch.hpp>

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include <npft/npft.hpp>

#include "train_test_models.hpp"

using npft::Matrix;
namespace train = npft::train;

namespace {

/// loss = sum over both tensors of (w - target)^2 (in double); targets are the weights at construction.
struct DistanceModel {
    Matrix w, v, gw, gv, tw, tv;
    int calls = 0;
    DistanceModel(Matrix a, Matrix b) : w(a), v(b), gw(a), gv(b), tw(a), tv(b) {}
    std::vector<train::Parameter> parameters() {
        return {{"a", npft::as_matrix_view(w), npft::as_matrix_view(gw)},
                {"b", npft::as_matrix_view(v), npft::as_matrix_view(gv)}};
    }
    double loss_and_gradient(int /*batch*/) {
        ++calls;
        gw = 2.0f * (w - tw);
        gv = 2.0f * (v - tv);
        return (w - tw).cast<double>().squaredNorm() + (v - tv).cast<double>().squaredNorm();
    }
};

Matrix row(std::initializer_list<float> values) {
    Matrix m(1, static_cast<npft::Index>(values.size()));
    npft::Index i = 0;
    for (const float x : values) m(0, i++) = x;
    return m;
}

}  // namespace

TEST_CASE("outlier attribution: hand-computed losses on a distance model", "[train][attribution]") {
    // 2-bit asymmetric per-row RTN of [0, 3, 0.4, 2.25]: range [0, 3], step 1, so 0.4 -> 0 (error 0.4) and
    // 2.25 -> 2 (error 0.25); 0 and 3 are exact. Tensor b = [0, 3, 1, 2] is on the grid.
    DistanceModel model(row({0.0f, 3.0f, 0.4f, 2.25f}), row({0.0f, 3.0f, 1.0f, 2.0f}));
    const Matrix before_w = model.w, before_v = model.v;
    const std::map<std::string, npft::outliers::OutlierMask> masks{{"a", npft::outliers::OutlierMask(1, 4, {2})},
                                                                   {"b", npft::outliers::OutlierMask(1, 4, {1})}};
    const std::vector<int> batches{0, 1};
    const auto r = npft::outlier_attribution(model, batches, npft::quant::Uniform<2>{}, masks);
    const double e_outlier = static_cast<double>(0.4f) * static_cast<double>(0.4f), e_other = 0.25 * 0.25;
    CHECK(r.fp32 == 0.0);
    CHECK(r.all_quantized == Approx(e_outlier + e_other).epsilon(1e-6));
    CHECK(r.outliers_exact == Approx(e_other).epsilon(1e-6));
    CHECK(r.only_outliers_quantized == Approx(e_outlier).epsilon(1e-6));
    CHECK(r.outlier_share() == Approx(e_outlier / (e_outlier + e_other)).epsilon(1e-6));
    CHECK(model.calls == 8);  // four treatments x two batches
    CHECK(model.w == before_w);  // restored bit for bit
    CHECK(model.v == before_v);

    // The mask moved onto the exactly representable 3.0 of `a`: the outliers then cause no damage.
    const std::map<std::string, npft::outliers::OutlierMask> other{{"a", npft::outliers::OutlierMask(1, 4, {1})}};
    const auto s = npft::outlier_attribution(model, batches, npft::quant::Quantizer<npft::quant::Uniform<2>>{}, other);
    CHECK(s.outlier_share() == 0.0);
    CHECK(s.only_outliers_quantized == 0.0);
    CHECK(s.outliers_exact == s.all_quantized);
}

TEST_CASE("outlier attribution on the tiny MLP with the pipeline's selection", "[train][attribution]") {
    // Orderings between (b), (c) and (d) need not hold on a real model; (a) and (b) are checked against the model's
    // own loss and a quantization done here, and the mask comes from the pipeline.
    using Pipe = npft::Pipeline<npft::outliers::TopFisher, npft::noise::Schedule<npft::noise::QuantStepUniform>,
                                npft::hessian::Hutchinson<>, npft::quant::Uniform<3>>;
    npft_test::TinyMlp model = npft_test::small_mlp(4);
    const auto batches = npft_test::teacher_batches(3, 0);
    train::PipelineOptions o;
    o.adapted = train::NameFilter::all();
    Pipe pipe(o, {.fraction = 0.05});
    pipe.select(model, batches);
    const auto masks = pipe.selections();
    REQUIRE(masks.size() == 2);
    const auto r = npft::outlier_attribution(model, batches, npft::quant::Uniform<3>{}, masks);
    double direct = 0.0;
    for (const auto& b : batches) direct += model.loss(b) / 3.0;
    CHECK(r.fp32 == Approx(direct).epsilon(1e-12));
    npft_test::TinyMlp quantized = model;
    const npft::quant::Quantizer<npft::quant::Uniform<3>> q;
    quantized.w1 = q.quantize(npft::MatrixView<const float>(npft::as_matrix_view(model.w1))).dequantize();
    quantized.w2 = q.quantize(npft::MatrixView<const float>(npft::as_matrix_view(model.w2))).dequantize();
    double all = 0.0;
    for (const auto& b : batches) all += quantized.loss(b) / 3.0;
    CHECK(r.all_quantized == Approx(all).epsilon(1e-12));
    CHECK(r.all_quantized > r.fp32);
}

TEST_CASE("outlier attribution names the tensor in its errors", "[train][attribution]") {
    DistanceModel model(row({0.0f, 1.0f}), row({1.0f, 2.0f}));
    const std::vector<int> batches{0};
    CHECK_THROWS_WITH(npft::outlier_attribution(model, batches, npft::quant::Uniform<2>{},
                                                {{"c", npft::outliers::OutlierMask(1, 2, {0})}}),
                      Catch::Contains("no parameter named 'c'"));
    CHECK_THROWS_WITH(npft::outlier_attribution(model, batches, npft::quant::Uniform<2>{},
                                                {{"b", npft::outliers::OutlierMask(2, 1, {0})}}),
                      Catch::Contains("the mask of 'b' is 2 x 1"));
    CHECK_THROWS_WITH(npft::outlier_attribution(model, batches, npft::quant::Uniform<2, 128>{},
                                                {{"b", npft::outliers::OutlierMask(1, 2, {0})}}),
                      Catch::Contains("quantizing 'b' failed"));
}
