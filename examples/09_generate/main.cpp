// Greedy continuation of a prompt by the reference model, in fp32 and with every linear layer 4-bit (RTN, groups of
// 128, int8 activations: the kernels' default), through the key/value cache of tiny_llama/decode.hpp: the prompt in one
// pass, then one token at a time. Its speed is measured by benchmarks/bench_model.cpp, not here.
//
//   build/examples/generate [--model models/reference-a] [--prompt TEXT] [--tokens 40] [--threads 1]
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include <npft/core/error.hpp>
#include <npft/quant/quantizer.hpp>
#include <npft/quant/uniform.hpp>

#include "reference_checkpoint.hpp"
#include "tiny_llama/decode.hpp"
#include "tiny_llama/model.hpp"
#include "tiny_llama/quantized_model.hpp"

namespace {

struct Settings {
    std::filesystem::path model = "models/reference-a";
    std::string prompt = "In the beginning God created";
    npft::Index tokens = 40;
    int threads = 1;
};

Settings parse(int argc, char** argv) {
    Settings s;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        npft::require(i + 1 < argc, "option ", arg, " needs a value (usage: generate [--model DIR] [--prompt TEXT] ",
                      "[--tokens N] [--threads T])");
        const std::string value = argv[++i];
        if (arg == "--model") s.model = value;
        else if (arg == "--prompt") s.prompt = value;
        else if (arg == "--tokens") s.tokens = std::stol(value);
        else if (arg == "--threads") s.threads = std::stoi(value);
        else npft::fail("unknown option ", arg);
    }
    npft::require(s.tokens >= 1, "--tokens must be at least 1, got ", s.tokens);
    return s;
}

/// The prompt, then `count` greedy tokens (fewer when the context fills up).
template <class AnyModel>
std::vector<tiny_llama::Token> continue_greedily(const AnyModel& model, const tiny_llama::Config& config,
                                                  const std::vector<tiny_llama::Token>& prompt, npft::Index count) {
    tiny_llama::KvCache cache(config);
    std::vector<tiny_llama::Token> out;
    tiny_llama::Token next = tiny_llama::argmax_token(tiny_llama::extend(model, {prompt}, cache, tiny_llama::LogitRows::last), 0);
    for (npft::Index i = 0; i < count; ++i) {
        out.push_back(next);
        if (cache.length() == cache.capacity() || i + 1 == count) break;
        next = tiny_llama::argmax_token(tiny_llama::extend(model, {{next}}, cache), 0);
    }
    return out;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        const Settings s = parse(argc, argv);
        demo::ReferenceModel reference = demo::load_reference_model(s.model);
        npft::require(reference.tokenizer.has_value(), "this example needs a SentencePiece model (tokenizer.model)");
        const tiny_llama::Config config = reference.config;
        tiny_llama::Model model(config, std::move(reference.weights));
        model.set_threads(s.threads);

        tiny_llama::QuantizedModel quantized(model);
        const npft::quant::Quantizer rtn(npft::quant::UniformGrid(4, 128));
        for (npft::Index l = 0; l < config.layers; ++l)
            for (const auto kind : tiny_llama::linear_kinds)
                quantized.set_linear(tiny_llama::linear_name(l, kind),
                                     tiny_llama::PackedLinear(rtn.quantize(model.weights().layers[static_cast<std::size_t>(l)].linear(kind))));
        quantized.set_multiply_options({.threads = s.threads});

        const auto& tokenizer = *reference.tokenizer;
        const std::vector<tiny_llama::Token> prompt = tokenizer.encode(s.prompt);
        npft::require(!prompt.empty() && static_cast<npft::Index>(prompt.size()) < config.context, "the prompt must encode to 1 to ",
                      config.context - 1, " tokens, got ", prompt.size());
        std::printf("model %s (%s), prompt of %zu tokens:\n  %s\n\n", s.model.string().c_str(), config.describe().c_str(),
                    prompt.size(), s.prompt.c_str());
        std::printf("fp32:\n  %s...\n\n", tokenizer.decode(continue_greedily(model, config, prompt, s.tokens)).c_str());
        std::printf("u4g128 RTN, int8 activations (%.2f bits per weight):\n  %s...\n", quantized.bits_per_weight(),
                    tokenizer.decode(continue_greedily(quantized, config, prompt, s.tokens)).c_str());
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "generate: %s\n", e.what());
        return 1;
    }
}
