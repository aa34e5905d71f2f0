#include <catch2/catch.hpp>
#include <npft/npft.hpp>

TEST_CASE("uniform 4-bit round trip stays within half a step", "[quant]") {
    npft::Matrix w = npft::Matrix::Random(8, 64);
    npft::quant::Quantizer<npft::quant::Uniform<4, 32>> q;
    auto packed = q.quantize(npft::MatrixView<const float>(npft::as_matrix_view(w)));
    npft::Matrix d = packed.dequantize();
    for (npft::index r = 0; r < w.rows(); ++r)
        for (npft::index c = 0; c < w.cols(); ++c)
            CHECK(std::abs(d(r, c) - w(r, c)) <= 0.5f * packed.uniform_params(r, c / 32).scale * 1.0001f);
}
