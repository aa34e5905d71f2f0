// npft-export: a tiny-LLaMA checkpoint in, a GGUF file for llama.cpp out; and the other way, a GGUF file evaluated
// by npft, for comparing npft's numbers with llama.cpp's on the same weights (scripts/interop.sh).
//
//   npft-export --out FILE.gguf [--checkpoint FILE.safetensors | --hf DIR | --demo] [--type T] [--embedding T] [--output T]
//   npft-export --evaluate FILE.gguf [--windows FILE]
//
// T is F32, F16, BF16, Q8_0 or Q4_0 (Q4_0 and Q8_0 quantize with ggml's own rule: npft::quant::GgmlQ4_0Grid).
// --hf DIR exports a Hugging Face LLaMA checkpoint folder (tiny_llama/hf_checkpoint.hpp) with its tokenizer.model's
// vocabulary (SentencePiece, when this build links npft::sentencepiece; otherwise the file has no tokenizer keys and
// the program says so).
// --demo exports the demos' fp32 model (the cached checkpoint of end_to_end's settings, trained here when absent).
// --evaluate prints npft's test perplexity of the file's weights (decoded as llama.cpp decodes them) and, with
// --windows, writes the test windows as lines of token ids.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>

#include "demo_setup.hpp"
#include "kjv_corpus.hpp"
#include "tiny_llama/gguf_export.hpp"
#include "tiny_llama/hf_checkpoint.hpp"

namespace fs = std::filesystem;
using namespace demo;
using tiny_llama::gguf::TensorType;

