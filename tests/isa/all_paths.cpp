// Compile-only: every public header, and the code whose generation depends on the target ISA (Eigen's products, GPTQ's
// Cholesky, the quantizers, every kernel path and format behind multiply(), the file readers, the NPFT pipeline over
// the tests' small model), compiled for -march=x86-64-v3 (AVX2) and -march=x86-64-v4 (AVX-512) by tests/CMakeLists.txt. A
// warning that only appears when a compiler targets one ISA (GCC 12's AVX-512 headers did) then shows on any build
// machine, not only on users' machines with -march=native. The functions have external linkage so that their bodies,
// and every template they reach, are generated.
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include <npft/npft.hpp>

#include "train_test_models.hpp"

namespace npft_isa_check {

namespace q = npft::quant;
namespace cpu = npft::kernels::cpu;

template <q::Grid G>
q::QuantizedMatrix rtn(const G& grid, const npft::Matrix& w) {
    return q::Quantizer<G>(grid).quantize(w);
}

/// Round-to-nearest with every grid, GPTQ with a uniform and a LUT grid, dense-and-sparse.
std::vector<q::QuantizedMatrix> quantize_all(const npft::Matrix& w, const Eigen::MatrixXd& hessian) {
    std::vector<q::QuantizedMatrix> out;
    for (int bits = 2; bits <= 8; ++bits) {
        out.push_back(rtn(q::UniformGrid(bits, 0, q::Symmetry::symmetric), w));
        out.push_back(rtn(q::UniformGrid(bits, 128, q::Symmetry::asymmetric), w));
        out.push_back(rtn(q::NonUniformGrid(bits), w));
        out.push_back(rtn(q::NonUniformGrid(bits, q::NormalFloat{}), w));
    }
    out.push_back(rtn(q::Uniform<4, 128>{}, w));
    out.push_back(rtn(q::NonUniform<3>{}, w));
    out.push_back(q::Gptq<q::UniformGrid>(q::UniformGrid(4, 128)).quantize(w, hessian));
    out.push_back(q::Gptq<q::NonUniformGrid>(q::NonUniformGrid(3)).quantize(w, hessian));
    out.push_back(q::split_dense_sparse(npft::as_matrix_view(w), npft::outliers::TopMagnitude{0.01}, q::UniformGrid(3, 64)).dense);
    return out;
}

/// Every kernel path, with fp32 and int8 activations, dense, dense-and-sparse and prepared, one and two threads.
void multiply_all(const q::QuantizedMatrix& w, const q::DenseSparseMatrix& ds, const npft::Matrix& x, npft::Matrix& y) {
    const cpu::PreparedMatrix prepared(w);
    for (const cpu::Path path : {cpu::Path::portable, cpu::Path::avx2, cpu::Path::avx512, cpu::Path::best}) {
        for (const cpu::Activations a : {cpu::Activations::fp32, cpu::Activations::int8}) {
            const cpu::MultiplyOptions options{.threads = 2, .path = path, .activations = a};
            cpu::multiply(w, npft::as_matrix_view(x), npft::as_matrix_view(y), options);
            cpu::multiply(ds, npft::as_matrix_view(x), npft::as_matrix_view(y), options);
            cpu::multiply(prepared, npft::as_matrix_view(x), npft::as_matrix_view(y), options);
        }
    }
}

/// The readers of untrusted files.
q::QuantizedMatrix read_all(std::vector<std::byte> bytes, std::string_view json_text) {
    const npft::io::json::Value v = npft::io::json::parse(json_text);
    const auto file = npft::io::SafetensorsFile::from_bytes(std::move(bytes));
    (void)file.read_matrix(file.names().front());
    (void)v;
    return npft::io::load_quantized(file, "w");
}

/// The NPFT pipeline: Fisher outliers, quantization-step noise, Hutchinson trace, LoRA.
void fine_tune(npft_test::TinyMlp& model, const std::vector<npft_test::Batch>& batches) {
    using Noise = npft::noise::Schedule<npft::noise::QuantStepUniform>;
    npft::train::PipelineOptions options;
    options.peft = npft::train::LoraOptions{.rank = 2, .alpha = 4.0f};
    npft::Pipeline<npft::outliers::TopFisher, Noise, npft::hessian::Hutchinson<>, q::Uniform<3>> pipeline(
        options, npft::outliers::TopFisher{.fraction = 0.05});
    pipeline.fit(model, batches);
}

}  // namespace npft_isa_check
