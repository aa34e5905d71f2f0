// End-to-end tokens per second of the reference model (models/reference-a: 6 layers, dim 256, hidden 768, context 256,
// vocabulary 4096), fp32 against each quantized format, with the key/value cache of tiny_llama/decode.hpp.
//
//   model/decode/<format>/threads:<T>    batch-1 generation: 64 tokens, one at a time (greedy), after a 16-token
//                                        prompt (the prompt's pass is not timed); every linear sees one row
//   model/prefill/<format>/threads:<T>   prompt processing of 512 tokens: the model's context is 256, so 2 sequences
//                                        of 256 tokens in one pass (every linear sees 512 rows), logits of each
//                                        sequence's last position only (what generation needs next)
//   memory/read/threads:<T>              the read bandwidth of this machine (read_bandwidth.hpp)
//
// Formats: fp32 (Eigen, built with -march=native, the linears split over threads in tiles of output features), and
// every linear RTN-quantized from the fp32 weights when the benchmark first needs it (not timed): u4 (asymmetric, one
// group per output channel), u4g128, u3g128, u2g128 (groups of 128 inputs), u8 (symmetric, per channel), lut4 and
// lut3 (a k-means table per row). Each quantized format runs with int8 activations (/act:int8, the default of
// MultiplyOptions; where the int8 kernels do not apply, u8, the label says fp32) and fp32 activations (/act:fp32).
// Embedding, norms, attention and the head stay fp32 in every row.
//
// Counters: tokens_per_second; decode rows also weight_bytes_per_token (packed linears, metadata included, plus the
// fp32 head, norms and one embedding row) and read_fraction (weight bytes per second over measured_read_bandwidth at the
// same thread count; the weights of this small model fit in the caches, so the fraction can pass 1).
//
// The model folder: --model=DIR, else $NPFT_REFERENCE_MODEL, else models/reference-a of the source tree. Without a
// model every row reports an error naming the folder. scripts/bench.sh runs this with --benchmark_format=json.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <npft/core/random.hpp>
#include <npft/kernels/cpu/multiply.hpp>
#include <npft/quant/nonuniform.hpp>
#include <npft/quant/quantizer.hpp>
#include <npft/quant/uniform.hpp>

#include "read_bandwidth.hpp"
#include "tiny_llama/checkpoint.hpp"
#include "tiny_llama/decode.hpp"

#ifndef NPFT_SOURCE_DIR
#define NPFT_SOURCE_DIR "."
#endif

