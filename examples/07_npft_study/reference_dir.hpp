#pragma once
// A study model: a folder with reference.safetensors (tiny_llama/checkpoint.hpp's format, the config in its metadata)
// and, when its vocabulary is SentencePiece, tokenizer.model; without one the vocabulary is bytes.
#include <cctype>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include <npft/io/safetensors.hpp>
#include <npft/io/sentencepiece.hpp>

#include "demo_setup.hpp"
#include "tiny_llama/checkpoint.hpp"
#include "tiny_llama/subword_tokenizer.hpp"
#include "tiny_llama/tokenizer.hpp"

namespace npft_study {

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
        r.config = tiny_llama::stored_config(r.weights_path);
        const auto file = npft::io::SafetensorsFile::load(r.weights_path);
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
