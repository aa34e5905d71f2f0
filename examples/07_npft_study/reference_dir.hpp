#pragma once
// A study model: a folder with reference.safetensors (tiny_llama/checkpoint.hpp's format, the config in its metadata)
// and, when its vocabulary is SentencePiece, tokenizer.model; without one the vocabulary is bytes.
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <sstream>
#include <string>

#include <npft/io/safetensors.hpp>
#include <npft/io/sentencepiece.hpp>

#include "demo_setup.hpp"
#include "tiny_llama/checkpoint.hpp"
#include "tiny_llama/subword_tokenizer.hpp"
#include "tiny_llama/tokenizer.hpp"

namespace npft_study {

/// The inverse of Config::describe(): "vocab=256 layers=4 dim=128 ..." back into a Config (unknown fields are an error).
inline tiny_llama::Config parse_config(const std::string& text, const std::string& where) {
    tiny_llama::Config c;
    std::istringstream in(text);
    std::string item;
    while (in >> item) {
        const auto eq = item.find('=');
        npft::require(eq != std::string::npos, where, ": config item '", item, "' is not name=value");
        const std::string name = item.substr(0, eq), value = item.substr(eq + 1);
        try {
            if (name == "vocab") c.vocab = std::stoll(value);
            else if (name == "layers") c.layers = std::stoll(value);
            else if (name == "dim") c.dim = std::stoll(value);
            else if (name == "heads") c.heads = std::stoll(value);
            else if (name == "kv_heads") c.kv_heads = std::stoll(value);
            else if (name == "hidden") c.hidden = std::stoll(value);
            else if (name == "context") c.context = std::stoll(value);
            else if (name == "rope_theta") c.rope_theta = std::stof(value);
            else if (name == "norm_eps") c.norm_eps = std::stof(value);
            else npft::fail(where, ": unknown config field '", name, "'");
        } catch (const std::logic_error&) {
            npft::fail(where, ": config field '", name, "' has the value '", value, "', not a number");
        }
    }
    c.validate();
    return c;
}

struct ReferenceDir {
    std::filesystem::path dir;
    std::string id;  // "<folder name>-<8 hex of the checkpoint's key and config>": a cell key token
    tiny_llama::Config config;
    std::filesystem::path weights_path;
    std::unique_ptr<tiny_llama::Tokenizer> tokenizer;  // loaded by load_tokenizer()

    /// Reads the folder's metadata (cheap: no weights yet).
    static ReferenceDir open(const std::filesystem::path& dir) {
        ReferenceDir r;
        r.dir = dir;
        r.weights_path = dir / "reference.safetensors";
        npft::require(std::filesystem::exists(r.weights_path), "--model ", dir.string(), ": no reference.safetensors in it");
        const auto file = npft::io::SafetensorsFile::load(r.weights_path);
        npft::require(file.metadata().contains("config"), r.weights_path.string(), " has no 'config' metadata");
        r.config = parse_config(file.metadata("config"), r.weights_path.string());
        const std::string key = file.metadata().contains("key") ? file.metadata("key") : "";
        std::string name;
        for (const char ch : std::filesystem::absolute(dir).lexically_normal().filename().string())
            name += std::isalnum(static_cast<unsigned char>(ch)) || ch == '.' || ch == '+' || ch == '-' ? ch : '-';
        if (name.empty()) name = "model";
        char hash[17];
        std::snprintf(hash, sizeof hash, "%08llx",
                      static_cast<unsigned long long>(demo::fnv1a(key + " " + file.metadata("config")) & 0xffffffffull));
        r.id = name + "-" + hash;
        return r;
    }

    bool subword() const { return std::filesystem::exists(dir / "tokenizer.model"); }

    void load_tokenizer() {
        if (subword()) {
            tokenizer = std::make_unique<tiny_llama::SubwordTokenizer>(npft::io::SentencePieceTokenizer::load(dir / "tokenizer.model"));
        } else {
            tokenizer = std::make_unique<tiny_llama::ByteTokenizer>();
        }
        npft::require(tokenizer->vocab_size() == config.vocab, dir.string(), ": the tokenizer has ", tokenizer->vocab_size(),
                      " tokens, the model ", config.vocab);
    }

    tiny_llama::Weights load_weights() const { return tiny_llama::load_weights(weights_path, config); }
};

}  // namespace npft_study
