#pragma once
// A user's Hugging Face LLaMA checkpoint as the demos' model (--hf DIR): its weights and config, its SentencePiece
// tokenizer for the text corpus, and a context shortened to the windows the demos train and evaluate on (the weights
// do not depend on the context; a shorter one only bounds the positions used).
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include <npft/io/sentencepiece.hpp>

#include "tiny_llama/hf_checkpoint.hpp"

namespace demo {

struct HfModel {
    tiny_llama::Config config;
    tiny_llama::Weights weights;
    npft::io::SentencePieceTokenizer tokenizer;
};

/// Loads `dir` (tokenizer.model required) with its context capped at `context` tokens.
inline HfModel load_hf_model(const std::filesystem::path& dir, npft::Index context) {
    npft::require(context > 0, "--context must be positive");
    tiny_llama::HfCheckpoint hf = tiny_llama::load_hf_checkpoint(dir, tiny_llama::HfTokenizer::required);
    hf.config.context = std::min(hf.config.context, context);
    return {hf.config, std::move(hf.weights), std::move(*hf.tokenizer)};
}

/// The ids of `text` as one stream (no <s> between lines: the demos cut windows anywhere in it).
inline std::vector<tiny_llama::Token> tokenize(const npft::io::SentencePieceTokenizer& tokenizer, const std::string& text) {
    const std::vector<std::int32_t> ids = tokenizer.encode(text);
    return {ids.begin(), ids.end()};
}

}  // namespace demo
