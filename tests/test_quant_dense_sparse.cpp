// Dense-and-sparse: hand-computed CSR and byte counts, exact outliers, the fraction honoured, composition with any
// quantizer (RTN on uniform and LUT grids, GPTQ as a callable), bad input.
#include <catch2/catch.hpp>

#include <npft/core/random.hpp>
#include <npft/outliers/top_fraction.hpp>
#include <npft/quant/dense_sparse.hpp>
#include <npft/quant/gptq.hpp>
#include <npft/quant/uniform.hpp>

#include <algorithm>
#include <cmath>
#include <vector>

namespace npft::quant {
namespace {

/// A LUT grid with no zero level (2^bits levels t |t| absmax, t evenly spaced in [-1, 1], an even count): the sparse
/// part must then absorb the level that the zeroed outlier positions round to.
struct NoZeroLutGrid {
    int bits() const { return 3; }
    Format format() const { return Format::lut; }
    Index group_size(Index cols) const { return cols; }
    LutParams fit(std::span<const float> values, std::span<const float> /*importance*/) const {
        float absmax = 0.0f;
        for (const float v : values) absmax = std::max(absmax, std::abs(v));
        LutParams p;
        p.bits = 3;
        for (Index i = 0; i < 8; ++i) {
            const float t = -1.0f + 2.0f * static_cast<float>(i) / 7.0f;
            p.levels[static_cast<std::size_t>(i)] = round_to_half(absmax * t * std::abs(t));
        }
        return p;
    }
};

/// Gaussian weights with a heavy tail: every 97th weight is scaled up 20x.
Matrix heavy_tailed_weights(Index rows, Index cols, std::uint64_t seed) {
    Matrix w(rows, cols);
    for (Index i = 0; i < w.size(); ++i) {
        w.data()[i] = 0.1f * gaussian({seed, 1}, static_cast<std::uint64_t>(i));
        if (i % 97 == 5) w.data()[i] *= 20.0f;
    }
    return w;
}

MatrixView<const float> view(const Matrix& m) { return as_matrix_view(m); }

}  // namespace

TEST_CASE("dense-sparse: hand-computed CSR, bytes and bits per weight", "[dense_sparse]") {
    Matrix w = heavy_tailed_weights(4, 64, 1);
    w(0, 7) = 3.0f;
    w(2, 0) = -2.5f;
    w(2, 63) = 1.75f;
    const outliers::OutlierMask mask(4, 64, {2 * 64 + 63, 0 * 64 + 7, 2 * 64 + 0});
    const DenseSparseMatrix split = split_dense_sparse(view(w), mask, Uniform<4, 32>{});
    split.validate();

    const SparseOutliers& s = split.sparse;
    CHECK(s.row_offsets == std::vector<std::int32_t>{0, 1, 1, 3, 3});
    CHECK(s.columns == std::vector<std::int32_t>{7, 0, 63});
    // Zero is a level of the uniform grid: the stored values are the outliers themselves in fp16.
    CHECK(s.values == std::vector<half>{half(3.0f), half(-2.5f), half(1.75f)});

    // Dense: 4 rows x (2 blocks of 32 codes x 4 bits = 8 words = 32 bytes) = 128 bytes of codes, 4 x 2 groups x (2-byte
    // scale + 2-byte zero point) = 32 bytes of metadata. Sparse: 3 values x 2 + 3 columns x 4 + 5 row offsets x 4 = 38.
    CHECK(split.dense.bytes() == 160u);
    CHECK(s.bytes() == 38u);
    CHECK(split.bytes() == 198u);
    CHECK(split.bits_per_weight() == 198.0 * 8.0 / 256.0);
    CHECK(split.outlier_fraction() == 3.0 / 256.0);
}

TEST_CASE("dense-sparse: outliers reconstructed exactly (to fp16), the dense part quantized without them", "[dense_sparse]") {
    const Matrix w = heavy_tailed_weights(16, 128, 2);
    const outliers::OutlierMask mask = outliers::TopMagnitude{0.01}.select({view(w), {}, {}});
    SECTION("uniform grid: dense + sparse = fp16(w) at the outliers, RTN of the zeroed matrix elsewhere") {
        const DenseSparseMatrix split = split_dense_sparse(view(w), mask, Uniform<3, 32>{});
        Matrix zeroed = w;
        for (const Index p : mask.positions) zeroed(p / 128, p % 128) = 0.0f;
        const Matrix rtn_zeroed = Quantizer<Uniform<3, 32>>{}.quantize(view(zeroed)).dequantize();
        const Matrix d = split.dequantize();
        for (Index r = 0; r < 16; ++r) {
            for (Index c = 0; c < 128; ++c) {
                if (mask.contains(r, c)) {
                    REQUIRE(d(r, c) == round_to_half(w(r, c)));
                } else {
                    REQUIRE(d(r, c) == rtn_zeroed(r, c));
                }
            }
        }
        // Removing the outliers shrinks the ranges: smaller total error than RTN of the whole matrix.
        const Matrix rtn = Quantizer<Uniform<3, 32>>{}.quantize(view(w)).dequantize();
        CHECK((d - w).squaredNorm() < 0.5f * (rtn - w).squaredNorm());
    }
    SECTION("LUT grid without a zero level: the stored correction absorbs the dense level") {
        const DenseSparseMatrix split = split_dense_sparse(view(w), mask, NoZeroLutGrid{});
        split.validate();
        const Matrix d = split.dequantize();
        Index nonzero_dense = 0;
        for (const Index p : mask.positions) {
            const Index r = p / 128, c = p % 128;
            const float dense = split.dense.dequantize_at(r, c);
            nonzero_dense += dense != 0.0f;
            const float correction = w(r, c) - dense;
            // One fp16 rounding of the correction, nothing else.
            REQUIRE(d(r, c) == dense + round_to_half(correction));
            REQUIRE(std::abs(d(r, c) - w(r, c)) <= std::abs(correction) * 0x1p-11f + 1e-6f * std::abs(w(r, c)));
        }
        CHECK(nonzero_dense == mask.count());
    }
}

TEST_CASE("dense-sparse: the outlier fraction is honoured, by magnitude and by sensitivity", "[dense_sparse]") {
    const Index rows = 64, cols = 256, n = rows * cols;
    const Matrix w = heavy_tailed_weights(rows, cols, 3);
    Matrix fisher(rows, cols);
    for (Index i = 0; i < fisher.size(); ++i) fisher.data()[i] = uniform01({3, 9}, static_cast<std::uint64_t>(i));
    for (const double fraction : {0.0005, 0.0045, 0.05}) {
        INFO("fraction " << fraction);
        const auto expected = static_cast<Index>(std::llround(fraction * static_cast<double>(n)));
        const DenseSparseMatrix by_magnitude = split_dense_sparse(view(w), outliers::TopMagnitude{fraction}, Uniform<4>{});
        REQUIRE(by_magnitude.sparse.nnz() == expected);
        CHECK(by_magnitude.outlier_fraction() == Approx(fraction).margin(0.5 / static_cast<double>(n)));
        const DenseSparseMatrix by_fisher = split_dense_sparse(view(w), outliers::TopFisher{fraction}, Uniform<4>{}, view(fisher));
        REQUIRE(by_fisher.sparse.nnz() == expected);

        // The kept ones are the largest by their criterion: every kept score >= every dropped score.
        for (const auto* split : {&by_magnitude, &by_fisher}) {
            const Matrix& score = split == &by_magnitude ? Matrix(w.cwiseAbs()) : fisher;
            std::vector<bool> kept(static_cast<std::size_t>(n), false);
            float lowest_kept = std::numeric_limits<float>::infinity();
            for (Index r = 0; r < rows; ++r) {
                for (std::int32_t k = split->sparse.row_offsets[static_cast<std::size_t>(r)];
                     k < split->sparse.row_offsets[static_cast<std::size_t>(r + 1)]; ++k) {
                    const Index c = split->sparse.columns[static_cast<std::size_t>(k)];
                    kept[static_cast<std::size_t>(r * cols + c)] = true;
                    lowest_kept = std::min(lowest_kept, score(r, c));
                }
            }
            float highest_dropped = 0.0f;
            for (Index i = 0; i < n; ++i)
                if (!kept[static_cast<std::size_t>(i)]) highest_dropped = std::max(highest_dropped, score(i / cols, i % cols));
            CHECK(lowest_kept >= highest_dropped);
        }
        // Bits per weight: the dense part plus 2 + 4 bytes per outlier plus 4 * (rows + 1) bytes of offsets.
        CHECK(by_magnitude.bytes() ==
              by_magnitude.dense.bytes() + static_cast<std::size_t>(6 * expected) + static_cast<std::size_t>(4 * (rows + 1)));
    }
}

TEST_CASE("dense-sparse: any quantizer, GPTQ included, through a callable", "[dense_sparse]") {
    const Index rows = 8, cols = 32;
    const Matrix w = heavy_tailed_weights(rows, cols, 4);
    Matrix x(64, cols);
    for (Index i = 0; i < x.size(); ++i) x.data()[i] = gaussian({4, 2}, static_cast<std::uint64_t>(i));
    const Eigen::MatrixXd h = (2.0 / 64.0) * x.cast<double>().transpose() * x.cast<double>();
    const Gptq<Uniform<3, 16>> gptq;
    const outliers::OutlierMask mask = outliers::TopMagnitude{0.02}.select({view(w), {}, {}});
    Index calls = 0;
    const DenseSparseMatrix split = split_dense_sparse(
        view(w), mask,
        [&](MatrixView<const float> dense, MatrixView<const float> importance) {
            ++calls;
            // The quantizer sees the outliers zeroed, with zero importance.
            for (const Index p : mask.positions) {
                REQUIRE(dense(p / cols, p % cols) == 0.0f);
                REQUIRE(importance(p / cols, p % cols) == 0.0f);
            }
            return gptq.quantize(dense, h, importance);
        });
    CHECK(calls == 1);
    split.validate();
    const Matrix d = split.dequantize();
    for (const Index p : mask.positions) CHECK(d(p / cols, p % cols) == Approx(w(p / cols, p % cols)).epsilon(1e-3));
}

TEST_CASE("dense-sparse: bad input is a clear error", "[dense_sparse]") {
    const Matrix w = heavy_tailed_weights(4, 32, 5);
    const outliers::OutlierMask wrong_shape(4, 16, {3});
    CHECK_THROWS_WITH(split_dense_sparse(view(w), wrong_shape, Uniform<4>{}),
                      Catch::Contains("outlier mask must be 4 x 32") && Catch::Contains("got 4 x 16"));
    Matrix nan = w;
    nan(1, 2) = std::nan("");
    CHECK_THROWS_WITH(split_dense_sparse(view(nan), outliers::OutlierMask(4, 32, {}), Uniform<4>{}),
                      Catch::Contains("weights holds a non-finite value"));
    Matrix huge = w;
    huge(3, 3) = 1e6f;
    CHECK_THROWS_WITH(split_dense_sparse(view(huge), outliers::OutlierMask(4, 32, {3 * 32 + 3}), Uniform<4>{}),
                      Catch::Contains("outlier (3, 3)") && Catch::Contains("overflows fp16"));
    const Matrix importance = Matrix::Ones(2, 32);
    CHECK_THROWS_WITH(split_dense_sparse(view(w), outliers::OutlierMask(4, 32, {}), Uniform<4>{}, view(importance)),
                      Catch::Contains("importance must be 4 x 32"));
    const Matrix other = Matrix::Ones(2, 32);
    CHECK_THROWS_WITH(split_dense_sparse(view(w), outliers::OutlierMask(4, 32, {}),
                                         [&](MatrixView<const float>, MatrixView<const float>) {
                                             return Quantizer<Uniform<4>>{}.quantize(view(other));
                                         }),
                      Catch::Contains("quantizer returned a 2 x 32 matrix for 4 x 32 weights"));

    DenseSparseMatrix split = split_dense_sparse(view(w), outliers::OutlierMask(4, 32, {5, 40}), Uniform<4>{});
    split.validate();
    DenseSparseMatrix bad = split;
    bad.sparse.columns[0] = 32;
    CHECK_THROWS_WITH(bad.validate(), Catch::Contains("CSR column 32 in row 0 lies outside [0, 32)"));
    bad = split;
    bad.sparse.row_offsets.pop_back();
    CHECK_THROWS_WITH(bad.validate(), Catch::Contains("row_offsets must have rows + 1 = 5 entries"));
    bad = split;
    bad.sparse.values.push_back(half(1.0f));
    CHECK_THROWS_WITH(bad.validate(), Catch::Contains("same length"));
    bad = split;
    bad.sparse.cols = 16;
    CHECK_THROWS_WITH(bad.validate(), Catch::Contains("sparse outliers must be 4 x 32"));
}

}  // namespace npft::quant
