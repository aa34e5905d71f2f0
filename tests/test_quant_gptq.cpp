// GPTQ: the blocked, Cholesky-based implementation against a plain sequential reference written here; GPTQ against RTN
// on correlated inputs; groups x act-order; dead and duplicate inputs; the Hessian accumulator; bad input.
#include <catch2/catch.hpp>
#include <npft/core/random.hpp>
#include <npft/quant/gptq.hpp>
#include <npft/quant/nonuniform.hpp>
#include <npft/quant/uniform.hpp>

#include <Eigen/Cholesky>
#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "test_matrices.hpp"

namespace npft::quant {
namespace {

/// A small LUT grid for the tests: 2^bits levels spread as t |t| over [-absmax, absmax] (denser near 0), one table per row.
struct SquareLutGrid {
    int bits_ = 3;
    int bits() const { return bits_; }
    Format format() const { return Format::lut; }
    Index group_size(Index cols) const { return cols; }
    LutParams fit(std::span<const float> values, std::span<const float> /*importance*/) const {
        float absmax = 0.0f;
        for (const float v : values) absmax = std::max(absmax, std::abs(v));
        LutParams p;
        p.bits = bits_;
        const Index n = p.size();
        for (Index i = 0; i < n; ++i) {
            const float t = -1.0f + 2.0f * static_cast<float>(i) / static_cast<float>(n - 1);
            p.levels[static_cast<std::size_t>(i)] = round_to_half(absmax * t * std::abs(t));
        }
        return p;
    }
};
static_assert(Grid<SquareLutGrid>);

/// Calibration inputs with strongly correlated features: x = A z + 0.1 noise, A a random mixing of 4 latent factors.
Matrix correlated_inputs(Index tokens, Index features, std::uint64_t seed) {
    const npft::RandomKey mix{seed, 1}, latent{seed, 2}, noise{seed, 3};
    constexpr Index factors = 4;
    Matrix a(factors, features), z(tokens, factors), x(tokens, features);
    for (Index i = 0; i < a.size(); ++i) a.data()[i] = npft::gaussian(mix, static_cast<std::uint64_t>(i));
    for (Index i = 0; i < z.size(); ++i) z.data()[i] = npft::gaussian(latent, static_cast<std::uint64_t>(i));
    x = z * a;
    for (Index i = 0; i < x.size(); ++i) x.data()[i] += 0.1f * npft::gaussian(noise, static_cast<std::uint64_t>(i));
    return x;
}

Eigen::MatrixXd hessian_of(const Matrix& x) {
    const Eigen::MatrixXd xd = x.cast<double>();
    return (2.0 / static_cast<double>(x.rows())) * xd.transpose() * xd;
}

/// ||(W - Q) X^T||^2 over the calibration tokens (rows of X).
double output_error(const Matrix& w, const Matrix& q, const Matrix& x) {
    const Eigen::MatrixXd e = (w - q).cast<double>();
    return (e * x.cast<double>().transpose()).squaredNorm();
}

/// GPTQ as the paper states it, without any of the fast paths: columns one at a time in canonical indexing, each error
/// (w_j - q_j) / [H_F^-1]_jj times row j of H_F^-1 subtracted from the remaining columns F, then column j eliminated
/// from the inverse: H_F^-1 <- H_F^-1 - H_F^-1[:, j] H_F^-1[j, :] / H_F^-1[j, j]. All in double.
struct ReferenceGptq {
    Matrix q;                  ///< the quantized weights
    Eigen::MatrixXd rounded;   ///< the updated value each weight had when it was rounded
    std::vector<Index> order;  ///< the column order
};

template <class G>
ReferenceGptq reference_gptq(const G& grid, const Matrix& weights, Eigen::MatrixXd h, const GptqOptions& options) {
    const Index rows = weights.rows(), cols = weights.cols();
    const Index group = grid.group_size(cols);
    Eigen::MatrixXd w = weights.cast<double>();
    for (Index j = 0; j < cols; ++j) {
        if (h(j, j) == 0.0) {
            h(j, j) = 1.0;
            w.col(j).setZero();
        }
    }
    std::vector<Index> order(static_cast<std::size_t>(cols));
    std::iota(order.begin(), order.end(), Index{0});
    if (options.act_order) std::stable_sort(order.begin(), order.end(), [&](Index a, Index b) { return h(a, a) > h(b, b); });
    h.diagonal().array() += options.damp_fraction * h.diagonal().mean();
    Eigen::MatrixXd hinv = h.llt().solve(Eigen::MatrixXd::Identity(cols, cols));

    using P = params_of<G>;
    std::vector<P> params(static_cast<std::size_t>(rows * (cols / group)));
    std::vector<bool> fitted(static_cast<std::size_t>(cols / group), false), done(static_cast<std::size_t>(cols), false);
    auto fit = [&](Index g) {
        for (Index r = 0; r < rows; ++r) {
            std::vector<float> values(static_cast<std::size_t>(group));
            for (Index t = 0; t < group; ++t) values[static_cast<std::size_t>(t)] = static_cast<float>(w(r, g * group + t));
            params[static_cast<std::size_t>(r * (cols / group) + g)] = grid.fit(values, {});
        }
        fitted[static_cast<std::size_t>(g)] = true;
    };
    if (options.group_fit == GroupFit::upfront)
        for (Index g = 0; g < cols / group; ++g) fit(g);

    Matrix q(rows, cols);
    Eigen::MatrixXd rounded(rows, cols);
    for (const Index j : order) {
        const Index g = j / group;
        if (!fitted[static_cast<std::size_t>(g)]) fit(g);
        Eigen::VectorXd err(rows);
        for (Index r = 0; r < rows; ++r) {
            const P& p = params[static_cast<std::size_t>(r * (cols / group) + g)];
            rounded(r, j) = w(r, j);
            q(r, j) = p.decode(p.encode(static_cast<float>(w(r, j))));
            err(r) = w(r, j) - q(r, j);
        }
        done[static_cast<std::size_t>(j)] = true;
        const double d = hinv(j, j);
        for (Index k = 0; k < cols; ++k)
            if (!done[static_cast<std::size_t>(k)]) w.col(k) -= err * (hinv(j, k) / d);
        const Eigen::VectorXd column = hinv.col(j);
        hinv -= column * column.transpose() / d;
    }
    return {q, rounded, order};
}

MatrixView<const float> view(const Matrix& m) { return npft::as_matrix_view(m); }

/// Every stored code is the code of its own dequantized value under the stored parameters (the packed matrix holds
/// exactly the grid points GPTQ chose, and nothing decodes outside its group's grid).
void require_codes_round_trip(const QuantizedMatrix& q) {
    q.validate();
    for (Index r = 0; r < q.rows(); ++r) {
        for (Index j = 0; j < q.cols(); ++j) {
            const std::uint32_t code = q.codes().get(r, j);
            const float value = q.dequantize_at(r, j);
            if (q.is_uniform()) {
                REQUIRE(q.uniform_params(r, j / q.group_size()).encode(value) == code);
            } else {
                REQUIRE(q.lut_params(r).decode(code) == value);
            }
        }
    }
}

template <class G>
void check_against_reference(const G& grid, const GptqOptions& options, std::uint64_t seed) {
    const Index rows = 12, cols = 32, tokens = 128;
    const Matrix x = correlated_inputs(tokens, cols, seed);
    const Matrix w = npft_test::gaussian_matrix(rows, cols, seed, 7);
    const Eigen::MatrixXd h = hessian_of(x);
    const QuantizedMatrix packed = Gptq<G>{grid, options}.quantize(view(w), h);
    require_codes_round_trip(packed);
    const Matrix q = packed.dequantize();
    const ReferenceGptq reference = reference_gptq(grid, w, h, options);
    const Matrix& expected = reference.q;
    // The library updates in float, the reference in double, so a weight whose updated value lies within rounding of a
    // decision boundary may round the other way. Only such near ties may differ first: in each row, the first column
    // (in GPTQ's order) with another code must be one where the reference's value is within 1e-4 level spacings of
    // the midpoint between the two levels. Later codes of that row see a different error feedback, so they may differ
    // too; over all cases at most 2 of the 384 codes differ (docs/baselines.md).
    Index differing = 0;
    for (Index r = 0; r < rows; ++r) {
        bool first = true;
        for (const Index j : reference.order) {
            if (q(r, j) == expected(r, j)) continue;
            ++differing;
            if (!first) continue;
            first = false;
            const double mid = 0.5 * (static_cast<double>(q(r, j)) + expected(r, j));
            const double spacing = std::abs(static_cast<double>(q(r, j)) - expected(r, j));
            INFO("row " << r << ", column " << j << ": reference value " << reference.rounded(r, j) << " -> "
                        << expected(r, j) << ", library " << q(r, j));
            CHECK(std::abs(reference.rounded(r, j) - mid) <= 1e-4 * spacing);
        }
    }
    CHECK(differing <= 2);
    CHECK(output_error(w, q, x) == Approx(output_error(w, expected, x)).epsilon(1e-3));
}

}  // namespace

TEST_CASE("gptq: hand-computed 1x3 layer, error feedback flips the second column", "[gptq]") {
    // 2-bit asymmetric per row: fit on [0, 0.9] gives scale fp16(0.3) = 0.30004883, zero 0.
    // Column 0: 0.44 -> code 1, error 0.13995; H^-1 row 0 gives w1 += 0.5 * error: 0.42 -> 0.48998, 1.633 steps -> code 2 (RTN: 1.400 steps -> 1).
    Matrix w(1, 3);
    w << 0.44f, 0.42f, 0.9f;
    Eigen::MatrixXd h(3, 3);
    h << 1.0, 0.5, 0.0, 0.5, 1.0, 0.0, 0.0, 0.0, 1.0;
    const QuantizedMatrix q = Gptq<Uniform<2>>{{}, {.damp_fraction = 0.0}}.quantize(view(w), h);
    CHECK(q.uniform_params(0, 0).scale == 0.30004883f);
    CHECK(q.codes().get(0, 0) == 1u);
    CHECK(q.codes().get(0, 1) == 2u);
    CHECK(q.codes().get(0, 2) == 3u);
    const QuantizedMatrix rtn = Quantizer<Uniform<2>>{}.quantize(view(w));
    CHECK(rtn.codes().get(0, 1) == 1u);
}

TEST_CASE("gptq: equals the sequential reference for every grid, group and order combination", "[gptq]") {
    for (const bool act_order : {false, true}) {
        for (const GroupFit fit : {GroupFit::when_reached, GroupFit::upfront}) {
            // Blocks larger than the layer (one block), not dividing the layer (groups straddle blocks), and of one column.
            for (const Index block : {Index{128}, Index{5}, Index{1}}) {
                const GptqOptions options{.damp_fraction = 0.01, .block_size = block, .act_order = act_order, .group_fit = fit};
                INFO("act_order " << act_order << ", upfront " << (fit == GroupFit::upfront) << ", block " << block);
                for (const int bits : {2, 3, 4}) {
                    INFO("bits " << bits);
                    check_against_reference(UniformGrid(bits, 0), options, 11);
                    check_against_reference(UniformGrid(bits, 8), options, 12);
                    check_against_reference(UniformGrid(bits, 16, Symmetry::symmetric), options, 13);
                    check_against_reference(SquareLutGrid{bits}, options, 14);
                }
            }
        }
    }
}

TEST_CASE("gptq: act-order keeps canonical groups, so the packed matrix decodes in the canonical column order", "[gptq]") {
    const Index rows = 6, cols = 32;
    const Matrix x = correlated_inputs(64, cols, 21);
    const Matrix w = npft_test::gaussian_matrix(rows, cols, 21, 7);
    const Eigen::MatrixXd h = hessian_of(x);
    for (const GroupFit fit : {GroupFit::when_reached, GroupFit::upfront}) {
        const QuantizedMatrix q = Gptq<Uniform<4, 8>>{{}, {.act_order = true, .group_fit = fit}}.quantize(view(w), h);
        REQUIRE(q.group_size() == 8);
        require_codes_round_trip(q);
        // Each group's levels come from that group's canonical columns: every decoded value lies within the group's range
        // widened by the feedback (at most a few steps), never on another group's scale.
        const Matrix d = q.dequantize();
        for (Index r = 0; r < rows; ++r)
            for (Index j = 0; j < cols; ++j) CHECK(std::abs(d(r, j) - w(r, j)) <= 8.0f * q.uniform_params(r, j / 8).scale);
    }
}

TEST_CASE("gptq: lower output error than RTN on correlated inputs, on average and in at least 95% of seeds", "[gptq]") {
    const Index rows = 8, cols = 32, tokens = 96, seeds = 200;
    Index wins = 0;
    double gptq_total = 0.0, rtn_total = 0.0;
    for (Index s = 0; s < seeds; ++s) {
        const auto seed = static_cast<std::uint64_t>(1000 + s);
        const Matrix x = correlated_inputs(tokens, cols, seed);
        const Matrix w = npft_test::gaussian_matrix(rows, cols, seed, 7);
        const bool act_order = s % 2 == 1;
        const Matrix q = Gptq<Uniform<3, 16>>{{}, {.act_order = act_order}}.quantize(view(w), hessian_of(x)).dequantize();
        const Matrix r = Quantizer<Uniform<3, 16>>{}.quantize(view(w)).dequantize();
        const double e_gptq = output_error(w, q, x), e_rtn = output_error(w, r, x);
        wins += e_gptq < e_rtn;
        gptq_total += e_gptq;
        rtn_total += e_rtn;
    }
    INFO("GPTQ won " << wins << " of " << seeds << "; mean error GPTQ " << gptq_total / seeds << ", RTN " << rtn_total / seeds);
    CHECK(wins >= 95 * seeds / 100);
    CHECK(gptq_total < rtn_total);
}

TEST_CASE("gptq: a LUT grid is fitted once per row on the original weights", "[gptq]") {
    const Matrix x = correlated_inputs(64, 16, 31);
    const Matrix w = npft_test::gaussian_matrix(4, 16, 31, 7);
    const QuantizedMatrix q = Gptq<SquareLutGrid>{{3}, {}}.quantize(view(w), hessian_of(x));
    const QuantizedMatrix rtn = Quantizer<SquareLutGrid>{{3}}.quantize(view(w));
    CHECK(q.lut() == rtn.lut());
    CHECK(output_error(w, q.dequantize(), x) < output_error(w, rtn.dequantize(), x));
}

TEST_CASE("gptq: over the library's non-uniform grids (weighted k-means and NormalFloat LUTs)", "[gptq]") {
    for (const bool act_order : {false, true}) {
        const GptqOptions options{.block_size = 7, .act_order = act_order};
        check_against_reference(NonUniform<3>{}, options, 35);
        check_against_reference(NonUniform<4, NormalFloat>{}, options, 36);
    }
    const Matrix x = correlated_inputs(64, 32, 37);
    const Matrix w = npft_test::gaussian_matrix(8, 32, 37, 7);
    Matrix fisher(8, 32);
    for (Index i = 0; i < fisher.size(); ++i) fisher.data()[i] = uniform01({37, 5}, static_cast<std::uint64_t>(i));
    // The k-means table is fitted once per row, on the original weights, weighted by the importance.
    const QuantizedMatrix q = Gptq<NonUniform<3>>{}.quantize(view(w), hessian_of(x), view(fisher));
    const QuantizedMatrix rtn = Quantizer<NonUniform<3>>{}.quantize(view(w), view(fisher));
    CHECK(q.lut() == rtn.lut());
    CHECK(output_error(w, q.dequantize(), x) < output_error(w, rtn.dequantize(), x));
}

TEST_CASE("gptq: dead inputs (zero diagonal) are zeroed and do not disturb the other columns", "[gptq]") {
    const Index rows = 5, cols = 16;
    Matrix x = correlated_inputs(48, cols, 41);
    x.col(3).setZero();
    x.col(10).setZero();
    const Matrix w = npft_test::gaussian_matrix(rows, cols, 41, 7);
    const Eigen::MatrixXd h = hessian_of(x);
    REQUIRE(h(3, 3) == 0.0);
    for (const bool act_order : {false, true}) {
        const GptqOptions options{.act_order = act_order};
        const QuantizedMatrix q = Gptq<Uniform<4, 8>>{{}, options}.quantize(view(w), h);
        const Matrix d = q.dequantize();
        // Zero is always a level of the uniform grids, so a zeroed column decodes to exactly 0.
        CHECK(d.col(3).isZero(0.0f));
        CHECK(d.col(10).isZero(0.0f));
        const Matrix expected = reference_gptq(Uniform<4, 8>{}, w, h, options).q;
        CHECK(output_error(w, d, x) == Approx(output_error(w, expected, x)).epsilon(1e-3));
    }
}

TEST_CASE("gptq: a singular Hessian (duplicate inputs, fewer tokens than inputs) works thanks to dampening", "[gptq]") {
    const Index rows = 6, cols = 32;
    const Matrix half_inputs = correlated_inputs(20, cols / 2, 51);
    Matrix x(20, cols);
    x << half_inputs, half_inputs;  // every input appears twice: rank <= 16 < 32
    const Matrix w = npft_test::gaussian_matrix(rows, cols, 51, 7);
    const Eigen::MatrixXd h = hessian_of(x);
    // Singular: the smallest pivot of H's LDL^T is zero up to rounding.
    REQUIRE(h.ldlt().vectorD().cwiseAbs().minCoeff() < 1e-9 * h.diagonal().mean());
    const Matrix q = Gptq<Uniform<4>>{}.quantize(view(w), h).dequantize();
    REQUIRE(q.allFinite());
    CHECK(output_error(w, q, x) < output_error(w, Quantizer<Uniform<4>>{}.quantize(view(w)).dequantize(), x));
}

TEST_CASE("gptq: bad input is a clear error", "[gptq]") {
    const Matrix w = npft_test::gaussian_matrix(4, 8, 61, 7);
    const Eigen::MatrixXd h = hessian_of(correlated_inputs(32, 8, 61));
    const Gptq<Uniform<4>> gptq;
    CHECK_THROWS_WITH(gptq.quantize(view(w), Eigen::MatrixXd(h.topLeftCorner(7, 7))),
                      Catch::Contains("hessian must be 8 x 8") && Catch::Contains("got 7 x 7"));
    Eigen::MatrixXd nan_h = h;
    nan_h(2, 5) = std::nan("");
    CHECK_THROWS_WITH(gptq.quantize(view(w), nan_h), Catch::Contains("hessian holds a non-finite value") && Catch::Contains("(2, 5)"));
    Matrix nan_w = w;
    nan_w(1, 1) = std::numeric_limits<float>::infinity();
    CHECK_THROWS_WITH(gptq.quantize(view(nan_w), h), Catch::Contains("weights holds a non-finite value"));
    Eigen::MatrixXd asymmetric = h;
    asymmetric(0, 1) += 1.0;
    CHECK_THROWS_WITH(gptq.quantize(view(w), asymmetric), Catch::Contains("hessian must be symmetric"));
    Eigen::MatrixXd negative = h;
    negative(4, 4) = -1.0;
    CHECK_THROWS_WITH(gptq.quantize(view(w), negative), Catch::Contains("diagonal must be non-negative"));
    Eigen::MatrixXd indefinite = Eigen::MatrixXd::Identity(8, 8);
    indefinite(0, 1) = indefinite(1, 0) = 2.0;  // eigenvalue -1 survives 1% dampening
    CHECK_THROWS_WITH(gptq.quantize(view(w), indefinite), Catch::Contains("not positive definite after dampening"));
    CHECK_THROWS_WITH((Gptq<Uniform<4>>{{}, {.damp_fraction = -0.1}}), Catch::Contains("damp_fraction"));
    CHECK_THROWS_WITH((Gptq<Uniform<4>>{{}, {.block_size = 0}}), Catch::Contains("block_size must be positive"));
    CHECK_THROWS_WITH((Gptq<Uniform<4, 3>>{}.quantize(view(w), h)), Catch::Contains("group size 3 does not divide"));
    Matrix importance = Matrix::Ones(3, 8);
    CHECK_THROWS_WITH(gptq.quantize(view(w), h, view(importance)), Catch::Contains("importance must be 4 x 8"));
}

TEST_CASE("gptq hessian: streamed batches of any type and stride equal (2/N) X^T X", "[gptq][hessian]") {
    const Index features = 24;
    const Matrix x = correlated_inputs(70, features, 71);
    GptqHessian acc(features);
    acc.add(view(x.topRows(30).eval()));
    // A strided view (every other row of a taller buffer) and a half-precision batch.
    Matrix tall = Matrix::Zero(2 * 25, features);
    for (Index r = 0; r < 25; ++r) tall.row(2 * r) = x.row(30 + r);
    acc.add(MatrixView<const float>(tall.data(), 25, features, 2 * features, 1));
    std::vector<npft::half> halves;
    Matrix rest_rounded(15, features);
    for (Index r = 0; r < 15; ++r) {
        for (Index c = 0; c < features; ++c) {
            halves.emplace_back(x(55 + r, c));
            rest_rounded(r, c) = static_cast<float>(halves.back());
        }
    }
    acc.add(npft::make_matrix_view<const npft::half>(halves.data(), 15, features));
    acc.add(MatrixView<const float>(x.data(), 0, features, features, 1));  // empty batch: no-op
    REQUIRE(acc.tokens() == 70);

    Matrix used = x;
    used.bottomRows(15) = rest_rounded;
    const Eigen::MatrixXd expected = hessian_of(used);
    const Eigen::MatrixXd got = acc.matrix();
    CHECK((got - expected).cwiseAbs().maxCoeff() <= 1e-5 * expected.cwiseAbs().maxCoeff());
    CHECK(got.isApprox(got.transpose(), 0.0));

    GptqHessian first(features), second(features);
    first.add(view(x.topRows(40).eval()));
    second.add(view(x.bottomRows(30).eval()));
    first.merge(second);
    CHECK((first.matrix() - hessian_of(x)).cwiseAbs().maxCoeff() <= 1e-5 * hessian_of(x).cwiseAbs().maxCoeff());
    first.reset();
    CHECK(first.tokens() == 0);
}

TEST_CASE("gptq hessian: bad input is a clear error", "[gptq][hessian]") {
    CHECK_THROWS_WITH(GptqHessian(0), Catch::Contains("in_features must be positive"));
    GptqHessian acc(8);
    CHECK_THROWS_WITH(acc.matrix(), Catch::Contains("no calibration tokens"));
    const Matrix wrong = Matrix::Ones(4, 7);
    CHECK_THROWS_WITH(acc.add(view(wrong)), Catch::Contains("batch must have 8 columns") && Catch::Contains("got 4 x 7"));
    Matrix nan = Matrix::Ones(4, 8);
    nan(3, 2) = std::nan("");
    CHECK_THROWS_WITH(acc.add(view(nan)), Catch::Contains("non-finite") && Catch::Contains("(3, 2)"));
    CHECK_THROWS_WITH(acc.merge(GptqHessian(9)), Catch::Contains("in_features must be 8"));
}

}  // namespace npft::quant
