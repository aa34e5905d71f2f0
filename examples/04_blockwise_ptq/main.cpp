// Block-wise post-training reconstruction on the end-to-end demo's model (issue 9): quantize every linear layer with
// RTN at 4 and 3 bits, then reconstruct block by block with each objective of npft::ptq (single block, two blocks
// jointly, downstream at the next block's output and at its q/k/v), training the scales and zero points, the rounding
// (AdaRound) or a LoRA correction (--params), with and without NPFT before quantization.
// Perplexity is measured through the packed weights (npft's CPU kernels). Prints a table, writes blockwise_ptq.json.
//
//   blockwise_ptq [--out DIR] [--checkpoint-dir DIR] [--text FILE] [--hf DIR [--context N]] [--seed N] [--train-steps N]
//                 [--steps N] [--lr X] [--params scales|rounding|lora] [--calibration N] [--eval-windows N]
//                 [--npft-steps N] [--quick]
//
// --hf DIR runs on a Hugging Face LLaMA checkpoint instead of the demo's model (its tokenizer.model tokenizes the corpus).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <npft/npft.hpp>
#include <npft/ptq/reconstruct.hpp>
#include <npft/ptq/trainable_lora.hpp>
#include <npft/ptq/trainable_rounding.hpp>
#include <npft/train/progress.hpp>

// Shared with end_to_end: the command-line walk, fp32 pre-training and its checkpoint, the NPFT set-up.
#include "demo_setup.hpp"
#include "hf_model.hpp"
#include "kjv_corpus.hpp"
#include "tiny_llama/blockwise.hpp"
#include "tiny_llama/checkpoint.hpp"
#include "tiny_llama/data.hpp"
#include "tiny_llama/model.hpp"
#include "tiny_llama/quantized_model.hpp"

