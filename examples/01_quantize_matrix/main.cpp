// Quantize a heavy-tailed weight matrix at every bit width with every grid npft ships, and compare
// error, storage and speed. Usage: quantize_matrix [rows cols]   (default 1024 x 1024)
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <npft/npft.hpp>

namespace q = npft::quant;

// Student-t weights with 3 degrees of freedom (g / sqrt(chi2_3 / 3)), scaled like an LLM projection: the heavy tails
// are what make low-bit quantization of real weights hard.
npft::Matrix student_t_weights(npft::Index rows, npft::Index cols, std::uint64_t seed) {
    npft::Matrix w(rows, cols);
    for (npft::Index i = 0; i < w.size(); ++i) {
        const auto at = static_cast<std::uint64_t>(i);
        double chi2 = 0.0;
        for (std::uint64_t k = 1; k <= 3; ++k) {
            const double g = npft::gaussian({seed, k}, at);
            chi2 += g * g;
        }
        w.data()[i] = static_cast<float>(0.02 * npft::gaussian({seed, 0}, at) / std::sqrt(chi2 / 3.0));
    }
    return w;
}

template <q::Grid G>
void report(const std::string& name, const G& grid, const npft::Matrix& w) {
    const q::Quantizer<G> quantizer(grid);
    const auto start = std::chrono::steady_clock::now();
    const q::QuantizedMatrix packed = quantizer.quantize(w);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const double error = (packed.dequantize() - w).norm() / w.norm();
    const double mb_per_s = static_cast<double>(w.size() * sizeof(float)) / seconds / 1e6;
    std::printf("%-22s %4d  %12.5f  %9.4f  %10.1f\n", name.c_str(), grid.bits(), error, packed.bits_per_weight(), mb_per_s);
}

int main(int argc, char** argv) {
    const npft::Index rows = argc > 2 ? std::atol(argv[1]) : 1024;
    const npft::Index cols = argc > 2 ? std::atol(argv[2]) : 1024;
    try {
        const npft::Matrix w = student_t_weights(rows, cols, 2024);
        std::printf("Student-t (3 dof) weights, %ld x %ld, absmax %.4f, rms %.4f\n\n", static_cast<long>(rows), static_cast<long>(cols),
                    w.cwiseAbs().maxCoeff(), w.norm() / std::sqrt(static_cast<double>(w.size())));
        std::printf("%-22s %4s  %12s  %9s  %10s\n", "grid", "bits", "rel. error", "bits/w", "MB/s");
        for (int bits = 2; bits <= 8; ++bits) {
            report("uniform sym/channel", q::UniformGrid(bits, 0, q::Symmetry::symmetric), w);
            report("uniform asym/channel", q::UniformGrid(bits, 0, q::Symmetry::asymmetric), w);
            if (cols % 128 == 0) {
                report("uniform sym g128", q::UniformGrid(bits, 128, q::Symmetry::symmetric), w);
                report("uniform asym g128", q::UniformGrid(bits, 128, q::Symmetry::asymmetric), w);
            }
            report("k-means LUT", q::NonUniformGrid(bits), w);
            report("NormalFloat LUT", q::NonUniformGrid(bits, q::NormalFloat{}), w);
            std::printf("\n");
        }
    } catch (const npft::Error& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
    return 0;
}
