// Pre-trains a tiny LLaMA of any shape for a token budget, on 2 threads, resumably: the training state (weights, AdamW
// moments, step; the batches are keyed by seed and step) is saved every few minutes and at the end, and a second run
// with the same command continues from it with the same bits as a run that was never stopped. Ctrl-C saves and exits.
// At the end it writes the weights (reference.safetensors) and evaluates the whole validation and test splits.
//
//   build/examples/reference_model --out runs/ref --layers 6 --dim 256 --heads 8 --hidden 768 --tokens 20000000
#include <atomic>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <string>

#include <unistd.h>

#include "demo_setup.hpp"
#include "kjv_corpus.hpp"
#include "tiny_llama/checkpoint.hpp"
#include "tiny_llama/pretraining.hpp"
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
};

constexpr const char* usage_text =
    " [--out DIR] [--text FILE] [--layers N] [--dim N] [--heads N] [--kv-heads N] [--hidden N] [--context N]\n"
    "       [--vocab bytes] [--tokens N | --steps N] [--batch N] [--lr X] [--seed N] [--threads N] [--checkpoint-minutes X]\n"
    "  --out DIR              training state, weights and log go here; an existing state there is resumed (default\n"
    "                         ./reference_model)\n"
    "  --text FILE            train on this text file (90/5/5 split by lines) instead of the King James Bible\n"
    "  --layers/--dim/--heads/--kv-heads/--hidden/--context   the model (default: the demo's 4/128/4/0/384/128)\n"
    "  --vocab bytes          the vocabulary; byte-level is the only one so far\n"
    "  --tokens N             training tokens: sets the steps to N / (batch x context), rounded up\n"
    "  --steps N              optimizer steps (default 600); the later of --tokens and --steps counts\n"
    "  --batch N              windows of context + 1 tokens per step (default 16)\n"
    "  --lr X                 peak learning rate (default 0.002; warmup 5%, cosine decay to 10%)\n"
    "  --seed N               initial weights and batches (default 0)\n"
    "  --threads N            threads (default 2); the bits do not depend on it, so a run may resume on another count\n"
    "  --checkpoint-minutes X save the training state every X minutes (default 10)\n";

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

int run(int argc, char** argv) {
    const Settings s = parse_settings(argc, argv);
    try {
        s.config.validate();
        npft::require(s.vocab == "bytes", "vocabulary '", s.vocab, "' is not available; only 'bytes' is");
        npft::require(s.threads >= 1, "--threads must be at least 1, got ", s.threads);
        npft::require(s.config.vocab == 256, "a byte vocabulary has 256 tokens");
        fs::create_directories(s.out_dir);
        const kjv::Corpus corpus = s.text_file.empty() ? kjv::load_kjv(s.out_dir / "kjv.txt")
                                                       : kjv::split_text(kjv::read_text_file(s.text_file), s.text_file.string());
        const tiny_llama::ByteTokenizer tokenizer;
        const auto train = tokenizer.encode(corpus.train);
        // What else the state depends on: the vocabulary and the training text.
        const std::string run_key = "vocab=" + tokenizer.describe() + " text=" + std::to_string(demo::fnv1a(corpus.train));

        tiny_llama::Model model(s.config, s.seed);
        model.set_threads(s.threads);
        tiny_llama::Pretrainer trainer(model, s.recipe, s.seed);
        const fs::path state_path = s.out_dir / "training_state.safetensors";
        if (fs::exists(state_path)) {
            trainer.resume(state_path, run_key);
            std::printf("resumed %s at step %td of %td\n", state_path.string().c_str(), trainer.step(), s.recipe.steps);
        }
        const Index tokens_per_step = s.recipe.batch * s.config.context;
        std::printf("model %s: %td parameters; %td steps of %td x %td tokens (%.1f M tokens, %.2f epochs of %zu training "
                    "bytes), %d threads\n",
                    s.config.describe().c_str(), model.weights().parameter_count(), s.recipe.steps, s.recipe.batch,
                    s.config.context, 1e-6 * static_cast<double>(s.recipe.steps * tokens_per_step),
                    static_cast<double>(s.recipe.steps * tokens_per_step) / static_cast<double>(train.size()),
                    corpus.train.size(), s.threads);
        std::fflush(stdout);

        std::signal(SIGINT, on_interrupt);
        std::signal(SIGTERM, on_interrupt);
        const auto start = Clock::now();
        auto last_save = Clock::now(), last_print = Clock::now();
        const Index first_step = trainer.step();
        double smoothed = 0.0;
        const bool tty = ::isatty(2);
        while (!trainer.done() && !interrupted.load()) {
            const double loss = trainer.train_step(train);
            smoothed = trainer.step() == first_step + 1 ? loss : 0.98 * smoothed + 0.02 * loss;
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
                             tty ? "\r" : "", trainer.step(), s.recipe.steps, smoothed, smoothed / std::log(2.0),
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
        const fs::path weights_path = s.out_dir / "reference.safetensors";
        tiny_llama::save_weights(weights_path, s.config, model.weights(),
                                 run_key + " " + s.recipe.describe() + " seed=" + std::to_string(s.seed));
        std::printf("wrote %s\n", weights_path.string().c_str());
        for (const auto& [name, text] : {std::pair{"validation", &corpus.validation}, std::pair{"test", &corpus.test}}) {
            const auto batches = tiny_llama::whole_text_batches(tokenizer.encode(*text), s.config.context + 1, 16);
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
