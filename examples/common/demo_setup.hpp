#pragma once
// What the tiny-LLaMA demos (examples/03_end_to_end, examples/04_blockwise_ptq) set up alike: the command-line walk,
// the fp32 model's pre-training recipe and the cached checkpoint it leaves, and the NPFT policies. Sharing the recipe
// and the checkpoint key is what lets blockwise_ptq reuse the model that end_to_end trained instead of training its
// own; sharing the NPFT set-up keeps "NPFT" meaning the same method in both tables.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <initializer_list>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <unistd.h>

#include <npft/npft.hpp>
#include <npft/train/optimizer.hpp>

#include "tiny_llama/checkpoint.hpp"
#include "tiny_llama/data.hpp"
#include "tiny_llama/model.hpp"
#include "tiny_llama/pretraining.hpp"

namespace demo {

using npft::Index;
using Clock = std::chrono::steady_clock;

inline double seconds_since(Clock::time_point start) {
    return std::chrono::duration<double>(Clock::now() - start).count();
}

/// The folder of the running program (in the build tree): the demos' default output folder.
inline std::filesystem::path program_dir() {
    std::error_code ec;
    const std::filesystem::path exe = std::filesystem::canonical("/proc/self/exe", ec);
    return ec ? std::filesystem::path(".") : exe.parent_path();
}

// ---- command line ---------------------------------------------------------------------------------------------------

/// Walks argv for a demo's own list of flags. A mistake prints what is wrong and the usage, and exits with 2: a demo
/// has nothing to clean up yet, and a half-understood command line should never start a long run.
///
///   CommandLine cl(argc, argv, usage);
///   while (cl.next()) {
///       if (cl.is("--seed")) s.seed = static_cast<std::uint64_t>(cl.integer());
///       else cl.reject();
///   }
class CommandLine {
public:
    /// `usage` is what follows "usage: <program>": the synopsis, then one line per flag.
    CommandLine(int argc, char** argv, const char* usage) : argc_(argc), argv_(argv), usage_(usage) {}

    /// Moves to the next argument; false after the last. --help and -h print the usage and exit with 0.
    bool next() {
        if (++i_ >= argc_) return false;
        arg_ = argv_[i_];
        if (arg_ == "--help" || arg_ == "-h") usage(0);
        return true;
    }

    /// Whether the current argument is `flag`.
    bool is(std::string_view flag) const { return arg_ == flag; }

    /// The argument after the current flag, consumed.
    std::string value() {
        if (i_ + 1 >= argc_) fail(arg_ + " needs a value");
        return argv_[++i_];
    }

    /// The value as a non-negative integer.
    Index integer() {
        const std::string v = value();
        char* end = nullptr;
        const long long n = std::strtoll(v.c_str(), &end, 10);
        if (end == v.c_str() || *end != '\0' || n < 0)
            fail(arg_ + " expects a non-negative integer, got '" + v + "'");
        return static_cast<Index>(n);
    }

    /// The value as a non-negative real number.
    float real() {
        const std::string v = value();
        char* end = nullptr;
        const float x = std::strtof(v.c_str(), &end);
        if (end == v.c_str() || *end != '\0' || !(x >= 0.0f))
            fail(arg_ + " expects a non-negative number, got '" + v + "'");
        return x;
    }

    /// For an argument that no flag matched.
    [[noreturn]] void reject() const { fail("unknown argument '" + arg_ + "'"); }

    /// Prints the usage (to stdout when asked for, else to stderr) and exits with `code`.
    [[noreturn]] void usage(int code) const {
        std::FILE* out = code == 0 ? stdout : stderr;
        std::fprintf(out, "usage: %s", argv_[0]);
        std::fputs(usage_, out);
        std::exit(code);
    }

private:
    [[noreturn]] void fail(const std::string& message) const {
        std::fprintf(stderr, "%s\n", message.c_str());
        usage(2);
    }