namespace {

struct Settings {
    fs::path out, checkpoint, hf, evaluate, windows, text_file;
    fs::path out_dir = program_dir();
    bool demo = false, large = false;
    std::uint64_t seed = 1;
    Pretraining pretraining;
    npft::Index eval_windows = 64;
    tiny_llama::GgufTypes types;
};

constexpr const char* usage_text =
    " --out FILE.gguf [--checkpoint FILE.safetensors | --hf DIR | --demo] [--type T] [--embedding T] [--output T]\n"
    "       | --evaluate FILE.gguf [--windows FILE]\n"
    "  --out FILE          the GGUF file to write\n"
    "  --checkpoint FILE   a tiny_llama safetensors checkpoint (as the demos save it)\n"
    "  --hf DIR            a Hugging Face LLaMA checkpoint folder (config.json, model.safetensors or shards)\n"
    "  --demo              the demos' fp32 model (cached under --dir, trained when absent; with --large, --seed,\n"
    "                      --train-steps N as end_to_end takes them)\n"
    "  --type T            GGUF type of the attention and MLP matrices: F32 (default), F16, BF16, Q8_0, Q4_0\n"
    "  --embedding T       type of token_embd (default F32)\n"
    "  --output T          type of the output head (default F32)\n"
    "  --evaluate FILE     print npft's test perplexity of a GGUF model's weights\n"
    "  --windows FILE      with --evaluate: write the test windows, one line of token ids each\n"
    "  --eval-windows N    test windows to evaluate (default 64)\n"
    "  --text FILE         a plain text instead of the King James Bible\n"
    "  --dir DIR           where the corpus and the demo checkpoints are cached (default: the program's folder)\n";

TensorType parse_type_or_exit(CommandLine& cl) {
    const std::string v = cl.value();
    const auto t = tiny_llama::gguf::parse_type(v);
    if (!t || *t == TensorType::q4_1) {
        std::fprintf(stderr, "unknown or unsupported GGUF type '%s' (F32, F16, BF16, Q8_0, Q4_0)\n", v.c_str());
        cl.usage(2);
    }
    return *t;
}

Settings parse_settings(int argc, char** argv) {
    Settings s;
    CommandLine cl(argc, argv, usage_text);
    while (cl.next()) {
        if (cl.is("--out")) s.out = cl.value();
        else if (cl.is("--checkpoint")) s.checkpoint = cl.value();
        else if (cl.is("--demo")) s.demo = true;
        else if (cl.is("--hf")) s.hf = cl.value();
        else if (cl.is("--large")) s.large = true;
        else if (cl.is("--seed")) s.seed = static_cast<std::uint64_t>(cl.integer());
        else if (cl.is("--train-steps")) s.pretraining.steps = cl.integer();
        else if (cl.is("--type")) s.types.linear = parse_type_or_exit(cl);
        else if (cl.is("--embedding")) s.types.embedding = parse_type_or_exit(cl);
        else if (cl.is("--output")) s.types.output = parse_type_or_exit(cl);
        else if (cl.is("--evaluate")) s.evaluate = cl.value();
        else if (cl.is("--windows")) s.windows = cl.value();
        else if (cl.is("--eval-windows")) s.eval_windows = cl.integer();
        else if (cl.is("--text")) s.text_file = cl.value();
        else if (cl.is("--dir")) s.out_dir = cl.value();
        else cl.reject();
    }
    if (s.evaluate.empty() == s.out.empty()) {
        std::fprintf(stderr, "give exactly one of --out and --evaluate\n");
        cl.usage(2);
    }
    if (!s.out.empty() && int{s.demo} + int{!s.checkpoint.empty()} + int{!s.hf.empty()} != 1) {
        std::fprintf(stderr, "--out needs exactly one of --checkpoint, --hf and --demo\n");
        cl.usage(2);
    }
    return s;
}

/// The config a tiny_llama checkpoint records (Config::describe's "key=value" list).
tiny_llama::Config config_from_description(const std::string& text) {
    std::map<std::string, std::string> fields;
    std::istringstream in(text);
    for (std::string item; in >> item;) {
        const auto eq = item.find('=');
        npft::require(eq != std::string::npos, "checkpoint config '", text, "' is not a list of key=value");
        fields[item.substr(0, eq)] = item.substr(eq + 1);
    }
    const auto field = [&](const char* key) -> const std::string& {
        const auto it = fields.find(key);
        npft::require(it != fields.end(), "checkpoint config '", text, "' has no ", key);
        return it->second;
    };
    tiny_llama::Config c;
    c.vocab = std::stoll(field("vocab"));
    c.layers = std::stoll(field("layers"));
    c.dim = std::stoll(field("dim"));
    c.heads = std::stoll(field("heads"));
    c.hidden = std::stoll(field("hidden"));
    c.context = std::stoll(field("context"));
    c.rope_theta = std::stof(field("rope_theta"));
    c.norm_eps = std::stof(field("norm_eps"));
    if (fields.contains("kv_heads")) c.kv_heads = std::stoll(field("kv_heads"));
    npft::require(c.describe() == text, "checkpoint config '", text, "' does not read back as the same config");
    return c;
}

kjv::Corpus load_corpus(const Settings& s) {
    return s.text_file.empty() ? kjv::load_kjv(s.out_dir / "kjv.txt") : kjv::split_text(kjv::read_text_file(s.text_file), s.text_file);
}

int export_model(const Settings& s) {
    tiny_llama::Config config = s.large ? tiny_llama::Config::large() : tiny_llama::Config::small();
    tiny_llama::Weights weights;
    std::optional<npft::io::SentencePieceTokenizer> tokenizer;
    tiny_llama::SpecialTokenFlags flags;
    if (!s.hf.empty()) {
        tiny_llama::HfCheckpoint hf = tiny_llama::load_hf_checkpoint(s.hf);
        config = hf.config;
        weights = std::move(hf.weights);
        tokenizer = std::move(hf.tokenizer);
        flags = {hf.add_bos, hf.add_eos};
        std::printf("Hugging Face checkpoint %s: %s\n", s.hf.string().c_str(), config.describe().c_str());
        if (tokenizer)
            std::printf("tokenizer %s: %d SentencePiece tokens (add <s>: %s, add </s>: %s)\n", tokenizer->source().c_str(),
                        tokenizer->vocab_size(), flags.add_bos ? "yes" : "no", flags.add_eos ? "yes" : "no");
        else
            std::printf("warning: no tokenizer written (%s): llama.cpp needs tokenizer keys added to the file\n",
                        fs::exists(s.hf / "tokenizer.model") ? "this build has no SentencePiece: install libsentencepiece-dev and rebuild"
                                                              : "the folder has no tokenizer.model");
    } else if (!s.checkpoint.empty()) {
        const auto file = npft::io::SafetensorsFile::load(s.checkpoint);
        config = config_from_description(file.metadata("config"));
        weights = tiny_llama::load_weights(s.checkpoint, config);
        std::printf("checkpoint %s: %s\n", s.checkpoint.string().c_str(), config.describe().c_str());
    } else {
        fs::create_directories(s.out_dir);
        const kjv::Corpus corpus = load_corpus(s);
        const Checkpoint checkpoint = checkpoint_for(config, s.seed, s.pretraining, corpus.train);
        if (auto cached = load_checkpoint(checkpoint, config, {s.out_dir})) {
            weights = std::move(*cached);
            std::printf("demo model: the cached checkpoint %s\n", (s.out_dir / checkpoint.file).string().c_str());
        } else {
            std::printf("demo model: training %td steps (no cached checkpoint %s)\n", s.pretraining.steps, checkpoint.file.c_str());
            std::fflush(stdout);
            tiny_llama::Model model(config, tiny_llama::initial_weights(config, s.seed));
            pretrain(model, tiny_llama::byte_tokens(corpus.train), s.pretraining, s.seed);
            tiny_llama::save_weights(s.out_dir / checkpoint.file, config, model.weights(), checkpoint.key);
            weights = model.weights();
        }
    }
    const auto start = Clock::now();
    const bool tty = ::isatty(2);
    tiny_llama::save_gguf(s.out, config, weights, s.types, "npft tiny_llama", [tty](const std::string& name, std::size_t done, std::size_t total) {
        if (tty) std::fprintf(stderr, "\r[export] %zu/%zu %-28s", done, total, name.c_str());
        if (tty && done == total) std::fputc('\n', stderr);
    }, tokenizer ? &*tokenizer : nullptr, flags);
    // Sizes as the file stores them: bits per weight of each class over its weights.
    const auto file = tiny_llama::gguf::File::load(s.out);
    std::map<std::string, std::pair<double, double>> classes;  // class -> (bytes, weights)
    double bytes = 0.0, count = 0.0;
    for (const auto& t : file.tensors()) {
        const std::string cls = t.name == "token_embd.weight" ? "embedding" : t.name == "output.weight" ? "output" : t.name.ends_with("norm.weight") ? "norms" : "linear";
        classes[cls].first += static_cast<double>(t.bytes);
        classes[cls].second += static_cast<double>(t.count);
        bytes += static_cast<double>(t.bytes);
        count += static_cast<double>(t.count);
    }
    std::printf("wrote %s in %.2f s: %zu tensors, %.0f weights, %.0f bytes of tensor data (file %ju bytes)\n", s.out.string().c_str(),
                seconds_since(start), file.tensors().size(), count, bytes, static_cast<std::uintmax_t>(fs::file_size(s.out)));
    for (const auto& [cls, v] : classes)
        std::printf("  %-10s %10.0f weights  %10.0f bytes  %6.3f bits/weight\n", cls.c_str(), v.second, v.first, 8.0 * v.first / v.second);
    std::printf("  %-10s %10.0f weights  %10.0f bytes  %6.3f bits/weight\n", "all", count, bytes, 8.0 * bytes / count);
    return 0;
}

int evaluate_model(const Settings& s) {
    const auto file = tiny_llama::gguf::File::load(s.evaluate);
    const tiny_llama::Config config = tiny_llama::config_from_gguf(file);
    const tiny_llama::Model model(config, tiny_llama::weights_from_gguf(file, config));
    const kjv::Corpus corpus = load_corpus(s);
    const auto test = tiny_llama::evaluation_batches(tiny_llama::byte_tokens(corpus.test), config.context + 1, s.eval_windows, 16);
    const double ppl = tiny_llama::perplexity(model, test);
    npft::Index windows = 0;
    for (const auto& b : test) windows += b.count();
    std::printf("npft test perplexity %.6f on %td windows of %td tokens (%s)\n", ppl, windows, config.context + 1, s.evaluate.string().c_str());
    if (!s.windows.empty()) {
        std::ofstream out(s.windows);
        for (const auto& b : test)
            for (const auto& sequence : b.sequences) {
                for (std::size_t i = 0; i < sequence.size(); ++i) out << (i ? " " : "") << sequence[i];
                out << '\n';
            }
        npft::require(static_cast<bool>(out), "writing '", s.windows.string(), "' failed");
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    const Settings s = parse_settings(argc, argv);
    try {
        return s.evaluate.empty() ? export_model(s) : evaluate_model(s);
    } catch (const npft::Error& e) {
        std::fprintf(stderr, "npft-export: %s\n", e.what());
        return 1;
    }
}
