// Pre-trains a tiny LLaMA of any shape for a token budget, on 2 threads, resumably: the training state (weights, AdamW
// moments, step; the batches are keyed by seed and step) is saved every few minutes and at the end, and a second run
// with the same command continues from it with the same bits as a run that was never stopped. Ctrl-C saves and exits.
// At the end it writes the weights (reference.safetensors) and evaluates the whole validation and test splits.
//
//   build/examples/reference_model --out runs/ref --layers 6 --dim 256 --heads 8 --hidden 768 --tokens 20000000
#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <unistd.h>

#include "damage_curve.hpp"
#include "demo_setup.hpp"
#include "kjv_corpus.hpp"
#include "tiny_llama/checkpoint.hpp"
#include "tiny_llama/pretraining.hpp"
#include "tiny_llama/subword_tokenizer.hpp"
#include "tiny_llama/tokenizer.hpp"
#include "verbatim_overlap.hpp"

namespace reference {

namespace fs = std::filesystem;
using demo::Clock;
using demo::seconds_since;
using npft::Index;

struct Settings {
    fs::path out_dir = "reference_model";
    fs::path text_file;  // empty: the King James Bible
    tiny_llama::Config config = tiny_llama::Config::small();
    Index tokens = 0;  // training tokens; 0: the recipe's steps as given
    tiny_llama::Pretraining recipe{.steps = 600, .batch = 16, .lr = 2e-3f};
    std::uint64_t seed = 0;
    int threads = 2;
    double checkpoint_minutes = 10.0;
    std::string vocab = "bytes";
    Index snapshot_tokens = 0;  // 0: no snapshots
    bool curve = false;
    Index stop_after = -1;  // stop (saving the state) at this step; -1: run to the end
};

constexpr const char* usage_text =
    " [--out DIR] [--text FILE] [--layers N] [--dim N] [--heads N] [--kv-heads N] [--hidden N] [--context N]\n"
    "       [--vocab bytes|sp:N] [--tokens N | --steps N] [--batch N] [--lr X] [--seed N] [--threads N]\n"
    "       [--checkpoint-minutes X] [--snapshot-tokens N] [--stop-after STEP] [--curve]\n"
    "  --out DIR              training state, weights and log go here; an existing state there is resumed (default\n"
    "                         ./reference_model)\n"
    "  --text FILE            train on this text file (90/5/5 split by lines) instead of the King James Bible\n"
    "  --layers/--dim/--heads/--kv-heads/--hidden/--context   the model (default: the demo's 4/128/4/0/384/128)\n"
    "  --vocab bytes|sp:N     bytes (256 tokens), or a SentencePiece BPE vocabulary of N pieces trained on the training\n"
    "                         split (deterministically; OUT/tokenizer.model, reused when it exists)\n"
    "  --tokens N             training tokens: sets the steps to N / (batch x context), rounded up\n"
    "  --steps N              optimizer steps (default 600); the later of --tokens and --steps counts\n"
    "  --batch N              windows of context + 1 tokens per step (default 16)\n"
    "  --lr X                 peak learning rate (default 0.002; warmup 5%, cosine decay to 10%)\n"
    "  --seed N               initial weights and batches (default 0)\n"
    "  --threads N            threads (default 2); the bits do not depend on it, so a run may resume on another count\n"
    "  --checkpoint-minutes X save the training state every X minutes (default 10)\n"
    "  --snapshot-tokens N    also keep the fp32 weights every N training tokens (OUT/snapshots/), for the curve of\n"
    "                         quantization damage against training length\n"
    "  --stop-after STEP      end this sitting at step STEP, saving the state as Ctrl-C does (the same command without\n"
    "                         it resumes)\n"
    "  --curve                measure, instead of training, the quantization damage of every snapshot and of the final\n"
    "                         weights in OUT (3/4-bit RTN, dense-and-sparse, GPTQ, outlier share) on the validation split;\n"
    "                         writes OUT/curve.json and OUT/curve.png\n";

Settings parse_settings(int argc, char** argv) {
    Settings s;
    demo::CommandLine cl(argc, argv, usage_text);
    Index steps = -1;
    while (cl.next()) {
        if (cl.is("--out")) s.out_dir = cl.value();
        else if (cl.is("--text")) s.text_file = cl.value();
        else if (cl.is("--layers")) s.config.layers = cl.integer();
        else if (cl.is("--dim")) s.config.dim = cl.integer();
        else if (cl.is("--heads")) s.config.heads = cl.integer();
        else if (cl.is("--kv-heads")) s.config.kv_heads = cl.integer();
        else if (cl.is("--hidden")) s.config.hidden = cl.integer();
        else if (cl.is("--context")) s.config.context = cl.integer();
        else if (cl.is("--vocab")) s.vocab = cl.value();
        else if (cl.is("--tokens")) s.tokens = cl.integer(), steps = -1;  // the later of --tokens and --steps wins
        else if (cl.is("--steps")) steps = cl.integer(), s.tokens = 0;
        else if (cl.is("--batch")) s.recipe.batch = cl.integer();
        else if (cl.is("--lr")) s.recipe.lr = cl.real();
        else if (cl.is("--seed")) s.seed = static_cast<std::uint64_t>(cl.integer());
        else if (cl.is("--threads")) s.threads = static_cast<int>(cl.integer());
        else if (cl.is("--checkpoint-minutes")) s.checkpoint_minutes = cl.real();
        else if (cl.is("--snapshot-tokens")) s.snapshot_tokens = cl.integer();
        else if (cl.is("--curve")) s.curve = true;
        else if (cl.is("--stop-after")) s.stop_after = cl.integer();
        else cl.reject();
    }
    if (steps >= 0) s.recipe.steps = steps;
    const Index per_step = s.recipe.batch * s.config.context;
    if (s.tokens > 0 && per_step > 0) s.recipe.steps = (s.tokens + per_step - 1) / per_step;
    return s;
}

inline std::atomic<bool> interrupted{false};
extern "C" inline void on_interrupt(int) { interrupted.store(true); }

std::string format_duration(double seconds) {
    const auto s = static_cast<long long>(seconds);
    char buffer[32];
    std::snprintf(buffer, sizeof buffer, "%lldh%02lldm%02llds", s / 3600, s / 60 % 60, s % 60);
    return buffer;
}

std::string read_file_bytes(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    npft::require(static_cast<bool>(in), "cannot read '", path.string(), "'");
    std::ostringstream bytes;
    bytes << in.rdbuf();
    return bytes.str();
}

/// The vocabulary named by --vocab, and its stable name for the training state's key (for SentencePiece: the piece
/// count and a hash of the model file, so that a retrained or replaced tokenizer.model is never mixed with the state).
struct Vocabulary {
    std::unique_ptr<tiny_llama::Tokenizer> tokenizer;
    std::string key;
};

Vocabulary make_vocabulary(const std::string& vocab, const kjv::Corpus& corpus, const fs::path& out_dir) {
    if (vocab == "bytes") return {std::make_unique<tiny_llama::ByteTokenizer>(), "bytes"};
    npft::require(vocab.starts_with("sp:"), "--vocab must be 'bytes' or 'sp:N' (N SentencePiece pieces), got '", vocab, "'");
    const int pieces = std::stoi(vocab.substr(3));
    npft::require(pieces >= 260 && pieces <= 65536, "--vocab sp:N needs 260 <= N <= 65536 (256 byte-fallback pieces and "
                  "the specials fit), got ", pieces);
    const fs::path model_file = out_dir / "tokenizer.model";
    if (!fs::exists(model_file)) {
        // One sentence per line of the training split only: the validation and test text never shape the vocabulary.
        const fs::path text = out_dir / "train_split.txt";
        npft::io::write_file_atomically(text, std::as_bytes(std::span(corpus.train.data(), corpus.train.size())));
        const auto start = Clock::now();
        std::printf("training a %d-piece SentencePiece BPE vocabulary on the training split...\n", pieces);
        std::fflush(stdout);
        npft::io::train_sentencepiece(std::span<const fs::path>(&text, 1), pieces, model_file);
        std::printf("wrote %s (%.1f s)\n", model_file.string().c_str(), seconds_since(start));
    }
    auto tokenizer = std::make_unique<tiny_llama::SubwordTokenizer>(npft::io::SentencePieceTokenizer::load(model_file));
    npft::require(tokenizer->vocab_size() == pieces, model_file.string(), " has ", tokenizer->vocab_size(),
                  " pieces, but --vocab asks for ", pieces, " (remove it to train a new one)");
    return {std::move(tokenizer), "sentencepiece:" + std::to_string(pieces) + ":" + std::to_string(demo::fnv1a(read_file_bytes(model_file)))};
}

/// --curve: the damage of every weight file in OUT, in order of training tokens.
int measure_curve(const Settings& s, const tiny_llama::Config& config, const kjv::Corpus& corpus,
                  const tiny_llama::Tokenizer& tokenizer, const std::vector<tiny_llama::Token>& train) {
    std::vector<std::pair<Index, fs::path>> files;
    if (fs::exists(s.out_dir / "snapshots"))
        for (const auto& entry : fs::directory_iterator(s.out_dir / "snapshots")) {
            const std::string name = entry.path().filename().string();
            if (name.starts_with("tokens_") && name.ends_with(".safetensors"))
                files.emplace_back(std::stoll(name.substr(7)), entry.path());
        }
    if (fs::exists(s.out_dir / "reference.safetensors"))
        files.emplace_back(s.recipe.steps * s.recipe.batch * config.context, s.out_dir / "reference.safetensors");
    npft::require(!files.empty(), "--curve: no snapshots or reference.safetensors in '", s.out_dir.string(), "'");
    std::sort(files.begin(), files.end());

    const npft::RandomKey calibration_key{s.seed, npft::make_stream(0x63616c)};  // "cal"
    std::vector<tiny_llama::Batch> calibration;
    for (Index i = 0; i < 16; ++i)
        calibration.push_back(tiny_llama::random_windows(train, 1, config.context + 1, calibration_key, static_cast<std::uint64_t>(i)));
    const auto validation = tiny_llama::whole_text_batches(tokenizer.encode(corpus.validation), config.context + 1, 16);

    tiny_llama::Model model(config, s.seed);
    model.set_threads(s.threads);
    std::string json = "[\n";
    std::string table = "# tokens_M fp32_ppl rtn3_gap% rtn4_gap% dense_sparse3_recovered% gptq3_recovered% outlier_share3%\n";
    std::printf("%10s %9s %9s %9s %9s %12s %12s %10s\n", "tokens", "fp32 ppl", "bits/B", "RTN3 gap", "RTN4 gap",
                "D&S3 recov.", "GPTQ3 recov.", "out.share");
    for (std::size_t i = 0; i < files.size(); ++i) {
        const auto& [tokens, path] = files[i];
        const tiny_llama::Weights loaded = tiny_llama::load_weights(path, config);
        std::vector<const npft::Matrix*> from;
        loaded.for_each([&](const std::string&, const npft::Matrix& m) { from.push_back(&m); });
        std::size_t k = 0;
        model.weights().for_each([&](const std::string&, npft::Matrix& m) { m = *from[k++]; });
        DamagePoint p = measure_damage(model, calibration, validation, tokenizer);
        p.tokens = tokens;
        std::printf("%9.1fM %9.3f %9.4f %8.2f%% %8.2f%% %11.1f%% %11.1f%% %9.1f%%\n", 1e-6 * static_cast<double>(tokens),
                    p.fp32_ppl, p.fp32_bits_per_byte, p.gap_percent(p.rtn3_ppl), p.gap_percent(p.rtn4_ppl),
                    100.0 * p.recovered3(p.dense_sparse3_ppl), 100.0 * p.recovered3(p.gptq3_ppl), 100.0 * p.outlier_share3);
        std::fflush(stdout);
        char row[512];
        std::snprintf(row, sizeof row,
                      "  {\"file\": \"%s\", \"tokens\": %td, \"fp32_ppl\": %.6f, \"fp32_bits_per_byte\": %.6f, "
                      "\"rtn3_ppl\": %.6f, \"rtn4_ppl\": %.6f, \"dense_sparse3_ppl\": %.6f, \"gptq3_ppl\": %.6f, "
                      "\"outlier_share3\": %.6f}%s\n",
                      path.filename().string().c_str(), tokens, p.fp32_ppl, p.fp32_bits_per_byte, p.rtn3_ppl, p.rtn4_ppl,
                      p.dense_sparse3_ppl, p.gptq3_ppl, p.outlier_share3, i + 1 < files.size() ? "," : "");
        json += row;
        std::snprintf(row, sizeof row, "%.3f %.5f %.4f %.4f %.3f %.3f %.3f\n", 1e-6 * static_cast<double>(tokens), p.fp32_ppl,
                      p.gap_percent(p.rtn3_ppl), p.gap_percent(p.rtn4_ppl), 100.0 * p.recovered3(p.dense_sparse3_ppl),
                      100.0 * p.recovered3(p.gptq3_ppl), 100.0 * p.outlier_share3);
        table += row;
    }
    json += "]\n";
    const auto write = [](const fs::path& path, const std::string& text) {
        npft::io::write_file_atomically(path, std::as_bytes(std::span(text.data(), text.size())));
    };
    write(s.out_dir / "curve.json", json);
    write(s.out_dir / "curve.dat", table);
    // One panel: 3-bit RTN's perplexity gap and the shares of it that dense-and-sparse and GPTQ close, and the
    // outliers' attributed share, against training tokens. A missing gnuplot costs the picture, not the run.
    const std::string plot =
        "set terminal pngcairo size 900,520\nset output 'curve.png'\nset key top left\nset grid\n"
        "set xlabel 'training tokens (millions)'\nset ylabel 'percent'\nset y2label 'fp32 validation perplexity'\n"
        "set y2tics\nset ytics nomirror\n"
        "set title 'Quantization damage against training length (validation split)'\n"
        "plot 'curve.dat' using 1:3 with linespoints lw 2 title '3-bit RTN: perplexity gap (%)', "
        "'' using 1:4 with linespoints lw 2 title '4-bit RTN: perplexity gap (%)', "
        "'' using 1:5 with linespoints title 'dense-and-sparse 0.45%: share of the 3-bit gap closed (%)', "
        "'' using 1:6 with linespoints title 'GPTQ: share of the 3-bit gap closed (%)', "
        "'' using 1:7 with linespoints dt 2 title 'outliers: attributed share of 3-bit damage (%)', "
        "'' using 1:2 axes x1y2 with linespoints lc rgb 'black' dt 3 title 'fp32 validation perplexity (right axis)'\n";
    write(s.out_dir / "curve.gnuplot", plot);
    const std::string command = "cd '" + s.out_dir.string() + "' && gnuplot curve.gnuplot 2>/dev/null";
    if (std::system(command.c_str()) == 0) std::printf("wrote %s\n", (s.out_dir / "curve.png").string().c_str());
    else std::printf("gnuplot failed or is missing: no curve.png (data in curve.dat)\n");
    std::printf("wrote %s\n", (s.out_dir / "curve.json").string().c_str());
    return 0;
}

int run(int argc, char** argv) {
    const Settings s = parse_settings(argc, argv);
    try {
        npft::require(s.threads >= 1, "--threads must be at least 1, got ", s.threads);
        npft::require(s.snapshot_tokens >= 0, "--snapshot-tokens must not be negative, got ", s.snapshot_tokens);
        fs::create_directories(s.out_dir);
        const kjv::Corpus corpus = s.text_file.empty() ? kjv::load_kjv(s.out_dir / "kjv.txt")
                                                       : kjv::split_text(kjv::read_text_file(s.text_file), s.text_file.string());
        const Vocabulary vocabulary = make_vocabulary(s.vocab, corpus, s.out_dir);
        const tiny_llama::Tokenizer& tokenizer = *vocabulary.tokenizer;
        tiny_llama::Config config = s.config;
        config.vocab = tokenizer.vocab_size();
        config.validate();
        const auto train = tokenizer.encode(corpus.train);
        // What else the state depends on: the vocabulary and the training text.
        const std::string run_key = "vocab=" + vocabulary.key + " text=" + std::to_string(demo::fnv1a(corpus.train));
        if (s.curve) return measure_curve(s, config, corpus, tokenizer, train);

        tiny_llama::Model model(config, s.seed);
        model.set_threads(s.threads);
        tiny_llama::Pretrainer trainer(model, s.recipe, s.seed);
        const fs::path state_path = s.out_dir / "training_state.safetensors";
        if (fs::exists(state_path)) {
            trainer.resume(state_path, run_key);
            std::printf("resumed %s at step %td of %td\n", state_path.string().c_str(), trainer.step(), s.recipe.steps);
        }
        const Index tokens_per_step = s.recipe.batch * config.context;
        std::printf("model %s: %td parameters; %td steps of %td x %td tokens (%.1f M tokens, %.2f epochs of the %zu-token "
                    "training split), %d threads\n",
                    config.describe().c_str(), model.weights().parameter_count(), s.recipe.steps, s.recipe.batch,
                    config.context, 1e-6 * static_cast<double>(s.recipe.steps * tokens_per_step),
                    static_cast<double>(s.recipe.steps * tokens_per_step) / static_cast<double>(train.size()),
                    train.size(), s.threads);
        std::fflush(stdout);

        std::signal(SIGINT, on_interrupt);
        std::signal(SIGTERM, on_interrupt);
        const auto start = Clock::now();
        auto last_save = Clock::now(), last_print = Clock::now();
        const Index first_step = trainer.step();
        double smoothed = 0.0;
        const bool tty = ::isatty(2);
        const double bytes_per_token = static_cast<double>(corpus.train.size()) / static_cast<double>(train.size());
        const auto tokens_after = [&](Index step) { return step * tokens_per_step; };
        while (!trainer.done() && !interrupted.load() && trainer.step() != s.stop_after) {
            const double loss = trainer.train_step(train);
            smoothed = trainer.step() == first_step + 1 ? loss : 0.98 * smoothed + 0.02 * loss;
            if (s.snapshot_tokens > 0 &&
                tokens_after(trainer.step()) / s.snapshot_tokens > tokens_after(trainer.step() - 1) / s.snapshot_tokens) {
                char name[64];
                std::snprintf(name, sizeof name, "tokens_%010td.safetensors", tokens_after(trainer.step()));
                fs::create_directories(s.out_dir / "snapshots");
                tiny_llama::save_weights(s.out_dir / "snapshots" / name, config, model.weights(),
                                         run_key + " step=" + std::to_string(trainer.step()));
            }
            if (seconds_since(last_save) >= 60.0 * s.checkpoint_minutes) {
                trainer.save(state_path, run_key);
                last_save = Clock::now();
            }
            if (seconds_since(last_print) >= (tty ? 1.0 : 30.0) || trainer.done()) {
                const double elapsed = seconds_since(start);
                const auto done_here = static_cast<double>(trainer.step() - first_step);
                const double tokens_per_second = done_here * static_cast<double>(tokens_per_step) / elapsed;
                const double eta = elapsed / done_here * static_cast<double>(s.recipe.steps - trainer.step());
                std::fprintf(stderr, "%s[train] step %td/%td  loss %.4f (%.3f bits/byte)  lr %.2g  %.0f tokens/s  %s, eta %s%s",
                             tty ? "\r" : "", trainer.step(), s.recipe.steps, smoothed,
                             smoothed / std::log(2.0) / bytes_per_token,
                             static_cast<double>(trainer.last_learning_rate()), tokens_per_second,
                             format_duration(elapsed).c_str(), format_duration(eta).c_str(), tty ? "   " : "\n");
                last_print = Clock::now();
            }
        }
        if (tty) std::fprintf(stderr, "\n");
        trainer.save(state_path, run_key);
        if (!trainer.done()) {
            std::printf("interrupted at step %td: state saved to %s; the same command resumes\n", trainer.step(),
                        state_path.string().c_str());
            return 130;
        }
        // The fp32 weights, and the bf16 ones that ship: from here on the reference model IS the bf16-rounded one.
        const std::string weights_key = run_key + " " + s.recipe.describe() + " seed=" + std::to_string(s.seed);
        const fs::path f32_path = s.out_dir / "reference_f32.safetensors", weights_path = s.out_dir / "reference.safetensors";
        tiny_llama::save_weights(f32_path, config, model.weights(), weights_key);
        tiny_llama::save_weights(weights_path, config, model.weights(), weights_key, tiny_llama::WeightStorage::bf16);
        {   // copied into the existing matrices: the trainer's parameter views point at their storage
            const tiny_llama::Weights shipped = tiny_llama::load_weights(weights_path, config);
            std::vector<const npft::Matrix*> from;
            shipped.for_each([&](const std::string&, const npft::Matrix& m) { from.push_back(&m); });
            std::size_t i = 0;
            model.weights().for_each([&](const std::string&, npft::Matrix& m) { m = *from[i++]; });
        }
        std::printf("wrote %s (fp32) and %s (bf16, %.1f MB; evaluated below)\n", f32_path.string().c_str(),
                    weights_path.string().c_str(), 1e-6 * static_cast<double>(fs::file_size(weights_path)));
        for (const auto& [name, text] : {std::pair{"validation", &corpus.validation}, std::pair{"test", &corpus.test}}) {
            const auto batches = tiny_llama::whole_text_batches(tokenizer.encode(*text), config.context + 1, 16);
            const auto e = tiny_llama::evaluate(model, batches, tokenizer);
            std::printf("%s split (whole, %td predictions; %.1f%% of its bytes in 32-byte spans verbatim in training): "
                        "perplexity %.4f, %.4f bits/byte\n",
                        name, e.predictions, 100.0 * corpus::verbatim_share(*text, corpus.train), e.perplexity(),
                        e.bits_per_byte());
        }
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "\nerror: %s\n", e.what());
        return 1;
    }
}

}  // namespace reference

int main(int argc, char** argv) { return reference::run(argc, argv); }
