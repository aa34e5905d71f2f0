// What a training step costs on a CPU for a Hugging Face-sized model (docs/getting-started.md quotes the figures).
//   BM_TinyLlamaStep/layers:L : one loss_and_gradient of the example model with TinyLlama-1.1B's shapes (dim 2048,
//                               SwiGLU 5632, 32 query heads sharing 4 key/value heads, vocabulary 32000) on one sequence
//                               of 512 tokens, with L decoder layers. TinyLlama has 22: its step time is about
//                               t(1) + 21 (t(2) - t(1)) (the embedding, the head and the softmax are paid once).
//   BM_TinyLlamaStep/layers:22 : the whole 1.1 B model, measured (one iteration: minutes, and about 10 GB of memory for
//                               weights, gradients and activations). For the quick rows only:
//                               --benchmark_filter='layers:[12]/'
// Eigen fp32, the model as it is (single-threaded apart from what Eigen does on its own).
#include <benchmark/benchmark.h>
#include <sys/resource.h>

#include <npft/npft.hpp>

#include "tiny_llama/model.hpp"

namespace {

tiny_llama::Config tinyllama_shapes(npft::Index layers) {
    tiny_llama::Config c;
    c.vocab = 32000;
    c.layers = layers;
    c.dim = 2048;
    c.hidden = 5632;
    c.heads = 32;
    c.kv_heads = 4;
    c.context = 512;
    return c;
}

void BM_TinyLlamaStep(benchmark::State& state) {
    const tiny_llama::Config c = tinyllama_shapes(state.range(0));
    tiny_llama::Model model(c, 1);
    tiny_llama::Batch batch;
    batch.sequences.emplace_back();
    for (npft::Index t = 0; t <= c.context; ++t) batch.sequences[0].push_back(static_cast<tiny_llama::Token>((t * 7919) % c.vocab));
    for (auto _ : state) benchmark::DoNotOptimize(model.loss_and_gradient(batch));
    state.counters["tokens_per_s"] = benchmark::Counter(static_cast<double>(c.context), benchmark::Counter::kIsIterationInvariantRate);
    state.counters["parameters"] = static_cast<double>(model.weights().parameter_count());
    rusage usage{};
    ::getrusage(RUSAGE_SELF, &usage);  // the process's peak so far: with --benchmark_filter, this row's own peak
    state.counters["peak_rss_gib"] = static_cast<double>(usage.ru_maxrss) / (1024.0 * 1024.0);
}
BENCHMARK(BM_TinyLlamaStep)->ArgName("layers")->Arg(1)->Arg(2)->Unit(benchmark::kSecond)->Iterations(2);
BENCHMARK(BM_TinyLlamaStep)->ArgName("layers")->Arg(22)->Unit(benchmark::kSecond)->Iterations(1);

}  // namespace

BENCHMARK_MAIN();