namespace {

using npft::Index;
using tiny_llama::KvCache;
using tiny_llama::LogitRows;
using tiny_llama::TokenRows;
namespace cpu = npft::kernels::cpu;
namespace quant = npft::quant;

constexpr Index prompt_tokens = 16, generated_tokens = 64, prefill_sequences = 2;

enum class Kind { fp32, uniform, lut };

struct FormatSpec {
    const char* name;
    Kind kind;
    int bits = 0;
    Index group = 0;  // 0: one group per output channel
    quant::Symmetry symmetry = quant::Symmetry::asymmetric;
};

const FormatSpec formats[] = {
    {"fp32", Kind::fp32},
    {"u4", Kind::uniform, 4, 0},
    {"u4g128", Kind::uniform, 4, 128},
    {"u3g128", Kind::uniform, 3, 128},
    {"u2g128", Kind::uniform, 2, 128},
    {"u8", Kind::uniform, 8, 0, quant::Symmetry::symmetric},
    {"lut4", Kind::lut, 4},
    {"lut3", Kind::lut, 3},
};

std::filesystem::path& model_dir() {
    static std::filesystem::path dir = std::filesystem::path(NPFT_SOURCE_DIR) / "models" / "reference-a";
    return dir;
}

/// The fp32 model, loaded on first use; `error` says why not.
struct Reference {
    std::unique_ptr<tiny_llama::Model> model;
    std::string error;
};

Reference& reference() {
    static Reference r = [] {
        Reference loaded;
        const std::filesystem::path file = model_dir() / "reference.safetensors";
        if (!std::filesystem::is_regular_file(file)) {
            loaded.error = "reference model not found: '" + file.string() +
                           "' does not exist (set NPFT_REFERENCE_MODEL or pass --model=DIR)";
            return loaded;
        }
        try {
            const tiny_llama::Config config = tiny_llama::stored_config(file);
            loaded.model = std::make_unique<tiny_llama::Model>(config, tiny_llama::load_weights(file, config));
        } catch (const npft::Error& e) {
            loaded.error = std::string("reference model '") + file.string() + "' could not be loaded: " + e.what();
        }
        return loaded;
    }();
    return r;
}

/// A format's quantized model and, to name the kernel it runs, its first linear's packed matrix.
struct Packed {
    std::unique_ptr<tiny_llama::QuantizedModel> model;
    quant::QuantizedMatrix first;
};

template <class Grid>
Packed quantize_all(const tiny_llama::Model& model, const Grid& grid) {
    const quant::Quantizer<Grid> quantizer(grid);
    Packed p{std::make_unique<tiny_llama::QuantizedModel>(model), {}};
    for (Index l = 0; l < model.config().layers; ++l)
        for (const auto kind : tiny_llama::linear_kinds) {
            quant::QuantizedMatrix w = quantizer.quantize(model.weights().layers[static_cast<std::size_t>(l)].linear(kind));
            if (l == 0 && kind == tiny_llama::LinearKind::q) p.first = w;
            p.model->set_linear(tiny_llama::linear_name(l, kind), tiny_llama::PackedLinear(std::move(w)));
        }
    return p;
}

/// The quantized model of format f, built on first use (RTN from the fp32 weights; k-means for the lut formats).
Packed& quantized(const FormatSpec& f) {
    static std::map<std::string, Packed> built;
    auto it = built.find(f.name);
    if (it == built.end()) {
        const tiny_llama::Model& model = *reference().model;
        it = built.emplace(f.name, f.kind == Kind::uniform ? quantize_all(model, quant::UniformGrid(f.bits, f.group, f.symmetry))
                                                           : quantize_all(model, quant::NonUniformGrid(f.bits))).first;
    }
    return it->second;
}

TokenRows fixed_tokens(Index sequences, Index length, Index vocab, std::uint64_t draw) {
    TokenRows rows(static_cast<std::size_t>(sequences));
    const npft::RandomKey key{draw, npft::make_stream(0x6d6f64)};  // "mod"
    for (Index s = 0; s < sequences; ++s)
        for (Index t = 0; t < length; ++t)
            rows[static_cast<std::size_t>(s)].push_back(static_cast<tiny_llama::Token>(
                npft::random_words(key, static_cast<std::uint64_t>(s * length + t))[0] % static_cast<std::uint32_t>(vocab)));
    return rows;
}

/// Runs one format: extend() with the fp32 model or the quantized one, configured for `threads` and `activations`.
struct Runner {
    tiny_llama::Model* model;
    const Packed* packed = nullptr;
    std::string label = "eigen";  // the kernel the linears run: path and activation precision

