// Quantize + pack throughput of whole fp32 weight matrices, in GB/s of fp32 input.
//   ./bench_quant --benchmark_format=json
// Shapes: 4096 x 4096 (a LLaMA-7B attention projection) and 11008 x 4096 (its MLP up/gate projection).
#include <benchmark/benchmark.h>

#include <npft/npft.hpp>

namespace {

using npft::Matrix;
namespace q = npft::quant;

const Matrix& weights(npft::Index rows, npft::Index cols) {
    static Matrix cached;
    if (cached.rows() != rows || cached.cols() != cols) {
        cached.resize(rows, cols);
        for (npft::Index i = 0; i < cached.size(); ++i) cached.data()[i] = 0.02f * npft::gaussian({1, 0}, static_cast<std::uint64_t>(i));
    }
    return cached;
}

template <class Grid>
void BM_Quantize(benchmark::State& state) {
    const Matrix& w = weights(state.range(0), state.range(1));
    const q::Quantizer<Grid> quantizer;
    for (auto _ : state) {
        q::QuantizedMatrix packed = quantizer.quantize(w);
        benchmark::DoNotOptimize(packed.codes().words().data());
    }
    state.SetBytesProcessed(state.iterations() * w.size() * static_cast<std::int64_t>(sizeof(float)));
    state.counters["bits_per_weight"] = quantizer.quantize(npft::as_matrix_view(w).block(0, 0, 1, w.cols())).bits_per_weight();
}

// The raw baseline: one pass of reading the matrix (the memory floor any quantizer pays).
void BM_ReadBaseline(benchmark::State& state) {
    const Matrix& w = weights(state.range(0), state.range(1));
    for (auto _ : state) benchmark::DoNotOptimize(w.cwiseAbs().maxCoeff());
    state.SetBytesProcessed(state.iterations() * w.size() * static_cast<std::int64_t>(sizeof(float)));
}

void shapes(benchmark::internal::Benchmark* b) {
    b->Args({4096, 4096})->Args({11008, 4096})->Unit(benchmark::kMillisecond)->UseRealTime();
}

}  // namespace

BENCHMARK(BM_ReadBaseline)->Apply(shapes);
BENCHMARK_TEMPLATE(BM_Quantize, q::Uniform<4, 128>)->Name("BM_Quantize/uniform4_g128")->Apply(shapes);
BENCHMARK_TEMPLATE(BM_Quantize, q::Uniform<3>)->Name("BM_Quantize/uniform3_per_channel")->Apply(shapes);
BENCHMARK_TEMPLATE(BM_Quantize, q::NonUniform<4>)->Name("BM_Quantize/kmeans4")->Apply(shapes);
BENCHMARK_TEMPLATE(BM_Quantize, q::NonUniform<4, q::NormalFloat>)->Name("BM_Quantize/nf4")->Apply(shapes);

BENCHMARK_MAIN();