    int argc_;
    char** argv_;
    const char* usage_;
    int i_ = 0;
    std::string arg_;
};

// ---- the fp32 model -------------------------------------------------------------------------------------------------

/// How the fp32 model is pre-trained (tiny_llama/pretraining.hpp): AdamW, warmup then cosine decay, the gradient norm
/// clipped to 1, `batch` random windows of context + 1 bytes per step.
using Pretraining = tiny_llama::Pretraining;

/// Pre-trains `model` on `train` with `recipe`. The batches are keyed by (seed, "rain", step), so the same seed trains
/// the same weights (on any thread count). Progress goes to stderr: one line rewritten in place on a terminal, else a
/// line every 50 steps and at the last.
inline void pretrain(tiny_llama::Model& model, const std::vector<tiny_llama::Token>& train, const Pretraining& recipe,
                     std::uint64_t seed) {
    tiny_llama::Pretrainer trainer(model, recipe, seed);
    const auto start = Clock::now();
    double smoothed = 0.0;
    const bool tty = ::isatty(2);
    while (!trainer.done()) {
        const Index step = trainer.step();
        const double loss = trainer.train_step(train);
        // The printed loss is smoothed: one batch's loss is too noisy to read a trend from.
        smoothed = step == 0 ? loss : 0.95 * smoothed + 0.05 * loss;
        const bool last = trainer.done();
        if (tty || last || (step + 1) % 50 == 0) {
            const double elapsed = seconds_since(start);
            const double eta = elapsed / static_cast<double>(step + 1) * static_cast<double>(recipe.steps - step - 1);
            std::fprintf(stderr, "%s[train] step %td/%td  loss %.4f  (%.2f bits/byte)  lr %.2g  %.0f s, eta %.0f s%s",
                         tty ? "\r" : "", step + 1, recipe.steps, smoothed, smoothed / std::log(2.0),
                         static_cast<double>(trainer.last_learning_rate()), elapsed, eta, tty && !last ? "   " : "\n");
            std::fflush(stderr);
        }
    }
}

/// FNV-1a: a stable hash (unlike std::hash), so a checkpoint's key means the same in every build.
inline std::uint64_t fnv1a(std::string_view bytes, std::uint64_t h = 0xcbf29ce484222325ull) {
    for (const char c : bytes) h = (h ^ static_cast<unsigned char>(c)) * 0x100000001b3ull;
    return h;
}

/// A cached fp32 checkpoint's identity.
struct Checkpoint {
    std::string key;   // hash of all that determines the trained weights: config, seed, recipe and training text
    std::string file;  // "tiny_llama_<key>.safetensors"
};

/// The checkpoint that pre-training `config` from `seed` with `recipe` on `train_text` leaves. A changed setting or
/// text changes the key, so a stale checkpoint is never reused; equal settings give equal keys in every program.
inline Checkpoint checkpoint_for(const tiny_llama::Config& config, std::uint64_t seed, const Pretraining& recipe,
                                 std::string_view train_text) {
    const std::string settings = config.describe() + " seed=" + std::to_string(seed) + " steps=" +
                                 std::to_string(recipe.steps) + " batch=" + std::to_string(recipe.batch) +
                                 " lr=" + std::to_string(recipe.lr);
    const std::string key = std::to_string(fnv1a(settings, fnv1a(train_text)));
    return {key, "tiny_llama_" + key + ".safetensors"};
}

/// The weights of `checkpoint` from the first of `dirs` that holds it with its key; nothing when none does (the
/// caller then trains, and saves with tiny_llama::save_weights under checkpoint.key).
inline std::optional<tiny_llama::Weights> load_checkpoint(const Checkpoint& checkpoint,
                                                          const tiny_llama::Config& config,
                                                          std::initializer_list<std::filesystem::path> dirs) {
    for (const auto& dir : dirs)
        if (auto weights = tiny_llama::load_cached_weights(dir / checkpoint.file, config, checkpoint.key))
            return weights;
    return std::nullopt;
}

// ---- NPFT -----------------------------------------------------------------------------------------------------------

/// The demos' NPFT budget. The defaults are end_to_end's: method.md's recipe scaled to this model (its README says
/// how).
struct NpftRecipe {
    Index stages = 3;
    Index steps = 50;  // per stage
    Index batch = 8;   // windows of context + 1 bytes per step
    float lr = 1e-3f;
    double outlier_fraction = 0.005;  // of every linear weight, by Fisher
};

/// The demos' NPFT policies: Fisher outliers, the reference noise (uniform over each row's outlier range, zero-mean per
/// row) but redrawn every step rather than once per stage (the fixed draw can be learned away, docs/pipeline.md), the
/// Hutchinson trace for the progress log, and a 4-bit per-channel grid as the pipeline's quantizer (the demos quantize
/// with their own methods afterwards).
using NpftPipeline =
    npft::Pipeline<npft::outliers::TopFisher,
                   npft::noise::Schedule<npft::noise::RowRangeUniform, npft::noise::Constant, npft::noise::EveryStep>,
                   npft::hessian::Hutchinson<>, npft::quant::UniformGrid>;

/// NPFT with `recipe`: the reference preset's options (LoRA rank 16 / alpha 32, the same adapter across stages, AdamW
/// with linear decay) scaled to this model, LoRA on every attention and MLP matrix. `noise_scale` 0 gives the control
/// run, the same LoRA fine-tuning without noise, which separates what the noise does from what the extra training does.
inline NpftPipeline npft_pipeline(const NpftRecipe& recipe, std::uint64_t seed, float noise_scale = 1.0f) {
    npft::PipelineOptions options = npft::presets::reference_options();
    options.stages = recipe.stages;
    options.steps_per_stage = recipe.steps;
    options.learning_rate = recipe.lr;
    options.seed = seed;
    options.perturbed = npft::train::NameFilter{"layers.*.attn.*", "layers.*.mlp.*"};
    options.peft = npft::train::LoraOptions{.rank = 16, .alpha = 32.0f, .dropout = 0.0f};  // the model applies no adapters
    NpftPipeline::noise_type noise;
    noise.scaling = npft::noise::Constant{noise_scale};
    return NpftPipeline(options, npft::outliers::TopFisher{recipe.outlier_fraction}, noise,
                        npft::hessian::Hutchinson<>{},
                        npft::quant::Quantizer<npft::quant::UniformGrid>(npft::quant::UniformGrid(4, 0)));
}

/// The random stream of NPFT's training windows, apart from pre-training's and calibration's.
inline npft::RandomKey npft_key(std::uint64_t seed) { return {seed, npft::make_stream(0x6e706674)}; }  // "npft"

/// The fine-tuning batches: one per step, `recipe.batch` random windows of `length` tokens from `train`.
inline std::vector<tiny_llama::Batch> npft_batches(const std::vector<tiny_llama::Token>& train,
                                                   const NpftRecipe& recipe, Index length, std::uint64_t seed) {
    std::vector<tiny_llama::Batch> batches;
    for (Index i = 0; i < recipe.stages * recipe.steps; ++i)
        batches.push_back(
            tiny_llama::random_windows(train, recipe.batch, length, npft_key(seed), static_cast<std::uint64_t>(i)));
    return batches;
}

}  // namespace demo
