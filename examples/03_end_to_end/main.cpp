// End to end: train a small LLaMA-style model on the King James Bible, quantize it to 4 and 3 bits with RTN, GPTQ,
// non-uniform (SqueezeLLM-style k-means) and non-uniform with dense-and-sparse fp16 outliers, then fine-tune it with
// NPFT and quantize again without any fp16 outliers. Prints the table, writes results.json and results.png.
//
//   end_to_end [--out DIR] [--text FILE] [--large | --hf DIR [--context N]] [--seed N] [--train-steps N]
//              [--eval-windows N] [--quick]
//
// --hf DIR runs everything on a Hugging Face LLaMA checkpoint instead of the byte-level model trained here: its
// tokenizer.model tokenizes the corpus, its config.json sets the model, and there is no pre-training.
//
// Every figure is measured here, on this machine, through npft's packed CPU kernels. Same seed, same table.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <unistd.h>

#include <npft/npft.hpp>
#include <npft/hessian/fisher.hpp>
#include <npft/hessian/hutchinson.hpp>
#include <npft/hessian/hvp.hpp>
#include <npft/outliers/top_fraction.hpp>
#include <npft/outliers/union.hpp>
#include <npft/quant/dense_sparse.hpp>
#include <npft/quant/gptq.hpp>
#include <npft/quant/gptq_hessian.hpp>
#include <npft/quant/nonuniform.hpp>
#include <npft/train/pipeline.hpp>
#include <npft/train/progress.hpp>

// Shared with blockwise_ptq: the command-line walk, fp32 pre-training and its checkpoint, the NPFT set-up.
#include "calibration.hpp"
#include "demo_setup.hpp"
#include "hf_model.hpp"
#include "kjv_corpus.hpp"
#include "reference_checkpoint.hpp"
#include "verbatim_overlap.hpp"
#include "tiny_llama/checkpoint.hpp"
#include "tiny_llama/data.hpp"
#include "tiny_llama/model.hpp"
#include "tiny_llama/quantized_model.hpp"
#include "tiny_llama/subword_tokenizer.hpp"

namespace demo {

namespace fs = std::filesystem;
using npft::Index;
using tiny_llama::Batch;
using tiny_llama::Model;
using tiny_llama::PackedLinear;
using tiny_llama::QuantizedModel;

// ---- settings -------------------------------------------------------------------------------------------------------

struct Settings {
    fs::path out_dir = program_dir();
    std::string text_file;  // empty: the King James Bible
    bool large = false;
    fs::path hf;             // a Hugging Face checkpoint folder instead of the model trained here
    fs::path model;          // a reference model folder (models/, scripts/train_reference.sh) instead of training here
    Index hf_context = 512;  // its windows: context tokens + 1
    std::uint64_t seed = 0;
    Pretraining pretraining;  // the fp32 model: 600 AdamW steps of 16 windows, lr 2e-3 (demo_setup.hpp)
    // Evaluation: the whole test split in windows of context + 1 bytes with stride context (every byte but the first
    // predicted once); N > 0 evaluates N non-overlapping windows spread evenly through it instead (faster, noisier).
    Index eval_windows = 0;
    int threads = 2;  // training and evaluation; the results do not depend on it
    // Calibration: sequences from the train split, one per batch, for the Fisher (per-sequence squared gradients) and
    // the GPTQ Hessians.
    Index calibration_sequences = 64;
    NpftRecipe npft;  // method.md's recipe scaled to this model (see README.md): 3 stages x 50 steps of 8 windows
    Index trace_sequences = 8;
    // The dense-and-sparse baseline keeps 0.45% of each matrix in fp16, as SqueezeLLM's largest setting: the 0.05% most
    // sensitive weights (Fisher) and the 0.40% largest in magnitude (the union may be a little smaller).
    double sparse_sensitive_fraction = 0.0005;
    double sparse_magnitude_fraction = 0.004;
    // The int8-activation column: every row for the small models; the plain RTN baseline on a reference model, whose
    // evaluations cost ten times more (the demo's 10-minute budget). --int8-every-row restores every row.
    std::optional<bool> int8_every_row;
    // Group sizes of the RTN rows after fine-tuning (per channel and 128; on a reference model per channel only).
    std::vector<Index> finetuned_groups = {0, 128};

