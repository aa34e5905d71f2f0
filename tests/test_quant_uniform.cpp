// Uniform (affine) grids and the Quantizer: hand cases, properties on random and heavy-tailed matrices, bad input.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <vector>

#include <npft/npft.hpp>

#include "test_matrices.hpp"

namespace npft_test {
using npft::Index;  // hides ::index from <strings.h>
using namespace npft;
using namespace npft::quant;

namespace {

// Heavy tails: Student-t with 3 degrees of freedom, g / sqrt(chi2_3 / 3), plus planted outliers of +-outlier.
Matrix heavy_tailed_matrix(Index rows, Index cols, std::uint64_t seed, int outliers, float outlier) {
    Matrix m(rows, cols);
    for (Index i = 0; i < m.size(); ++i) {
        const auto u = static_cast<std::uint64_t>(i);
        double chi2 = 0.0;
        for (std::uint64_t d = 0; d < 3; ++d) {
            const double g = gaussian({seed, 10 + d}, u);
            chi2 += g * g;
        }
        m.data()[i] = static_cast<float>(gaussian({seed, 1}, u) / std::sqrt(chi2 / 3.0));
    }
    for (int k = 0; k < outliers; ++k) {
        const auto at = static_cast<Index>(random_words({seed, 20}, static_cast<std::uint64_t>(k))[0] % static_cast<std::uint32_t>(m.size()));
        m.data()[at] = (k % 2 ? -outlier : outlier);
    }
    return m;
}

MatrixView<const float> cview(const Matrix& m) { return as_matrix_view(m); }

// Every element whose value lies within the grid's range is within half a step of its dequantized value. Elements
// outside are clipped to the nearest end level: by design the symmetric range [-2^(b-1) s, (2^(b-1) - 1) s] ends half a
// step short of +absmax, and fp16 rounding of the scale and zero point can move either end by a fraction of a step.
void check_rtn_error(const Matrix& w, const QuantizedMatrix& q) {
    const Matrix d = q.dequantize();
    const bool symmetric = q.format() == Format::uniform_symmetric;
    for (Index r = 0; r < w.rows(); ++r) {
        for (Index c = 0; c < w.cols(); ++c) {
            const UniformParams p = q.uniform_params(r, c / q.group_size());
            const float lo = p.decode(0), hi = p.decode(p.max_code());
            const float error = std::abs(w(r, c) - d(r, c));
            if (w(r, c) >= lo && w(r, c) <= hi) {
                // Half a step, plus the rounding of the division and of the decode multiply.
                if (!(error <= 0.5f * p.scale * (1.0f + 1e-5f) + 1e-6f * std::abs(w(r, c))))
                    FAIL("element (" << r << ", " << c << ") = " << w(r, c) << " decodes to " << d(r, c) << ", step " << p.scale);
            } else {
                if (d(r, c) != (w(r, c) < lo ? lo : hi)) FAIL("element (" << r << ", " << c << ") is not clipped to the end level");
                // fp16 rounding moves a symmetric end by at most 2^(b-1) * 2^-11 steps; an asymmetric zero by half a step.
                const float bound = symmetric ? p.scale * (0.5f + static_cast<float>(1 << (p.bits - 1)) / 2048.0f) : p.scale;
                if (!(error <= bound * (1.0f + 1e-5f)))
                    FAIL("clipped element (" << r << ", " << c << ") = " << w(r, c) << " is " << error << " from its level");
            }
        }
    }
    SUCCEED();
}

}  // namespace

TEST_CASE("asymmetric 4-bit, hand-computed", "[quant][uniform]") {
    // Range [-1, 2]: scale = fp16(3/15) = 0.199951171875, zero = round(1 / scale) = 5.
    Matrix w(1, 4);
    w << -1.0f, 0.0f, 0.5f, 2.0f;
    const QuantizedMatrix q = Quantizer<Uniform<4>>().quantize(w);
    CHECK(q.format() == Format::uniform_asymmetric);
    CHECK(q.uniform_params(0, 0).scale == 0.199951171875f);
    CHECK(q.uniform_params(0, 0).zero == 5.0f);
    CHECK(q.codes().get(0, 0) == 0u);
    CHECK(q.codes().get(0, 1) == 5u);
    CHECK(q.codes().get(0, 2) == 8u);  // 0.5 / scale + 5 = 7.5006
    CHECK(q.codes().get(0, 3) == 15u);
    const Matrix d = q.dequantize();
    CHECK(d(0, 0) == -0.999755859375f);
    CHECK(d(0, 1) == 0.0f);
    CHECK(d(0, 2) == 0.599853515625f);
    CHECK(d(0, 3) == 1.99951171875f);
}

TEST_CASE("symmetric 4-bit, hand-computed", "[quant][uniform]") {
    // absmax 1: scale = fp16(2/15) = 0.13330078125, levels scale * (q - 8).
    Matrix w(1, 4);
    w << -1.0f, 0.25f, 0.5f, 0.7f;
    const QuantizedMatrix q = Quantizer<Uniform<4, 0, Symmetry::symmetric>>().quantize(w);
    CHECK(q.format() == Format::uniform_symmetric);
    CHECK(q.zeros().empty());
    CHECK(q.uniform_params(0, 0).scale == 0.13330078125f);
    CHECK(q.uniform_params(0, 0).zero == 8.0f);
    const std::vector<std::uint32_t> codes = {0, 10, 12, 13};
    const std::vector<float> values = {-1.06640625f, 0.2666015625f, 0.533203125f, 0.66650390625f};
    const Matrix d = q.dequantize();
    for (Index j = 0; j < 4; ++j) {
        CHECK(q.codes().get(0, j) == codes[static_cast<std::size_t>(j)]);
        CHECK(d(0, j) == values[static_cast<std::size_t>(j)]);
    }
}

TEST_CASE("grouped 2-bit, hand-computed: each group its own scale and zero", "[quant][uniform]") {
    // Groups of 2: [0, 3] -> scale 1, zero 0; [-3, 0] -> scale 1, zero 3; [-0.5, 1] -> scale 0.5, zero 1.
    Matrix w(1, 6);
    w << 0.0f, 3.0f, -3.0f, 0.0f, -0.5f, 1.0f;
    const QuantizedMatrix q = Quantizer<Uniform<2, 2>>().quantize(w);
    REQUIRE(q.groups() == 3);
    CHECK(q.uniform_params(0, 0).scale == 1.0f);
    CHECK(q.uniform_params(0, 0).zero == 0.0f);
    CHECK(q.uniform_params(0, 1).scale == 1.0f);
    CHECK(q.uniform_params(0, 1).zero == 3.0f);
    CHECK(q.uniform_params(0, 2).scale == 0.5f);
    CHECK(q.uniform_params(0, 2).zero == 1.0f);
    CHECK(q.dequantize() == w);
    CHECK(q.scales().size() == 3);
    CHECK(q.zeros().size() == 3);
}

TEST_CASE("per-channel: one scale per output channel", "[quant][uniform]") {
    Matrix w(3, 5);
    w << 1, 2, 3, 4, 5,  //
        -10, 0, 10, 5, -5,  //
        0, 0, 0, 0, 0;
    const QuantizedMatrix q = Quantizer<UniformGrid>(UniformGrid(8, 0, Symmetry::asymmetric)).quantize(w);
    CHECK(q.groups() == 1);
    CHECK(q.uniform_params(0, 0).scale == round_to_half(5.0f / 255.0f));  // range widened to include 0: [0, 5]
    CHECK(q.uniform_params(1, 0).scale == round_to_half(20.0f / 255.0f));
    CHECK(q.uniform_params(2, 0).scale == 0.0f);  // an all-zero row decodes to exact zeros
    CHECK(q.dequantize().row(2).isZero(0.0f));
    check_rtn_error(w, q);
}

TEST_CASE("RTN error within half a step inside the clipping range, random matrices", "[quant][uniform]") {
    for (std::uint64_t seed = 1; seed <= 3; ++seed) {
        const Matrix w = gaussian_matrix(6, 256, seed) * static_cast<float>(seed * seed);
        for (int bits = 2; bits <= 8; ++bits) {
            for (const Symmetry s : {Symmetry::symmetric, Symmetry::asymmetric}) {
                for (const Index group : {Index{0}, Index{32}, Index{128}}) {
                    const QuantizedMatrix q = Quantizer<UniformGrid>(UniformGrid(bits, group, s)).quantize(w);
                    q.validate();
                    check_rtn_error(w, q);
                }
            }
        }
    }
}

TEST_CASE("quantizing is a projection: re-encoding the dequantized values gives the same codes", "[quant][uniform]") {
    const Matrix w = gaussian_matrix(8, 128, 21);
    for (int bits = 2; bits <= 8; ++bits) {
        for (const Symmetry s : {Symmetry::symmetric, Symmetry::asymmetric}) {
            const QuantizedMatrix q = Quantizer<UniformGrid>(UniformGrid(bits, 64, s)).quantize(w);
            const Matrix d = q.dequantize();
            bool same = true;
            for (Index r = 0; r < d.rows(); ++r)
                for (Index c = 0; c < d.cols(); ++c) same &= q.uniform_params(r, c / 64).encode(d(r, c)) == q.codes().get(r, c);
            CHECK(same);
        }
    }
    // Asymmetric min-max with the extremes on the grid: quantizing the dequantized matrix reproduces it exactly.
    Matrix grid_values(1, 16);
    for (Index c = 0; c < 16; ++c) grid_values(0, c) = 0.25f * static_cast<float>(c - 5);
    const Quantizer<Uniform<4>> quantizer;
    const Matrix once = quantizer.quantize(grid_values).dequantize();
    CHECK(once == grid_values);
    CHECK(quantizer.quantize(once).dequantize() == once);
}

TEST_CASE("the quantizer's codes are exactly UniformParams::encode of each weight, near-ties included", "[quant][uniform]") {
    for (int bits = 2; bits <= 8; ++bits) {
        for (const Symmetry s : {Symmetry::symmetric, Symmetry::asymmetric}) {
            Matrix w = gaussian_matrix(4, 64, static_cast<std::uint64_t>(bits) + 100);
            // Put every other weight of row 1 on (or next to) a midpoint between two levels of its group.
            const UniformGrid grid(bits, 32, s);
            for (Index g = 0; g < 2; ++g) {
                const std::vector<float> group(w.row(1).data() + g * 32, w.row(1).data() + g * 32 + 32);
                const UniformParams p = grid.fit(group);
                for (Index j = 0; j < 32; j += 2) {
                    const float code = static_cast<float>(j % static_cast<Index>(p.max_code()));
                    w(1, g * 32 + j) = p.scale * (code + 0.5f - p.zero);
                }
            }
            const QuantizedMatrix q = Quantizer<UniformGrid>(grid).quantize(w);
            bool same = true;
            for (Index r = 0; r < w.rows(); ++r)
                for (Index c = 0; c < w.cols(); ++c) same &= q.codes().get(r, c) == q.uniform_params(r, c / 32).encode(w(r, c));
            CHECK(same);
        }
    }
}

TEST_CASE("per-group scales change exactly at group borders", "[quant][uniform]") {
    Matrix w = gaussian_matrix(2, 384, 5);
    const Quantizer<Uniform<4, 128>> quantizer;
    const QuantizedMatrix before = quantizer.quantize(w);
    w(1, 127) = 40.0f;  // last column of group 0
    w(1, 256) = -40.0f;  // first column of group 2
    const QuantizedMatrix after = quantizer.quantize(w);
    CHECK(after.uniform_params(1, 0).scale > 5.0f * before.uniform_params(1, 0).scale);
    CHECK(after.uniform_params(1, 1).scale == before.uniform_params(1, 1).scale);
    CHECK(after.uniform_params(1, 1).zero == before.uniform_params(1, 1).zero);
    CHECK(after.uniform_params(1, 2).scale > 5.0f * before.uniform_params(1, 2).scale);
    CHECK(after.uniform_params(0, 0).scale == before.uniform_params(0, 0).scale);
    // The group's own scale decodes the border columns.
    const Matrix d = after.dequantize();
    CHECK(std::abs(d(1, 127) - 40.0f) <= 0.5f * after.uniform_params(1, 0).scale);
    CHECK(std::abs(d(1, 128) - w(1, 128)) <= 0.5f * after.uniform_params(1, 1).scale);
    CHECK(std::abs(d(1, 255) - w(1, 255)) <= 0.5f * after.uniform_params(1, 1).scale);
    for (Index c = 128; c < 256; ++c) CHECK(after.codes().get(1, c) == before.codes().get(1, c));
}

TEST_CASE("heavy-tailed matrices with planted outliers", "[quant][uniform]") {
    const Matrix w = heavy_tailed_matrix(32, 512, 3, 16, 60.0f);
    const Quantizer<Uniform<4>> per_channel;
    const Quantizer<Uniform<4, 128>> grouped;
    const QuantizedMatrix qc = per_channel.quantize(w);
    const QuantizedMatrix qg = grouped.quantize(w);
    check_rtn_error(w, qc);
    check_rtn_error(w, qg);
    // Outliers set the range, so they themselves are reproduced within half a step ...
    for (Index i = 0; i < w.size(); ++i) {
        if (std::abs(w.data()[i]) == 60.0f) {
            const Index r = i / w.cols(), c = i % w.cols();
            CHECK(std::abs(qc.dequantize_at(r, c) - w(r, c)) <= 0.5f * qc.uniform_params(r, 0).scale);
        }
    }
    // ... and smaller groups confine their damage: the grouped error is clearly lower.
    const double error_channel = (qc.dequantize() - w).norm() / w.norm();
    const double error_grouped = (qg.dequantize() - w).norm() / w.norm();
    CHECK(error_grouped < 0.8 * error_channel);
}

TEST_CASE("element types and layouts give the same result", "[quant][uniform]") {
    const Matrix w = gaussian_matrix(6, 64, 8);
    // Values exactly representable in half and bfloat16, so only the view differs.
    Matrix rounded(6, 64);
    std::vector<half> h(static_cast<std::size_t>(w.size()));
    std::vector<bfloat16> b(h.size());
    for (Index i = 0; i < w.size(); ++i) {
        rounded.data()[i] = static_cast<float>(bfloat16(w.data()[i]));
        h[static_cast<std::size_t>(i)] = half(rounded.data()[i]);
        b[static_cast<std::size_t>(i)] = bfloat16(rounded.data()[i]);
    }
    const Quantizer<Uniform<3, 32>> quantizer;
    const Matrix reference = quantizer.quantize(rounded).dequantize();
    CHECK(quantizer.quantize(make_matrix_view<const half>(h.data(), 6, 64)).dequantize() == reference);
    CHECK(quantizer.quantize(make_matrix_view<const bfloat16>(b.data(), 6, 64)).dequantize() == reference);
    const Eigen::MatrixXf column_major = rounded;  // same values, column-major storage
    CHECK(quantizer.quantize(column_major).dequantize() == reference);
}

TEST_CASE("uniform bits per weight", "[quant][uniform]") {
    const Matrix w = gaussian_matrix(4, 4096, 2);
    // 4-bit g128 asymmetric: 4 + (16 + 16) / 128 = 4.25.
    CHECK(Quantizer<Uniform<4, 128>>().quantize(w).bits_per_weight() == 4.25);
    // Symmetric stores no zero point: 4 + 16 / 128 = 4.125.
    CHECK(Quantizer<Uniform<4, 128, Symmetry::symmetric>>().quantize(w).bits_per_weight() == 4.125);
    // 3-bit per channel: 3 + 32 / 4096.
    CHECK(Quantizer<Uniform<3>>().quantize(w).bits_per_weight() == 3.0 + 32.0 / 4096.0);
}

TEST_CASE("uniform grids reject bad input with clear messages", "[quant][uniform]") {
    CHECK_THROWS_AS(UniformGrid(1), Error);
    CHECK_THROWS_WITH(UniformGrid(1), Catch::Contains("bits must be between 2 and 8, got 1"));
    CHECK_THROWS_WITH(UniformGrid(9), Catch::Contains("bits must be between 2 and 8, got 9"));
    CHECK_THROWS_WITH(UniformGrid(4, -8), Catch::Contains("group size must be 0 (per output channel) or positive, got -8"));

    const Matrix w = gaussian_matrix(4, 4096, 1);
    CHECK_THROWS_WITH(Quantizer<UniformGrid>(UniformGrid(4, 96)).quantize(w),
                      Catch::Contains("group size 96 does not divide the input dimension 4096"));

    const Matrix empty(0, 16);
    CHECK_THROWS_WITH(Quantizer<Uniform<4>>().quantize(empty), Catch::Contains("weights is empty (0 x 16)"));
    const std::vector<float> none;
    CHECK_THROWS_WITH(Uniform<4>().fit(none), Catch::Contains("empty group"));

    Matrix bad = gaussian_matrix(3, 8, 1);
    bad(1, 2) = std::numeric_limits<float>::quiet_NaN();
    CHECK_THROWS_WITH(Quantizer<Uniform<4>>().quantize(bad), Catch::Contains("weights holds a non-finite value (nan) at (1, 2)"));
    bad(1, 2) = 0.0f;
    bad(2, 7) = -std::numeric_limits<float>::infinity();
    CHECK_THROWS_WITH(Quantizer<Uniform<4>>().quantize(bad), Catch::Contains("weights holds a non-finite value (-inf) at (2, 7)"));

    const Matrix huge = Matrix::Constant(1, 4, 1e9f);
    CHECK_THROWS_WITH(Quantizer<Uniform<4>>().quantize(huge), Catch::Contains("overflows fp16"));

    const Matrix importance = Matrix::Ones(2, 2);
    const Matrix small = gaussian_matrix(2, 3, 1);
    CHECK_THROWS_WITH(Quantizer<Uniform<4>>().quantize(cview(small), cview(importance)),
                      Catch::Contains("importance must be 2 x 3, got 2 x 2"));
}

}  // namespace npft_test
