#pragma once
// The seam between text and token ids. The tiny LLaMA trains on bytes today; a subword vocabulary (SentencePiece)
// plugs in by implementing Tokenizer. Evaluation asks it how many bytes of text each token stands for, so that bits per
// byte compare models with different vocabularies.
#include <algorithm>
#include <string>
#include <string_view>
#include <vector>

#include <npft/core/error.hpp>

#include "config.hpp"

namespace tiny_llama {

class Tokenizer {
public:
    virtual ~Tokenizer() = default;
    /// The ids of `text`, in [0, vocab_size()).
    virtual std::vector<Token> encode(std::string_view text) const = 0;
    virtual Index vocab_size() const = 0;
    /// Bytes of the original text that token `id` accounts for (a byte-level token: 1).
    virtual Index bytes_of(Token id) const = 0;
    /// A stable text form of the vocabulary (kept in checkpoints, so that a model is never run with another one).
    virtual std::string describe() const = 0;
};

/// One token per byte, vocabulary 256.
class ByteTokenizer final : public Tokenizer {
public:
    std::vector<Token> encode(std::string_view text) const override {
        std::vector<Token> out(text.size());
        std::transform(text.begin(), text.end(), out.begin(),
                       [](char c) { return static_cast<Token>(static_cast<unsigned char>(c)); });
        return out;
    }
    Index vocab_size() const override { return 256; }
    Index bytes_of(Token id) const override {
        npft::require(id >= 0 && id < 256, "byte token ", id, " is outside [0, 256)");
        return 1;
    }
    std::string describe() const override { return "bytes"; }
};

}  // namespace tiny_llama