    tiny_llama::Config config() const { return large ? tiny_llama::Config::large() : tiny_llama::Config::small(); }
};

constexpr const char* usage_text =
    " [--out DIR] [--text FILE] [--large | --model DIR | --hf DIR [--context N]] [--seed N] [--train-steps N] [--eval-windows N]"
    " [--threads N] [--quick]\n"
    "  --out DIR          where results.json, results.png and the cached checkpoint go (default: this program's folder)\n"
    "  --text FILE        train on this text file (90/5/5 split by lines) instead of the King James Bible\n"
    "  --large            the larger model (dim 256, hidden 768) instead of the default (dim 128, hidden 384)\n"
    "  --model DIR        a pre-trained reference model folder (reference.safetensors [+ tokenizer.model]; the shipped\n"
    "                     one is models/reference-a, scripts/demo.sh's default) instead of the model trained here\n"
    "  --hf DIR           a Hugging Face LLaMA checkpoint folder (config.json, safetensors, tokenizer.model) instead\n"
    "                     of the byte-level model trained here; needs a build with SentencePiece\n"
    "  --context N        with --hf: windows of N + 1 tokens (default 512, at most the model's context)\n"
    "  --seed N           seeds everything (default 0): same seed, same table\n"
    "  --train-steps N    pre-training steps (default 600)\n"
    "  --eval-windows N   evaluate on N test windows of 129 bytes (default 0: the whole test split)\n"
    "  --threads N        threads for training and evaluation (default 2; the results do not depend on it)\n"
    "  --int8-every-row   also evaluate every row with int8 activations (default: every row, except with --model:\n"
    "                     the plain RTN rows only)\n"
    "  --quick            a smoke run: tiny budgets everywhere (the figures mean nothing)\n";

Settings parse_settings(int argc, char** argv) {
    Settings s;
    bool quick = false;
    CommandLine cl(argc, argv, usage_text);
    while (cl.next()) {
        if (cl.is("--out")) s.out_dir = cl.value();
        else if (cl.is("--text")) s.text_file = cl.value();
        else if (cl.is("--large")) s.large = true;
        else if (cl.is("--hf")) s.hf = cl.value();
        else if (cl.is("--model")) s.model = cl.value();
        else if (cl.is("--int8-every-row")) s.int8_every_row = true;
        else if (cl.is("--context")) s.hf_context = cl.integer();
        else if (cl.is("--seed")) s.seed = static_cast<std::uint64_t>(cl.integer());
        else if (cl.is("--train-steps")) s.pretraining.steps = cl.integer();
        else if (cl.is("--eval-windows")) s.eval_windows = cl.integer();
        else if (cl.is("--threads")) s.threads = static_cast<int>(std::max<Index>(1, cl.integer()));
        else if (cl.is("--quick")) {
            quick = true;
            s.pretraining.steps = 20;
            s.eval_windows = 8;
            s.calibration_sequences = 4;
            s.npft.stages = 2;
            s.npft.steps = 3;
            s.trace_sequences = 1;
        } else cl.reject();
    }
    // A reference model's evaluations cost about ten times the small model's: within the demo's 10 minutes it gets the
    // study's fine-tuning length (3 x 40 steps), 32 calibration sequences and per-channel RTN after fine-tuning
    // (docs/study.md has every grid, with seeds).
    if (!s.model.empty() && !quick) {
        s.npft.steps = 40;
        s.calibration_sequences = 32;
        s.finetuned_groups = {0};
    }
    return s;
}

// ---- calibration ----------------------------------------------------------------------------------------------------

// ---- the table ------------------------------------------------------------------------------------------------------

struct Row {
    std::string method;
    int bits = 0;
    Index group = 0;
    double test_ppl = 0.0;
    double bits_per_byte = 0.0;
    double gap = 0.0;  // test_ppl minus that of the fp32 model it was quantized from (fine-tuned, for +npft rows)
    double test_ppl_int8 = 0.0;  // the same packed weights run with int8 activations (the kernels' fast path)
    double bits_per_weight = 0.0;
    double seconds = 0.0;  // quantization time; for +npft rows, fine-tuning plus quantization
    std::optional<npft::hessian::TraceEstimate> trace_before, trace_after;
    double finetune_seconds = 0.0;
    bool control = false;  // the LoRA-without-noise control, not one of the methods
};

/// Quantizes every linear layer with `quantize_one(name, weights)` and measures the result.
/// A perplexity with 4 decimals, or "-" when it was not measured (NaN).
std::string int8_text(double ppl) {
    if (std::isnan(ppl)) return "-";
    char text[32];
    std::snprintf(text, sizeof text, "%.4f", ppl);
    return text;
}

/// Which rows also run with int8 activations (the kernels' default fast path; each costs one more evaluation): every
/// row, or the plain RTN baseline's.
enum class Int8Column { every_row, rtn_rows };

template <class F>
Row quantized_row(Int8Column int8_column, const Model& model, const std::vector<Batch>& test, const tiny_llama::Tokenizer& tokenizer,
                  double source_ppl, std::string method, int bits, Index group, F&& quantize_one,
                  double extra_seconds = 0.0) {
    const auto start = Clock::now();
    QuantizedModel q(model);
    for (Index l = 0; l < model.config().layers; ++l)
        for (const auto kind : tiny_llama::linear_kinds) {
            const std::string name = tiny_llama::linear_name(l, kind);
            q.set_linear(name, quantize_one(name, model.weights().layers[static_cast<std::size_t>(l)].linear(kind)));
        }
    Row row;
    row.method = std::move(method);
    row.bits = bits;
    row.group = group;
    row.seconds = seconds_since(start) + extra_seconds;
    row.bits_per_weight = q.bits_per_weight();
    q.set_multiply_options({.threads = model.threads(), .activations = npft::kernels::cpu::Activations::fp32});
    const auto evaluation = tiny_llama::evaluate(q, test, tokenizer);
    row.test_ppl = evaluation.perplexity();
    row.bits_per_byte = evaluation.bits_per_byte();
    row.gap = row.test_ppl - source_ppl;
    row.test_ppl_int8 = std::numeric_limits<double>::quiet_NaN();
    if (int8_column == Int8Column::every_row || row.method == "rtn") {
        q.set_multiply_options({.threads = model.threads(), .activations = npft::kernels::cpu::Activations::int8});
        row.test_ppl_int8 = tiny_llama::perplexity(q, test);
    }
    std::fprintf(stderr, "  %-26s %d-bit group %-4td  ppl %8.4f (int8 activations %8s)  %.3f bits/weight  %.1f s\n",
                 row.method.c_str(), bits, group, row.test_ppl, int8_text(row.test_ppl_int8).c_str(), row.bits_per_weight,
                 row.seconds);
    return row;
}

npft::MatrixView<const float> view(const npft::Matrix& m) { return npft::MatrixView<const float>(npft::as_matrix_view(m)); }

std::string json_number(double v) {
    if (!std::isfinite(v)) return "null";
    char buffer[64];
    std::snprintf(buffer, sizeof buffer, "%.6g", v);
    return buffer;
}

/// results.png: the quantization gap (perplexity over that of the fp32 model each row was quantized from, in percent)
/// by method (clusters) and bit width (bars). A gap, not a raw perplexity: a fine-tuned model is compared with its own
/// fp32 weights, never drawn "below fp32". One seed: the statistics are in docs/study.md. Writes the data and the
/// gnuplot script next to it and runs gnuplot; a missing gnuplot costs the plot, not the run.
void plot(const fs::path& dir, const std::vector<Row>& rows) {
    std::vector<std::string> labels;
    std::map<std::string, std::map<int, double>> gap_percent;
    for (const Row& r : rows) {
        const bool grouped = r.method.starts_with("rtn") || r.method.starts_with("gptq");
        const std::string label = r.method + (r.control ? "*" : "") +
                                  (grouped ? (r.group == 0 ? " (per-ch)" : " (g" + std::to_string(r.group) + ")") : "");
        if (!gap_percent.contains(label)) labels.push_back(label);
        gap_percent[label][r.bits] = 100.0 * r.gap / (r.test_ppl - r.gap);
    }
    {
        std::ofstream data(dir / "results.dat");
        data << "# method\t4-bit\t3-bit quantization gap (% perplexity over its own fp32 model)\n";
        for (const auto& label : labels) {
            data << '"' << label << '"';
            for (const int bits : {4, 3}) {
                const auto it = gap_percent[label].find(bits);
                data << '\t' << (it == gap_percent[label].end() ? std::string("NaN") : json_number(it->second));
            }
            data << '\n';
        }
    }
    {
        std::ofstream gp(dir / "results.gp");
        gp << "set terminal pngcairo size 1100,560 font ',10'\n"
              "set output 'results.png'\n"
              "set title 'Quantization gap on the KJV test books, one seed (* = noise-free LoRA control; statistics: "
              "docs/study.md)'\n"
              "set style data histogram\nset style histogram clustered gap 1\nset style fill solid 0.85 border -1\n"
              "set boxwidth 0.9\nset xtics rotate by -30 left\nset grid ytics\nset key outside top center horizontal\n"
              "set ylabel 'test perplexity over its own fp32 model (%)'\nset yrange [0:*]\n"
              "plot 'results.dat' using 2:xtic(1) title '4-bit' lc rgb '#4477aa', '' using 3 title '3-bit' lc rgb '#ee6677'\n";
    }
    const std::string command = "cd '" + dir.string() + "' && gnuplot results.gp 2>&1";
    if (std::system(command.c_str()) != 0)
        std::fprintf(stderr, "warning: gnuplot failed or is missing (apt-get install gnuplot-nox): no results.png\n");
    else
        std::printf("wrote %s\n", (dir / "results.png").string().c_str());
}

std::string json_string(const std::string& s) {
    std::string out = "\"";
    for (const char c : s) {
        if (c == '"' || c == '\\') out += '\\';
        out += c;
    }
    return out + "\"";
}

int run(int argc, char** argv) {
    const Settings s = parse_settings(argc, argv);
    try {
        const auto run_start = Clock::now();
        fs::create_directories(s.out_dir);
        npft::require(static_cast<int>(!s.hf.empty()) + static_cast<int>(!s.model.empty()) + static_cast<int>(s.large) <= 1,
                      "--hf, --model and --large exclude each other");
        std::optional<HfModel> hf;
        if (!s.hf.empty()) {
            hf = load_hf_model(s.hf, s.hf_context);
            std::printf("Hugging Face checkpoint %s: %s; tokenizer %s (%d tokens)\n", s.hf.string().c_str(), hf->config.describe().c_str(),
                        hf->tokenizer.source().c_str(), hf->tokenizer.vocab_size());
        }
        std::optional<ReferenceModel> reference;
        if (!s.model.empty()) {
            reference = load_reference_model(s.model);
            std::printf("reference model %s: %s; vocabulary %s\n", s.model.string().c_str(), reference->config.describe().c_str(),
                        reference->tokenizer ? ("SentencePiece, " + std::to_string(reference->tokenizer->vocab_size()) + " pieces").c_str()
                                             : "bytes");
        }
        const tiny_llama::Config config = hf ? hf->config : reference ? reference->config : s.config();

        // ---- corpus
        const kjv::Corpus corpus = s.text_file.empty() ? kjv::load_kjv(s.out_dir / "kjv.txt")
                                                       : kjv::split_text(kjv::read_text_file(s.text_file), s.text_file);
        std::optional<tiny_llama::SubwordTokenizer> subword;
        if (hf) subword.emplace(hf->tokenizer);
        if (reference && reference->tokenizer) subword.emplace(*reference->tokenizer);
        const tiny_llama::ByteTokenizer bytes;
        const tiny_llama::Tokenizer& tokenizer = subword ? static_cast<const tiny_llama::Tokenizer&>(*subword) : bytes;
        const auto train_tokens = tokenizer.encode(corpus.train);
        const auto test_tokens = tokenizer.encode(corpus.test);
        if (subword) std::printf("tokenized: train %zu tokens, test %zu tokens\n", train_tokens.size(), test_tokens.size());
        std::printf("corpus %s: train %zu bytes, validation %zu bytes, test %zu bytes (%.1f%% of the test bytes lie in "
                    "32-byte spans found verbatim in the training split)\n", corpus.name.c_str(), corpus.train.size(),
                    corpus.validation.size(), corpus.test.size(), 100.0 * corpus::verbatim_share(corpus.test, corpus.train));
        const auto test = s.eval_windows == 0
                              ? tiny_llama::whole_text_batches(test_tokens, config.context + 1, 16)
                              : tiny_llama::evaluation_batches(test_tokens, config.context + 1, s.eval_windows, 16);
        Index test_predictions = 0, test_windows = 0;
        for (const auto& b : test) {
            test_predictions += b.count() * b.positions();
            test_windows += b.count();
        }

        // ---- the fp32 model: the Hugging Face checkpoint, or trained here, or a cached checkpoint with the same key
        const Checkpoint checkpoint = checkpoint_for(config, s.seed, s.pretraining, corpus.train);
        const fs::path checkpoint_path = s.out_dir / checkpoint.file;
        std::optional<tiny_llama::Weights> cached = hf          ? std::move(hf->weights)
                                                    : reference ? std::move(reference->weights)
                                                                : load_checkpoint(checkpoint, config, {s.out_dir});
        double train_seconds = 0.0;
        Model model(config, cached ? std::move(*cached) : tiny_llama::initial_weights(config, s.seed));
        model.set_threads(s.threads);
        std::printf("model: %td layers, dim %td, %td heads, hidden %td, context %td: %td parameters (%td in linear layers)\n",
                    config.layers, config.dim, config.heads, config.hidden, config.context,
                    model.weights().parameter_count(), config.layers * (4 * config.dim * config.dim + 3 * config.dim * config.hidden));
        if (hf) {
            std::printf("fp32 model: the Hugging Face checkpoint (no pre-training)\n");
        } else if (reference) {
            std::printf("fp32 model: the reference model %s (no pre-training; trained as: %s)\n", s.model.string().c_str(),
                        reference->key.c_str());
        } else if (cached) {
            std::printf("fp32 model: loaded the cached checkpoint %s\n", checkpoint_path.string().c_str());
        } else {
            std::printf("fp32 model: training %td steps of %td x %td bytes\n", s.pretraining.steps, s.pretraining.batch,
                        config.context + 1);
            std::fflush(stdout);
            const auto start = Clock::now();
            pretrain(model, train_tokens, s.pretraining, s.seed);
            train_seconds = seconds_since(start);
            tiny_llama::save_weights(checkpoint_path, config, model.weights(), checkpoint.key);
        }
        const auto fp32_evaluation = tiny_llama::evaluate(model, test, tokenizer);
        const double fp32_ppl = fp32_evaluation.perplexity();
        std::printf("fp32 test perplexity %.4f per %s (%.3f bits/byte) on %td predictions (%td windows, %s)\n", fp32_ppl,
                    subword ? "token" : "byte", fp32_evaluation.bits_per_byte(), test_predictions, test_windows,
                    s.eval_windows == 0 ? "the whole test split, stride = context" : "a sample of the test split");
        std::fflush(stdout);

        // ---- calibration: Fisher from squared per-sequence gradients, GPTQ Hessians from the layer inputs
        const npft::RandomKey calibration_key{s.seed, npft::make_stream(0x63616c)};  // "cal"
        std::vector<Batch> calibration;
        for (Index i = 0; i < s.calibration_sequences; ++i)
            calibration.push_back(tiny_llama::random_windows(train_tokens, 1, config.context + 1, calibration_key,
                                                             static_cast<std::uint64_t>(i)));
        auto calibration_start = Clock::now();
        const auto fisher = npft::hessian::DiagonalFisher::compute(model, calibration, model.linear_names());
        const auto hessians = gptq_hessians(model, calibration);
        const double calibration_seconds = seconds_since(calibration_start);

        const Int8Column int8_column = s.int8_every_row.value_or(!reference) ? Int8Column::every_row : Int8Column::rtn_rows;
        std::vector<Row> rows;
        for (const int bits : {4, 3}) {
            std::fprintf(stderr, "[quantize] %d-bit baselines\n", bits);
            for (const Index group : {Index{0}, Index{128}}) {
                const npft::quant::Quantizer rtn(npft::quant::UniformGrid(bits, group));
                rows.push_back(quantized_row(int8_column, model, test, tokenizer, fp32_ppl, "rtn", bits, group, [&](const std::string&, const npft::Matrix& w) {
                    return PackedLinear(rtn.quantize(view(w)));
                }));
            }
            for (const Index group : {Index{0}, Index{128}}) {
                const npft::quant::Gptq gptq(npft::quant::UniformGrid(bits, group));
                rows.push_back(quantized_row(int8_column, model, test, tokenizer, fp32_ppl, "gptq", bits, group, [&](const std::string& name, const npft::Matrix& w) {
                    return PackedLinear(gptq.quantize(w, hessians.at(name)));
                }, calibration_seconds));
            }
            const npft::quant::Quantizer kmeans{npft::quant::NonUniformGrid(bits)};
            rows.push_back(quantized_row(int8_column, model, test, tokenizer, fp32_ppl, "nonuniform", bits, 0, [&](const std::string& name, const npft::Matrix& w) {
                return PackedLinear(kmeans.quantize(view(w), view(fisher.at(name))));
            }, calibration_seconds));
            const SparseSelector sparse{npft::outliers::TopFisher{s.sparse_sensitive_fraction},
                                        npft::outliers::TopMagnitude{s.sparse_magnitude_fraction}};
            rows.push_back(quantized_row(int8_column, model, test, tokenizer, fp32_ppl, "nonuniform+dense-sparse", bits, 0,
                                         [&](const std::string& name, const npft::Matrix& w) {
                return PackedLinear(npft::quant::split_dense_sparse(view(w), sparse, npft::quant::NonUniformGrid(bits),
                                                                    view(fisher.at(name))));
            }, calibration_seconds));
        }

        // ---- NPFT: noise on the Fisher outliers, LoRA fine-tuning, then quantization without fp16 outliers.
        // The reference noise (uniform over each row's outlier range) does not depend on the bit width, so one
        // fine-tuned model serves both widths. A control run trains the same LoRA steps with the noise scaled to 0:
        // it separates what the noise does from what a little more training does (this model is not converged).
        const std::vector<Batch> finetune_batches = npft_batches(train_tokens, s.npft, config.context + 1, s.seed);
        // Index 2^30 of the NPFT stream: a draw of its own, apart from every fine-tuning batch.
        const Batch trace_batch = tiny_llama::random_windows(train_tokens, s.trace_sequences, config.context + 1,
                                                             npft_key(s.seed), 1u << 30);
        const tiny_llama::Weights fp32_weights = model.weights();
        Masks masks;
        npft::hessian::TraceEstimate trace_before;
        double npft_ppl = 0.0, control_ppl = 0.0;
        Index outliers = 0, noised = 0;
        for (const bool with_noise : {true, false}) {
            const char* tag = with_noise ? "npft" : "lora";
            NpftPipeline pipeline = npft_pipeline(s.npft, s.seed, with_noise ? 1.0f : 0.0f);

            model.weights() = fp32_weights;
            if (with_noise) {
                std::fprintf(stderr, "[npft] selecting outliers (top %.2f%% by Fisher per matrix), trace before fine-tuning\n",
                             100.0 * s.npft.outlier_fraction);
                pipeline.select(model, calibration);
                for (const auto& name : model.linear_names()) masks.emplace(name, pipeline.selection(name));
                // The reference noise is uniform over each row's outlier range: a row with one outlier gets none.
                for (const auto& [name, mask] : masks) {
                    std::map<Index, Index> per_row;
                    for (const Index p : mask.positions) ++per_row[p / mask.cols];
                    for (const auto& [row, count] : per_row) {
                        outliers += count;
                        if (count > 1) noised += count;
                    }
                }
                std::fprintf(stderr, "[npft] %td outliers, %td of them in rows with more than one (the others get no noise)\n",
                             outliers, noised);
                // How much of RTN's damage the outliers cause: the most NPFT can recover (docs/pipeline.md).
                for (const int bits : {4, 3}) {
                    const auto share = npft::outlier_attribution(model, calibration, npft::quant::UniformGrid(bits, 0), masks);
                    std::fprintf(stderr, "[npft] outlier attribution, %d-bit per-channel RTN, calibration loss: fp32 %.4f, all "
                                 "quantized %.4f, outliers kept exact %.4f, only outliers quantized %.4f: the outliers cause "
                                 "%.0f%% of RTN's damage\n",
                                 bits, share.fp32, share.all_quantized, share.outliers_exact, share.only_outliers_quantized,
                                 100.0 * share.outlier_share());
                }
                trace_before = outlier_trace(model, trace_batch, masks);
                std::fprintf(stderr, "[npft] Tr(H_outliers) before: %.4g +- %.2g (%td probes)\n", trace_before.value,
                             trace_before.standard_error, trace_before.probes);
            }
            std::fprintf(stderr, "[%s] fine-tuning%s: %td stages x %td steps, batch %td x %td bytes, LoRA rank 16 alpha 32, lr %.2g\n",
                         tag, with_noise ? "" : " without noise (control)", s.npft.stages, s.npft.steps, s.npft.batch,
                         config.context + 1, static_cast<double>(s.npft.lr));
            const auto finetune_start = Clock::now();
            if (::isatty(2)) {
                pipeline.fit(model, finetune_batches, calibration, npft::train::progress::bar());
            } else {
                pipeline.fit(model, finetune_batches, calibration, npft::train::progress::lines(25));
            }
            const double finetune_seconds = seconds_since(finetune_start);
            const auto trace_after = outlier_trace(model, trace_batch, masks);
            const double ppl = tiny_llama::perplexity(model, test);
            const double tuned_ppl = ppl;
            (with_noise ? npft_ppl : control_ppl) = ppl;
            std::fprintf(stderr, "[%s] Tr(H_outliers) after: %.4g +- %.2g (%td probes); fine-tuning took %.1f s; fp32 test ppl %.4f\n",
                         tag, trace_after.value, trace_after.standard_error, trace_after.probes, finetune_seconds, ppl);

            calibration_start = Clock::now();
            const auto tuned_fisher = npft::hessian::DiagonalFisher::compute(model, calibration, model.linear_names());
            const double tuned_fisher_seconds = seconds_since(calibration_start);
            for (const int bits : {4, 3}) {
                std::fprintf(stderr, "[quantize] %d-bit after %s\n", bits, with_noise ? "NPFT" : "the control fine-tuning");
                const auto add = [&](Row row) {
                    row.trace_before = trace_before;
                    row.trace_after = trace_after;
                    row.finetune_seconds = finetune_seconds;
                    row.control = !with_noise;
                    rows.push_back(std::move(row));
                };
                for (const Index group : s.finetuned_groups) {
                    const npft::quant::Quantizer rtn(npft::quant::UniformGrid(bits, group));
                    add(quantized_row(int8_column, model, test, tokenizer, tuned_ppl, std::string("rtn+") + tag, bits, group, [&](const std::string&, const npft::Matrix& w) {
                        return PackedLinear(rtn.quantize(view(w)));
                    }, finetune_seconds));
                }
                const npft::quant::Quantizer kmeans{npft::quant::NonUniformGrid(bits)};
                add(quantized_row(int8_column, model, test, tokenizer, tuned_ppl, std::string("nonuniform+") + tag, bits, 0, [&](const std::string& name, const npft::Matrix& w) {
                    return PackedLinear(kmeans.quantize(view(w), view(tuned_fisher.at(name))));
                }, finetune_seconds + tuned_fisher_seconds));
            }
        }
        model.weights() = fp32_weights;

        // ---- report
        std::stable_sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) { return a.bits > b.bits; });
        std::printf("\n%-24s %4s %6s %10s %10s %9s %9s %26s\n", "method", "bits", "group", "test ppl", "int8 act", "bits/w",
                    "seconds", "Tr(H_outliers) before->after");
        std::printf("%-24s %4s %6s %10.4f %10s %9s %9.1f\n", "fp32", "32", "-", fp32_ppl, "-", "32", train_seconds);
        for (const Row& r : rows) {
            std::printf("%-24s %4d %6td %10.4f %10s %9.3f %9.1f", (r.method + (r.control ? "*" : "")).c_str(), r.bits, r.group,
                        r.test_ppl, int8_text(r.test_ppl_int8).c_str(), r.bits_per_weight, r.seconds);
            if (r.trace_before)
                std::printf("   %.3g+-%.1g -> %.3g+-%.1g", r.trace_before->value, r.trace_before->standard_error,
                            r.trace_after->value, r.trace_after->standard_error);
            std::printf("\n");
        }

