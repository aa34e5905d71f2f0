#pragma once
// A pre-trained reference model as examples/06_reference_model writes it and the repository ships it (models/): a
// folder with reference.safetensors (tiny_llama checkpoint: weights, config and training key in the metadata) and,
// for a SentencePiece vocabulary, the tokenizer.model it was trained with. No tokenizer.model: the byte vocabulary.
#include <filesystem>
#include <optional>
#include <string>

#include <npft/core/error.hpp>
#include <npft/io/sentencepiece.hpp>

#include "tiny_llama/checkpoint.hpp"
#include "tiny_llama/config.hpp"
#include "tiny_llama/weights.hpp"

namespace demo {

struct ReferenceModel {
    std::filesystem::path dir;
    tiny_llama::Config config;
    tiny_llama::Weights weights;
    std::optional<npft::io::SentencePieceTokenizer> tokenizer;  // empty: bytes
    std::string key;  // how it was trained (vocabulary, text hash, recipe, seed)
};

inline ReferenceModel load_reference_model(const std::filesystem::path& dir) {
    namespace fs = std::filesystem;
    const fs::path weights = dir / "reference.safetensors", tokenizer = dir / "tokenizer.model";
    npft::require(fs::is_regular_file(weights), "reference model folder '", dir.string(), "' has no reference.safetensors ",
                  "(scripts/train_reference.sh writes one)");
    ReferenceModel m;
    m.dir = dir;
    m.config = tiny_llama::stored_config(weights);
    m.weights = tiny_llama::load_weights(weights, m.config);
    const auto file = npft::io::SafetensorsFile::load(weights);
    m.key = file.metadata().contains("key") ? file.metadata("key") : std::string();
    if (fs::exists(tokenizer)) {
        m.tokenizer = npft::io::SentencePieceTokenizer::load(tokenizer);
        npft::require(m.tokenizer->vocab_size() == m.config.vocab, "reference model '", dir.string(), "': tokenizer.model has ",
                      m.tokenizer->vocab_size(), " pieces, the weights a vocabulary of ", m.config.vocab);
    } else {
        npft::require(m.config.vocab == 256, "reference model '", dir.string(), "' has a vocabulary of ", m.config.vocab,
                      " but no tokenizer.model (only a byte-level model, vocabulary 256, goes without one)");
    }
    return m;
}

}  // namespace demo