namespace demo {

namespace fs = std::filesystem;
using npft::Index;
using npft::Matrix;
using tiny_llama::Batch;
using tiny_llama::Model;
using Packed = std::map<std::string, npft::quant::QuantizedMatrix>;

struct Settings {
    fs::path out_dir = program_dir();
    fs::path checkpoint_dir;  // empty: the output folder
    fs::path text_file;       // empty: the King James Bible
    fs::path hf;              // a Hugging Face checkpoint folder instead of the demo's model
    Index hf_context = 512;   // its windows: context tokens + 1
    std::uint64_t seed = 0;
    // The fp32 model: the end-to-end demo's recipe, so its cached checkpoint is found by the same key.
    Pretraining pretraining;
    // Calibration: windows of 129 bytes from the train split, a few per reconstruction step.
    Index calibration_sequences = 32;
    Index calibration_batch = 4;
    Index steps = 100;  // per window
    std::string params = "scales";
    float lr = 0.0f;    // 0: the policy's default (default_lr)
    Index eval_windows = 96;
    // NPFT before quantization: the demo's recipe on a smaller budget.
    NpftRecipe npft{.stages = 2, .steps = 20, .batch = 4};
};

constexpr const char* usage_text =
    " [--out DIR] [--checkpoint-dir DIR] [--text FILE] [--hf DIR [--context N]] [--seed N] [--train-steps N] [--steps N] [--lr X]\n"
    "          [--params scales|rounding|lora] [--calibration N] [--eval-windows N] [--npft-steps N] [--quick]\n"
    "  --out DIR             where blockwise_ptq.json (and a newly trained checkpoint) go (default: this program's folder)\n"
    "  --checkpoint-dir DIR  where to look for the end-to-end demo's fp32 checkpoint (default: the output folder)\n"
    "  --text FILE           this text file (90/5/5 split by lines) instead of the King James Bible\n"
    "  --hf DIR              a Hugging Face LLaMA checkpoint folder (config.json, safetensors, tokenizer.model) instead of\n"
    "                        the demo's model; needs a build with SentencePiece\n"
    "  --context N           with --hf: windows of N + 1 tokens (default 512, at most the model's context)\n"
    "  --seed N              seeds everything (default 0)\n"
    "  --train-steps N       pre-training steps when no checkpoint is found (default 600, as the demo)\n"
    "  --steps N             reconstruction steps per window (default 100)\n"
    "  --lr X                reconstruction learning rate (default: 5e-3 scales, 3e-2 rounding, 1e-3 lora)\n"
    "  --params P            what is trained: scales (and zero points), rounding (AdaRound) or lora (rank 4)\n"
    "  --calibration N       calibration windows of 129 bytes (default 32, 4 per step)\n"
    "  --eval-windows N      test windows of 129 bytes (default 96)\n"
    "  --npft-steps N        NPFT steps per stage, 2 stages (default 20)\n"
    "  --quick               a smoke run (figures meaningless)\n";

Settings parse_settings(int argc, char** argv) {
    Settings s;
    CommandLine cl(argc, argv, usage_text);
    while (cl.next()) {
        if (cl.is("--out")) s.out_dir = cl.value();
        else if (cl.is("--checkpoint-dir")) s.checkpoint_dir = cl.value();
        else if (cl.is("--text")) s.text_file = cl.value();
        else if (cl.is("--hf")) s.hf = cl.value();
        else if (cl.is("--context")) s.hf_context = cl.integer();
        else if (cl.is("--seed")) s.seed = static_cast<std::uint64_t>(cl.integer());
        else if (cl.is("--train-steps")) s.pretraining.steps = cl.integer();
        else if (cl.is("--steps")) s.steps = cl.integer();
        else if (cl.is("--lr")) s.lr = cl.real();
        else if (cl.is("--params")) s.params = cl.value();
        else if (cl.is("--calibration")) s.calibration_sequences = cl.integer();
        else if (cl.is("--eval-windows")) s.eval_windows = cl.integer();
        else if (cl.is("--npft-steps")) s.npft.steps = cl.integer();
        else if (cl.is("--quick")) {
            s.pretraining.steps = 20;
            s.calibration_sequences = 4;
            s.steps = 4;
            s.eval_windows = 8;
            s.npft.steps = 2;
        } else cl.reject();
    }
    if (s.checkpoint_dir.empty()) s.checkpoint_dir = s.out_dir;
    npft::require(s.params == "scales" || s.params == "rounding" || s.params == "lora",
                  "--params must be scales, rounding or lora, got '", s.params, "'");
    if (s.lr == 0.0f) s.lr = s.params == "scales" ? 5e-3f : (s.params == "rounding" ? 3e-2f : 1e-3f);
    if (s.calibration_sequences < s.calibration_batch) s.calibration_batch = std::max<Index>(1, s.calibration_sequences);
    return s;
}

/// RTN (asymmetric min-max, one scale and zero point per output channel) of every linear layer.
Packed rtn(const Model& model, int bits) {
    const npft::quant::Quantizer quantizer(npft::quant::UniformGrid(bits, 0));
    Packed packed;
    for (Index l = 0; l < model.config().layers; ++l)
        for (const auto kind : tiny_llama::linear_kinds)
            packed.emplace(tiny_llama::linear_name(l, kind),
                           quantizer.quantize(npft::MatrixView<const float>(npft::as_matrix_view(
                               model.weights().layers[static_cast<std::size_t>(l)].linear(kind)))));
    return packed;
}

/// Test perplexity with every linear run from its packed weight.
double packed_perplexity(const Model& model, const Packed& packed, const std::vector<Batch>& test) {
    tiny_llama::QuantizedModel q(model);
    for (const auto& [name, matrix] : packed) q.set_linear(name, tiny_llama::PackedLinear(matrix));
    return tiny_llama::perplexity(q, test);
}

struct Row {
    std::string base;    // "fp32" or "npft"
    std::string method;  // "rtn" or "rtn+<objective>"
    int bits = 0;
    double test_ppl = 0.0;
    double seconds = 0.0;        // quantization + reconstruction (the NPFT fine-tuning is reported once, apart)
    double window_before = 0.0;  // mean over windows of the calibration error before / after reconstruction
    double window_after = 0.0;
};

std::string json_number(double v) {
    char buffer[64];
    std::snprintf(buffer, sizeof buffer, "%.6g", v);
    return buffer;
}

int run(int argc, char** argv) {
    const Settings s = parse_settings(argc, argv);
    try {
        const auto run_start = Clock::now();
        fs::create_directories(s.out_dir);
        std::optional<HfModel> hf;
        if (!s.hf.empty()) {
            hf = load_hf_model(s.hf, s.hf_context);
            std::printf("Hugging Face checkpoint %s: %s; tokenizer %s (%d tokens)\n", s.hf.string().c_str(), hf->config.describe().c_str(),
                        hf->tokenizer.source().c_str(), hf->tokenizer.vocab_size());
        }
        const tiny_llama::Config config = hf ? hf->config : tiny_llama::Config::small();

        const fs::path cached_text = fs::exists(s.checkpoint_dir / "kjv.txt") ? s.checkpoint_dir / "kjv.txt" : s.out_dir / "kjv.txt";
        const kjv::Corpus corpus = s.text_file.empty() ? kjv::load_kjv(cached_text)
                                                       : kjv::split_text(kjv::read_text_file(s.text_file), s.text_file.string());
        const auto train_tokens = hf ? tokenize(hf->tokenizer, corpus.train) : tiny_llama::byte_tokens(corpus.train);
        const auto test = tiny_llama::evaluation_batches(hf ? tokenize(hf->tokenizer, corpus.test) : tiny_llama::byte_tokens(corpus.test),
                                                         config.context + 1, s.eval_windows, 16);

        // ---- the fp32 model: the end-to-end demo's checkpoint when it is there, else trained here with its recipe
        const Checkpoint checkpoint = checkpoint_for(config, s.seed, s.pretraining, corpus.train);
        std::optional<tiny_llama::Weights> cached =
            hf ? std::move(hf->weights) : load_checkpoint(checkpoint, config, {s.checkpoint_dir, s.out_dir});
        Model model(config, cached ? std::move(*cached) : tiny_llama::initial_weights(config, s.seed));
        if (hf) {
            std::printf("fp32 model: the Hugging Face checkpoint (no pre-training)\n");
        } else if (cached) {
            std::printf("fp32 model: the end-to-end demo's checkpoint %s\n", checkpoint.file.c_str());
        } else {
            std::printf("fp32 model: no checkpoint %s in %s; training %td steps\n", checkpoint.file.c_str(),
                        s.checkpoint_dir.string().c_str(), s.pretraining.steps);
            std::fflush(stdout);
            pretrain(model, train_tokens, s.pretraining, s.seed);
            tiny_llama::save_weights(s.out_dir / checkpoint.file, config, model.weights(), checkpoint.key);
        }
        const tiny_llama::Weights fp32_weights = model.weights();
        const double fp32_ppl = tiny_llama::perplexity(model, test);
        std::printf("fp32 test perplexity %.4f on %zu batches of 16 windows\n", fp32_ppl, test.size());

        // ---- calibration batches (train split), disjoint in stream from the demo's
        const npft::RandomKey calibration_key{s.seed, npft::make_stream(0x62777074)};  // "bwpt"
        std::vector<Batch> calibration;
        for (Index i = 0; i < s.calibration_sequences / s.calibration_batch; ++i)
            calibration.push_back(tiny_llama::random_windows(train_tokens, s.calibration_batch, config.context + 1,
                                                             calibration_key, static_cast<std::uint64_t>(i)));

        std::vector<Row> rows;
        double npft_seconds = 0.0, npft_ppl = 0.0;
        const auto measure = [&](const std::string& base) {
            const tiny_llama::Weights base_weights = model.weights();
            for (const int bits : {4, 3}) {
                auto start = Clock::now();
                const Packed packed_rtn = rtn(model, bits);
                const double rtn_seconds = seconds_since(start);
                rows.push_back({base, "rtn", bits, packed_perplexity(model, packed_rtn, test), rtn_seconds, 0.0, 0.0});
                std::printf("  %-5s %d-bit %-22s ppl %.4f  %6.1f s\n", base.c_str(), bits, "rtn", rows.back().test_ppl,
                            rows.back().seconds);
                std::fflush(stdout);
                const auto reconstruct = [&](const auto& objective, const std::string& label) {
                    model.weights() = base_weights;
                    Packed packed = packed_rtn;
                    tiny_llama::BlockwiseView view(model, config.context);
                    // Embedded on demand: neither the demo nor the module holds every calibration batch.
                    const npft::ptq::CalibrationSource inputs{static_cast<Index>(calibration.size()), [&](Index k) {
                                                                  return view.embed(calibration[static_cast<std::size_t>(k)]);
                                                              }};
                    npft::ptq::ReconstructionOptions options;
                    options.steps = s.steps;
                    options.learning_rate = s.lr;
                    options.cosine_decay = s.params != "rounding";  // rounding's penalty bites at the end
                    npft::ptq::ReconstructionReport report;
                    if (s.params == "rounding")
                        report = npft::ptq::reconstruct(view, packed, inputs, objective, options, npft::ptq::TrainRounding{});
                    else if (s.params == "lora")
                        report = npft::ptq::reconstruct(view, packed, inputs, objective, options,
                                                        npft::ptq::TrainLora{.shape = {.rank = 4, .seed = s.seed}});
                    else
                        report = npft::ptq::reconstruct(view, packed, inputs, objective, options, npft::ptq::TrainScales{});
                    Row row{base, "rtn+" + label, bits, packed_perplexity(model, packed, test),
                            rtn_seconds + report.seconds, 0.0, 0.0};
                    for (const auto& w : report.windows) {
                        row.window_before += w.loss_before / static_cast<double>(report.windows.size());
                        row.window_after += w.loss_after / static_cast<double>(report.windows.size());
                    }
                    std::printf("  %-5s %d-bit %-22s ppl %.4f  %6.1f s  window mse %.3g -> %.3g\n", base.c_str(), bits,
                                row.method.c_str(), row.test_ppl, row.seconds, row.window_before, row.window_after);
                    std::fflush(stdout);
                    rows.push_back(row);
                };
                reconstruct(npft::ptq::SingleBlock{}, "single-block");
                reconstruct(npft::ptq::MultiBlock{2}, "multi-block(2)");
                reconstruct(npft::ptq::Downstream{1}, "downstream(1)");
                reconstruct(npft::ptq::Downstream{.depth = 1, .measured_at = npft::ptq::Readout::preactivations},
                            "downstream-qkv(1)");
                model.weights() = base_weights;
            }
        };
        measure("fp32");

        // ---- NPFT (the demo's policies: Fisher outliers, row-range uniform noise, LoRA), then the same rows
        {
            NpftPipeline pipeline = npft_pipeline(s.npft, s.seed);
            const std::vector<Batch> batches = npft_batches(train_tokens, s.npft, config.context + 1, s.seed);
            std::printf("npft: %td stages x %td steps, batch %td x %td bytes\n", s.npft.stages, s.npft.steps, s.npft.batch,
                        config.context + 1);
            std::fflush(stdout);
            // The Fisher is the mean of squared per-sequence gradients: the pipeline gets one window per calibration
            // batch (a batch of 4 would give the square of the 4 windows' mean gradient instead).
            std::vector<Batch> per_sequence;
            for (const Batch& b : calibration)
                for (const auto& sequence : b.sequences) per_sequence.push_back(Batch{{sequence}});
            model.weights() = fp32_weights;
            const auto start = Clock::now();
            pipeline.fit(model, batches, per_sequence, npft::train::progress::lines(10));
            npft_seconds = seconds_since(start);
            npft_ppl = tiny_llama::perplexity(model, test);
            std::printf("npft: %.1f s, fp32 test perplexity after fine-tuning %.4f\n", npft_seconds, npft_ppl);
        }
        measure("npft");

        // ---- the table and the JSON
        std::printf("\n| base | bits | method | test ppl | seconds | calibration MSE before -> after (mean over windows) |\n"
                    "|---|---|---|---|---|---|\n");
        std::printf("| fp32 | 32 | none | %.4f | | |\n", fp32_ppl);
        std::printf("| npft | 32 | none | %.4f | %.1f (fine-tuning) | |\n", npft_ppl, npft_seconds);
        for (const int bits : {4, 3})
            for (const Row& r : rows)
                if (r.bits == bits) {
                    std::printf("| %s | %d | %s | %.4f | %.1f |", r.base.c_str(), r.bits, r.method.c_str(), r.test_ppl, r.seconds);
                    if (r.window_before > 0.0) std::printf(" %.3g -> %.3g |\n", r.window_before, r.window_after);
                    else std::printf(" |\n");
                }

        const fs::path json = s.out_dir / "blockwise_ptq.json";
        std::ofstream out(json);
        out << "{\n \"model\": \"" << config.describe() << "\", \"checkpoint\": \"" << checkpoint.file << "\", \"cached\": "
            << (cached ? "true" : "false") << ",\n \"settings\": {\"seed\": " << s.seed << ", \"calibration_sequences\": "
            << s.calibration_sequences << ", \"calibration_batch\": " << s.calibration_batch << ", \"steps_per_window\": "
            << s.steps << ", \"params\": \"" << s.params << "\", \"learning_rate\": " << json_number(s.lr) << ", \"eval_windows\": " << s.eval_windows
            << ", \"npft_stages\": " << s.npft.stages << ", \"npft_steps_per_stage\": " << s.npft.steps
            << ", \"npft_batch\": " << s.npft.batch << "},\n \"fp32_test_ppl\": " << json_number(fp32_ppl)
            << ", \"npft_test_ppl\": " << json_number(npft_ppl) << ", \"npft_seconds\": " << json_number(npft_seconds)
            << ",\n \"rows\": [\n";
        for (std::size_t i = 0; i < rows.size(); ++i) {
            const Row& r = rows[i];
            out << "  {\"base\": \"" << r.base << "\", \"method\": \"" << r.method << "\", \"bits\": " << r.bits
                << ", \"test_ppl\": " << json_number(r.test_ppl) << ", \"seconds\": " << json_number(r.seconds)
                << ", \"window_mse_before\": " << json_number(r.window_before)
                << ", \"window_mse_after\": " << json_number(r.window_after) << "}" << (i + 1 < rows.size() ? "," : "")
                << "\n";
        }
        out << " ],\n \"total_seconds\": " << json_number(seconds_since(run_start)) << "\n}\n";
        npft::require(static_cast<bool>(out), "could not write ", json.string());
        std::printf("\nwrote %s (total %.0f s)\n", json.string().c_str(), seconds_since(run_start));
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
}

}  // namespace demo

int main(int argc, char** argv) { return demo::run(argc, argv); }