        std::printf("* control: the same LoRA fine-tuning with the noise scaled to 0 (not one of the issue's methods)\n");
        std::printf("fp32 test perplexity after fine-tuning: %.4f with NPFT, %.4f with the control\n", npft_ppl, control_ppl);

        // results.json: the shape issue 6 fixes, plus extra fields.
        std::string json = "{\"model\": {\"layers\": " + std::to_string(config.layers) + ", \"dim\": " +
                           std::to_string(config.dim) + ", \"params\": " + std::to_string(model.weights().parameter_count()) +
                           ", \"heads\": " + std::to_string(config.heads) + ", \"hidden\": " + std::to_string(config.hidden) +
                           ", \"context\": " + std::to_string(config.context) + ", \"vocab\": " + std::to_string(config.vocab) +
                           "},\n \"corpus\": {\"name\": " + json_string(corpus.name) + ", \"train_bytes\": " +
                           std::to_string(corpus.train.size()) + ", \"test_bytes\": " + std::to_string(corpus.test.size()) +
                           ", \"validation_bytes\": " + std::to_string(corpus.validation.size()) +
                           ", \"test_predictions\": " + std::to_string(test_predictions) +
                           ", \"whole_test_split\": " + (s.eval_windows == 0 ? "true" : "false") + "},\n \"fp32\": {\"test_ppl\": " +
                           json_number(fp32_ppl) + ", \"bits_per_byte\": " + json_number(fp32_evaluation.bits_per_byte()) + ", \"train_seconds\": " + json_number(train_seconds) +
                           ", \"cached\": " + (cached ? "true" : "false") + ", \"npft_test_ppl\": " + json_number(npft_ppl) +
                           ", \"lora_control_test_ppl\": " + json_number(control_ppl) +
                           "},\n \"npft\": {\"stages\": " + std::to_string(s.npft.stages) + ", \"steps_per_stage\": " +
                           std::to_string(s.npft.steps) + ", \"batch\": " + std::to_string(s.npft.batch) +
                           ", \"learning_rate\": " + json_number(static_cast<double>(s.npft.lr)) + ", \"outlier_fraction\": " +
                           json_number(s.npft.outlier_fraction) + ", \"outliers\": " + std::to_string(outliers) +
                           ", \"noised_outliers\": " + std::to_string(noised) +
                           "},\n \"rows\": [";
        for (std::size_t i = 0; i < rows.size(); ++i) {
            const Row& r = rows[i];
            json += std::string(i ? ",\n  " : "\n  ") + "{\"method\": " + json_string(r.method) + ", \"bits\": " +
                    std::to_string(r.bits) + ", \"group\": " + std::to_string(r.group) + ", \"test_ppl\": " +
                    json_number(r.test_ppl) + ", \"gap\": " + json_number(r.gap) +
                    ", \"bits_per_byte\": " + json_number(r.bits_per_byte) + ", \"test_ppl_int8_activations\": " + json_number(r.test_ppl_int8) +
                    ", \"bits_per_weight\": " + json_number(r.bits_per_weight) +
                    ", \"seconds\": " + json_number(r.seconds);
            if (r.trace_before)
                json += ", \"outlier_trace_before\": " + json_number(r.trace_before->value) +
                        ", \"outlier_trace_before_se\": " + json_number(r.trace_before->standard_error) +
                        ", \"outlier_trace_after\": " + json_number(r.trace_after->value) +
                        ", \"outlier_trace_after_se\": " + json_number(r.trace_after->standard_error) +
                        ", \"finetune_seconds\": " + json_number(r.finetune_seconds) +
                        ", \"control\": " + (r.control ? "true" : "false");
            json += "}";
        }
        json += "\n ],\n \"seed\": " + std::to_string(s.seed) + ", \"total_seconds\": " + json_number(seconds_since(run_start)) +
                "}\n";
        std::ofstream(s.out_dir / "results.json") << json;
        std::printf("\nwrote %s\n", (s.out_dir / "results.json").string().c_str());
        plot(s.out_dir, rows);
        return 0;
    } catch (const npft::Error& e) {
        std::fprintf(stderr, "\nerror: %s\n", e.what());
        return 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "\nerror: %s\n", e.what());
        return 1;
    }
}

}  // namespace demo

int main(int argc, char** argv) { return demo::run(argc, argv); }
