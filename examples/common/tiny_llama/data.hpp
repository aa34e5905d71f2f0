#pragma once
// From text to batches: bytes are tokens; training batches are windows at random offsets (keyed by seed and step, so a
// run is reproducible); evaluation uses fixed, non-overlapping windows.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include <npft/core/error.hpp>
#include <npft/core/random.hpp>

#include "config.hpp"

namespace tiny_llama {

/// Byte-level tokens: one token per byte, vocabulary 256.
inline std::vector<Token> byte_tokens(const std::string& text) {
    std::vector<Token> out(text.size());
    std::transform(text.begin(), text.end(), out.begin(), [](char c) { return static_cast<Token>(static_cast<unsigned char>(c)); });
    return out;
}

/// `sequences` windows of `length` tokens at offsets drawn from (seed, stream, draw): the same arguments give the same batch.
inline Batch random_windows(const std::vector<Token>& tokens, index sequences, index length, npft::RandomKey key,
                            std::uint64_t draw) {
    const index span = static_cast<index>(tokens.size()) - length;
    npft::require(span > 0, "text of ", tokens.size(), " tokens is too short for windows of ", length, " tokens");
    Batch b;
    for (index s = 0; s < sequences; ++s) {
        const auto u = npft::uniform01(key, draw * static_cast<std::uint64_t>(sequences) + static_cast<std::uint64_t>(s));
        const index start = std::min(span - 1, static_cast<index>(static_cast<double>(u) * static_cast<double>(span)));
        b.sequences.emplace_back(tokens.begin() + start, tokens.begin() + start + length);
    }
    return b;
}

/// Non-overlapping windows of `length` tokens (each window predicts length - 1 tokens), evenly spaced through the text,
/// at most `max_windows` of them, grouped in batches of `batch_size`. Deterministic.
inline std::vector<Batch> evaluation_batches(const std::vector<Token>& tokens, index length, index max_windows,
                                             index batch_size) {
    const index available = static_cast<index>(tokens.size()) / length;
    npft::require(available > 0, "evaluation text of ", tokens.size(), " tokens is shorter than one window of ", length);
    const index windows = max_windows > 0 ? std::min(available, max_windows) : available;
    std::vector<Batch> out;
    for (index w = 0; w < windows; ++w) {
        // Window w of `windows` evenly spaced ones among the `available` aligned slots.
        const index slot = w * available / windows;
        if (w % batch_size == 0) out.emplace_back();
        out.back().sequences.emplace_back(tokens.begin() + slot * length, tokens.begin() + (slot + 1) * length);
    }
    return out;
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
