#pragma once
// Runs one of the 256-bit int8 GEMMs directly (multiply() picks AVX-VNNI over AVX2 where the CPU has both), with the
// set-up multiply() does: int8 activations, their group sums, the padded copy of the last row. For the tests and
// bench_prefill, so that every GEMM the CPU can run is run.
#include <cstring>
#include <vector>

#include <npft/kernels/cpu/multiply.hpp>

namespace npft_test {

#if NPFT_CPU_X86
inline npft::Matrix run_int8_gemm_256(const npft::quant::QuantizedMatrix& w, const npft::Matrix& x,
                                      npft::kernels::cpu::Int8Dot256 dot, int threads = 1) {
    namespace cpu = npft::kernels::cpu;
    const npft::Index batch = x.rows();
    const npft::Index cols = w.cols();
    const cpu::Int8Activations a = cpu::quantize_activations_int8(x.data(), cols, batch, cols, w.bits(), threads);
    const std::vector<float> sums = cpu::int8_activation_sums(w, a);
    const npft::Index row_bytes = w.codes().words_per_row() * static_cast<npft::Index>(sizeof(std::uint32_t));
    std::vector<std::uint8_t> last_row(static_cast<std::size_t>(row_bytes + cpu::int8_last_row_padding_bytes), 0);
    std::memcpy(last_row.data(), w.codes().row_words(w.rows() - 1), static_cast<std::size_t>(row_bytes));
    npft::Matrix y(batch, w.rows());
    cpu::Int8Problem problem;
    problem.weights = &w;
    problem.x = &a;
    problem.x_sums = sums.data();
    problem.y = npft::as_matrix_view(y);
    problem.last_row_padded = last_row.data();
    const cpu::int8_gemm::PackedActivations packed =
        cpu::int8_gemm::pack_activations(a, cpu::int8_gemm_256::tile_tokens_of(dot), threads);  // as multiply() does
    cpu::parallel_rows(w.rows(), threads, 32, [&](npft::Index begin, npft::Index end) {
        cpu::int8_gemm_256::multiply_rows(problem, packed, begin, end, dot);
    });
    return y;
}
#endif

}  // namespace npft_test
