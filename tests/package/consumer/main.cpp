// Quantizes a small matrix through the public umbrella header and checks the round trip: exit code 0 means success.
#include <cstdio>
#include <npft/npft.hpp>

int main() {
    npft::Matrix weights = npft::Matrix::Random(16, 256);
    const npft::quant::Quantizer<npft::quant::Uniform<4, 128>> quantizer;
    const auto packed = quantizer.quantize(npft::MatrixView<const float>(npft::as_matrix_view(weights)));
    const double error = (packed.dequantize() - weights).cwiseAbs().maxCoeff();
    std::printf("consumer: 4-bit g128, %.4f bits/weight, max error %.4f\n", packed.bits_per_weight(), error);
    return (packed.bits_per_weight() == 4.25 && error < 0.08) ? 0 : 1;
}
