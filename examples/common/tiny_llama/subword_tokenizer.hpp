#pragma once
// A SentencePiece vocabulary (npft::io::SentencePieceTokenizer) as the tiny LLaMA's Tokenizer, with the byte count of
// every token for bits per byte: "▁" (U+2581, three bytes in UTF-8) stands for one space, a byte-fallback token
// "<0x0A>" for one byte, control and unknown tokens for none. SentencePiece's dummy prefix (a "▁" before the first
// word) makes a whole encoded text count one byte more than it has: negligible for a split of many kilobytes.
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <npft/io/sentencepiece.hpp>

#include "tokenizer.hpp"

namespace tiny_llama {

class SubwordTokenizer final : public Tokenizer {
public:
    explicit SubwordTokenizer(npft::io::SentencePieceTokenizer tokenizer) : tokenizer_(std::move(tokenizer)) {
        const auto& vocabulary = tokenizer_.vocabulary();
        bytes_.reserve(vocabulary.size());
        for (const auto& token : vocabulary) bytes_.push_back(byte_count(token));
    }

    std::vector<Token> encode(std::string_view text) const override {
        const std::vector<std::int32_t> ids = tokenizer_.encode(text);
        return {ids.begin(), ids.end()};
    }
    Index vocab_size() const override { return static_cast<Index>(bytes_.size()); }
    Index bytes_of(Token id) const override {
        npft::require(id >= 0 && id < vocab_size(), "token ", id, " is outside the vocabulary of ", vocab_size());
        return bytes_[static_cast<std::size_t>(id)];
    }
    std::string describe() const override {
        return "sentencepiece:" + std::to_string(bytes_.size()) + ":" + tokenizer_.source();
    }
    const npft::io::SentencePieceTokenizer& sentencepiece() const { return tokenizer_; }

private:
    static Index byte_count(const npft::io::TokenPiece& token) {
        using npft::io::TokenType;
        switch (token.type) {
            case TokenType::byte: return 1;
            case TokenType::control:
            case TokenType::unknown:
            case TokenType::unused: return 0;
            case TokenType::normal:
            case TokenType::user_defined: break;
        }
        static constexpr std::string_view space_marker = "\xE2\x96\x81";  // U+2581
        Index bytes = 0;
        for (std::size_t i = 0; i < token.piece.size();) {
            if (std::string_view(token.piece).substr(i, space_marker.size()) == space_marker) {
                bytes += 1;
                i += space_marker.size();
            } else {
                bytes += 1;
                i += 1;
            }
        }
        return bytes;
    }

    npft::io::SentencePieceTokenizer tokenizer_;
    std::vector<Index> bytes_;
};

}  // namespace tiny_llama
