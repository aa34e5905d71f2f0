#pragma once
// From text to batches: bytes are tokens; training batches are windows at random offsets (keyed by seed and step, so a
// run is reproducible); evaluation runs over the whole text (whole_text_batches) or fixed, non-overlapping windows.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include <npft/core/error.hpp>
#include <npft/core/random.hpp>

#include "config.hpp"
#include "tokenizer.hpp"

namespace tiny_llama {

/// Byte-level tokens: one token per byte, vocabulary 256.
inline std::vector<Token> byte_tokens(const std::string& text) {
    std::vector<Token> out(text.size());
    std::transform(text.begin(), text.end(), out.begin(), [](char c) { return static_cast<Token>(static_cast<unsigned char>(c)); });
    return out;
}

/// `sequences` windows of `length` tokens at offsets drawn from (seed, stream, draw): the same arguments give the same batch.
inline Batch random_windows(const std::vector<Token>& tokens, Index sequences, Index length, npft::RandomKey key,
                            std::uint64_t draw) {
    const Index span = static_cast<Index>(tokens.size()) - length;
    npft::require(span > 0, "text of ", tokens.size(), " tokens is too short for windows of ", length, " tokens");
    Batch b;
    for (Index s = 0; s < sequences; ++s) {
        const auto u = npft::uniform01(key, draw * static_cast<std::uint64_t>(sequences) + static_cast<std::uint64_t>(s));
        const Index start = std::min(span - 1, static_cast<Index>(static_cast<double>(u) * static_cast<double>(span)));
        b.sequences.emplace_back(tokens.begin() + start, tokens.begin() + start + length);
    }
    return b;
}

/// Non-overlapping windows of `length` tokens (each window predicts length - 1 tokens), evenly spaced through the text,
/// at most `max_windows` of them, grouped in batches of `batch_size`. Deterministic.
inline std::vector<Batch> evaluation_batches(const std::vector<Token>& tokens, Index length, Index max_windows,
                                             Index batch_size) {
    const Index available = static_cast<Index>(tokens.size()) / length;
    npft::require(available > 0, "evaluation text of ", tokens.size(), " tokens is shorter than one window of ", length);
    const Index windows = max_windows > 0 ? std::min(available, max_windows) : available;
    std::vector<Batch> out;
    for (Index w = 0; w < windows; ++w) {
        // Window w of `windows` evenly spaced ones among the `available` aligned slots.
        const Index slot = w * available / windows;
        if (w % batch_size == 0) out.emplace_back();
        out.back().sequences.emplace_back(tokens.begin() + slot * length, tokens.begin() + (slot + 1) * length);
    }
    return out;
}

/// The whole of `tokens` as consecutive windows of at most `length` tokens with stride length - 1: each window starts
/// on the previous window's last token, so every token but the first is predicted exactly once (the context restarts
/// at each window), and the last window is shorter. Batches of `batch_size` windows; the short last window gets a
/// batch of its own (a batch's sequences share one length). Deterministic.
inline std::vector<Batch> whole_text_batches(const std::vector<Token>& tokens, Index length, Index batch_size) {
    npft::require(length >= 2, "evaluation windows must hold at least 2 tokens, got ", length);
    npft::require(batch_size >= 1, "evaluation batch size must be at least 1, got ", batch_size);
    const Index n = static_cast<Index>(tokens.size());
    npft::require(n >= 2, "evaluation text of ", n, " tokens has nothing to predict");
    std::vector<Batch> out;
    for (Index start = 0; start + 1 < n;) {
        const Index end = std::min(n, start + length);
        const bool full = end - start == length;
        if (out.empty() || !full || out.back().count() == batch_size ||
            out.back().positions() != end - start - 1)
            out.emplace_back();
        out.back().sequences.emplace_back(tokens.begin() + start, tokens.begin() + end);
        start = end - 1;
    }
    return out;
}

/// Cross-entropy totals of a model over evaluation batches, per token and per byte of text.
struct Evaluation {
    double nats = 0.0;      // sum of -ln p(next token) over every prediction
    Index predictions = 0;  // tokens predicted
    Index bytes = 0;        // bytes of text those tokens stand for

    double perplexity() const { return std::exp(nats / static_cast<double>(predictions)); }
    /// nats / (bytes x ln 2): compares models with different vocabularies.
    double bits_per_byte() const { return nats / (static_cast<double>(bytes) * std::log(2.0)); }
};

/// Evaluates a model (anything with loss(batch)) on `batches`; `tokenizer` says how many bytes each predicted token is.
template <class M>
Evaluation evaluate(const M& model, const std::vector<Batch>& batches, const Tokenizer& tokenizer) {
    Evaluation e;
    for (const Batch& b : batches) {
        const Index n = b.count() * b.positions();
        e.nats += model.loss(b) * static_cast<double>(n);
        e.predictions += n;
        for (const auto& sequence : b.sequences)
            for (std::size_t t = 1; t < sequence.size(); ++t) e.bytes += tokenizer.bytes_of(sequence[t]);
    }
    npft::require(e.predictions > 0, "evaluation needs at least one prediction");
    return e;
}

/// exp(mean loss over all predictions) of a model (anything with loss(batch)) on evaluation batches.
template <class M>
double perplexity(const M& model, const std::vector<Batch>& batches) {
    double sum = 0.0, count = 0.0;
    for (const Batch& b : batches) {
        const double n = static_cast<double>(b.count() * b.positions());
        sum += model.loss(b) * n;
        count += n;
    }
    return std::exp(sum / count);
}

}  // namespace tiny_llama
