// fp16 scales of tiny groups: a group whose scale fp16 cannot hold to within half a step at the outermost level is
// refused with an error naming the row, the group and the range (docs/formats.md, "Scale range"); every group that is
// accepted decodes within one step of its intended grid.
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include <npft/core/dtype.hpp>
#include <npft/core/random.hpp>
#include <npft/quant/gptq.hpp>
#include <npft/quant/quantizer.hpp>
#include <npft/quant/uniform.hpp>

namespace {

using Catch::Matchers::Contains;
using npft::Matrix;
namespace quant = npft::quant;
using Index = npft::Index;

// 2 rows x 64 inputs, groups of 32: row 0 ordinary weights, row 1 group 1 spread evenly over [0, top].
Matrix with_tiny_group(float top) {
    Matrix w(2, 64);
    for (Index j = 0; j < 64; ++j) w(0, j) = static_cast<float>(j % 9) * 0.01f - 0.04f;
    for (Index j = 0; j < 32; ++j) w(1, j) = static_cast<float>(j) * 0.002f - 0.03f;
    for (Index j = 0; j < 32; ++j) w(1, 32 + j) = top * static_cast<float>(j) / 31.0f;
    return w;
}

}  // namespace

TEST_CASE("a group in [0, 1.2e-6] at 4 bits is refused, naming row, group and range", "[quant][uniform][fp16]") {
    // Unchecked, the scale 8e-8 was stored as the subnormal 6e-8 and the top weights decoded 5 steps low.
    const Matrix w = with_tiny_group(1.2e-6f);
    CHECK_THROWS_WITH((quant::Quantizer<quant::Uniform<4, 32>>().quantize(w)),
                      Contains("row 1, group 1: weights in [0, 1.2e-06] need a quantization scale of 8e-08") &&
                          Contains("which fp16 stores as 5.96046e-08") && Contains("Rescale the layer"));
    // At 2e-7 the scale rounds to 0: every weight would decode to 0.
    CHECK_THROWS_WITH((quant::Quantizer<quant::Uniform<4, 32>>().quantize(with_tiny_group(2e-7f))),
                      Contains("row 1, group 1") && Contains("underflow: every weight would decode to 0"));
    // GPTQ fits through the same grid and names the group the same way.
    const Eigen::MatrixXd h = Eigen::MatrixXd::Identity(64, 64);
    CHECK_THROWS_WITH((quant::Gptq<quant::Uniform<4, 32>>{}.quantize(w, h)),
                      Contains("row 1, group 1") && Contains("fp16"));
    // Symmetric grids too.
    CHECK_THROWS_WITH((quant::Quantizer<quant::Uniform<4, 32, quant::Symmetry::symmetric>>().quantize(w)), Contains("row 1, group 1"));
}

TEST_CASE("all-zero groups and rescaled tiny groups quantize fine", "[quant][uniform][fp16]") {
    const Matrix zero_group = with_tiny_group(0.0f);
    const quant::QuantizedMatrix q = quant::Quantizer<quant::Uniform<4, 32>>().quantize(zero_group);
    CHECK(q.scales()[3] == npft::half(0.0f));
    for (Index j = 32; j < 64; ++j) CHECK(q.dequantize_at(1, j) == 0.0f);

    // The suggested fix: scale the layer by 2^20 and undo it after decoding (both exact in floating point).
    const Matrix tiny = with_tiny_group(1.2e-6f);
    const Matrix scaled = tiny * 1048576.0f;  // 2^20
    const quant::QuantizedMatrix qs = quant::Quantizer<quant::Uniform<4, 32>>().quantize(scaled);
    const float step = 1.2e-6f / 15.0f;
    for (Index j = 32; j < 64; ++j) CHECK(std::abs(qs.dequantize_at(1, j) / 1048576.0f - tiny(1, j)) <= 0.5f * step * 1.01f);
}

TEST_CASE("tiny ranges: refused exactly when the fp16 scale misplaces the ends by over half a step, else within a step",
          "[quant][uniform][fp16]") {
    int accepted = 0, refused = 0;
    for (int bits : {2, 4, 8}) {
        const quant::UniformGrid grid(bits, 32);
        const float levels = static_cast<float>((1 << bits) - 1);
        for (std::uint64_t c = 0; c < 300; ++c) {
            // Ranges log-uniform over [1e-9, 1e-2], a random share of them below zero.
            const float top = std::pow(10.0f, npft::uniform(npft::RandomKey{31, 1}, c, -9.0f, -2.0f));
            const float low = -top * npft::uniform01(npft::RandomKey{31, 2}, c);
            std::vector<float> values(32);
            for (std::size_t j = 0; j < 32; ++j) values[j] = low + (top - low) * static_cast<float>(j) / 31.0f;
            // Independent of the implementation: the intended scale and its fp16 rounding.
            const float scale = (top - low) / levels;
            const float stored = static_cast<float>(npft::half(scale));
            const bool fits = std::abs(stored - scale) * levels <= 0.5f * scale;
            try {
                const quant::UniformParams p = grid.fit(values);
                CHECK(fits);
                ++accepted;
                for (const float v : values) CHECK(std::abs(p.decode(p.encode(v)) - v) <= 1.0f * scale);
            } catch (const npft::Error& e) {
                CHECK_FALSE(fits);
                CHECK_THAT(e.what(), Contains("Rescale the layer"));
                ++refused;
            }
        }
    }
    CHECK(accepted > 300);
    CHECK(refused > 100);
}