    Runner(const FormatSpec& f, int threads, cpu::Activations activations) : model(reference().model.get()) {
        model->set_threads(threads);
        if (f.kind == Kind::fp32) return;
        Packed& p = quantized(f);
        p.model->set_multiply_options({.threads = threads, .path = cpu::Path::best, .activations = activations});
        packed = &p;
        const cpu::Path path = cpu::kernel_path(p.first, cpu::Path::best);
        // 8-bit: int8 in the prompt GEMMs (int8_gemm_min_batch tokens and more), fp32 for generation.
        const bool int8_path = activations == cpu::Activations::int8 && path != cpu::Path::portable;
        const bool int8 = int8_path && cpu::int8_kernel_applies(p.first);
        const bool int8_prompts = int8_path && !int8 && cpu::int8_gemm_for(p.first, path) != cpu::Int8Gemm::none;
        label = std::string(cpu::path_name(path)) + (int8 ? " int8" : int8_prompts ? " int8 prompts, fp32 generation" : " fp32");
    }
    npft::Matrix operator()(const TokenRows& tokens, KvCache& cache, LogitRows rows) const {
        return packed ? tiny_llama::extend(*packed->model, tokens, cache, rows) : tiny_llama::extend(*model, tokens, cache, rows);
    }
    /// Bytes of weights one token reads: the linears (packed or fp32), the head, the norms and one embedding row.
    double weight_bytes_per_token() const {
        const tiny_llama::Config& c = model->config();
        const auto fp32_linears = static_cast<double>(c.layers * (2 * c.dim * c.dim + 2 * c.kv_dim() * c.dim + 3 * c.hidden * c.dim)) * 4.0;
        const double linears = packed ? static_cast<double>(packed->model->linear_bytes()) : fp32_linears;
        return linears + 4.0 * static_cast<double>(c.vocab * c.dim + (2 * c.layers + 1) * c.dim + c.dim);
    }
};

bool require_model(benchmark::State& state) {
    if (reference().model) return true;
    state.SkipWithError(reference().error.c_str());
    return false;
}

void decode_benchmark(benchmark::State& state, const FormatSpec& f, int threads, cpu::Activations activations) {
    if (!require_model(state)) return;
    const Runner run(f, threads, activations);
    const tiny_llama::Config& c = run.model->config();
    const TokenRows prompt = fixed_tokens(1, prompt_tokens, c.vocab, 1);
    KvCache cache(c);
    for (auto _ : state) {
        state.PauseTiming();
        cache.clear();
        tiny_llama::Token next = tiny_llama::argmax_token(run(prompt, cache, LogitRows::last), 0);
        state.ResumeTiming();
        for (Index i = 0; i < generated_tokens; ++i) next = tiny_llama::argmax_token(run({{next}}, cache, LogitRows::all), 0);
        benchmark::DoNotOptimize(next);
    }
    const double tokens = static_cast<double>(state.iterations() * generated_tokens);
    const double bytes = run.weight_bytes_per_token();
    state.counters["tokens_per_second"] = benchmark::Counter(tokens, benchmark::Counter::kIsRate);
    state.counters["weight_bytes_per_token"] = bytes;
    state.counters["read_fraction"] =
        benchmark::Counter(tokens * bytes / npft_bench::measured_read_bandwidth(threads), benchmark::Counter::kIsRate);
    state.SetLabel(run.label);
}

void prefill_benchmark(benchmark::State& state, const FormatSpec& f, int threads, cpu::Activations activations) {
    if (!require_model(state)) return;
    const Runner run(f, threads, activations);
    const tiny_llama::Config& c = run.model->config();
    const TokenRows tokens = fixed_tokens(prefill_sequences, c.context, c.vocab, 2);
    KvCache cache(c, prefill_sequences);
    for (auto _ : state) {
        cache.clear();
        benchmark::DoNotOptimize(run(tokens, cache, LogitRows::last).data());
    }
    state.counters["tokens_per_second"] =
        benchmark::Counter(static_cast<double>(state.iterations() * prefill_sequences * c.context), benchmark::Counter::kIsRate);
    state.SetLabel(run.label);
}

}  // namespace

int main(int argc, char** argv) {
    // --model=DIR is ours; Google Benchmark must not see it.
    if (const char* env = std::getenv("NPFT_REFERENCE_MODEL"); env && *env) model_dir() = env;
    int kept = 1;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (arg.rfind("--model=", 0) == 0) model_dir() = arg.substr(8);
        else argv[kept++] = argv[i];
    }
    argc = kept;

    for (const int threads : {1, 2})
        benchmark::RegisterBenchmark(("memory/read/threads:" + std::to_string(threads)).c_str(),
                                     [threads](benchmark::State& s) { npft_bench::memory_read_benchmark(s, threads); })
            ->UseRealTime()
            ->Unit(benchmark::kMillisecond);
    for (const char* phase : {"decode", "prefill"})
        for (const FormatSpec& f : formats)
            for (const auto activations : {cpu::Activations::int8, cpu::Activations::fp32}) {
                if (f.kind == Kind::fp32 && activations == cpu::Activations::fp32) continue;
                for (const int threads : {1, 2}) {
                    const std::string name = std::string("model/") + phase + "/" + f.name +
                                             (f.kind == Kind::fp32 ? "" : activations == cpu::Activations::int8 ? "/act:int8" : "/act:fp32") +
                                             "/threads:" + std::to_string(threads);
                    const bool decode = std::string(phase) == "decode";
                    benchmark::RegisterBenchmark(name.c_str(), [&f, threads, activations, decode](benchmark::State& s) {
                        if (decode) decode_benchmark(s, f, threads, activations);
                        else prefill_benchmark(s, f, threads, activations);
                    })->UseRealTime()->Unit(benchmark::kMillisecond);
                }
            }
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
