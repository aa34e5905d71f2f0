#pragma once
// The decoder as a llama.cpp model file (GGUF, architecture "llama") and back.
//
// Names: embedding -> token_embd.weight, layers.i.attn_norm -> blk.i.attn_norm.weight, attn.{q,k,v,o} ->
// blk.i.attn_{q,k,v,output}.weight, mlp_norm -> blk.i.ffn_norm.weight, mlp.{gate,up,down} -> blk.i.ffn_{gate,up,down}.weight,
// final_norm -> output_norm.weight, head -> output.weight. Norm gains are F32 vectors, as llama.cpp keeps them.
// Rotary: this model rotates interleaved pairs (2i, 2i + 1), which is llama.cpp's convention for "llama", so q and k
// rows are written as they are (a Hugging Face checkpoint's rotate-half rows are permuted when it is loaded: hf_checkpoint.hpp).
// Tokenizer: the byte-level vocabulary (256 tokens) as SentencePiece byte tokens "<0x00>" ... "<0xFF>", model "llama";
// or a SentencePiece tokenizer.model's vocabulary (pieces, scores, token types, special ids, add-BOS/EOS flags), as
// llama.cpp's convert_hf_to_gguf.py writes it.
#include <cstdio>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include <npft/io/gguf.hpp>
#include <npft/io/sentencepiece.hpp>
#include <npft/quant/ggml_grids.hpp>
#include <npft/quant/quantizer.hpp>

#include "config.hpp"
#include "weights.hpp"

namespace tiny_llama {

namespace gguf = npft::io::gguf;

/// The GGUF name of a tensor of Weights ("layers.3.attn.q" -> "blk.3.attn_q.weight").
inline std::string gguf_tensor_name(const std::string& name) {
    if (name == "embedding") return "token_embd.weight";
    if (name == "final_norm") return "output_norm.weight";
    if (name == "head") return "output.weight";
    const auto dot = name.find('.', 7);  // after "layers."
    npft::require(name.starts_with("layers.") && dot != std::string::npos, "no GGUF name for tensor '", name, "'");
    const std::string block = "blk." + name.substr(7, dot - 7) + ".", part = name.substr(dot + 1);
    static const std::pair<const char*, const char*> parts[] = {
        {"attn_norm", "attn_norm"}, {"attn.q", "attn_q"},     {"attn.k", "attn_k"},   {"attn.v", "attn_v"},    {"attn.o", "attn_output"},
        {"mlp_norm", "ffn_norm"},   {"mlp.gate", "ffn_gate"}, {"mlp.up", "ffn_up"},   {"mlp.down", "ffn_down"}};
    for (const auto& [ours, theirs] : parts)
        if (part == ours) return block + theirs + ".weight";
    npft::fail("no GGUF name for tensor '", name, "'");
}

/// The GGUF type of each class of tensor. Q4_0 and Q8_0 quantize the fp32 weights with ggml's own rule
/// (npft::quant::GgmlQ4_0Grid, GgmlQ8_0Grid), so the blocks are what llama.cpp's quantizer would write.
struct GgufTypes {
    gguf::TensorType linear = gguf::TensorType::f32;     ///< attention and MLP matrices
    gguf::TensorType embedding = gguf::TensorType::f32;  ///< token_embd
    gguf::TensorType output = gguf::TensorType::f32;     ///< the output head
};

/// llama.cpp's llama_ftype for a file whose linear layers are `t` ("mostly Q4_0" and so on).
inline std::uint32_t llama_file_type(gguf::TensorType t) {
    switch (t) {
        case gguf::TensorType::f32: return 0;
        case gguf::TensorType::f16: return 1;
        case gguf::TensorType::q4_0: return 2;
        case gguf::TensorType::q4_1: return 3;
        case gguf::TensorType::q8_0: return 7;
        case gguf::TensorType::bf16: return 32;
    }
    return 0;
}

/// The architecture keys llama.cpp requires for "llama".
inline void add_llama_metadata(gguf::Writer& out, const Config& c, const GgufTypes& types, const std::string& name) {
    using gguf::Value;
    const auto u32 = [](npft::Index v) { return Value::u32(static_cast<std::uint32_t>(v)); };
    out.set("general.architecture", Value::string("llama"));
    out.set("general.name", Value::string(name));
    out.set("general.file_type", Value::u32(llama_file_type(types.linear)));
    out.set("general.quantization_version", Value::u32(2));
    out.set("llama.context_length", u32(c.context));
    out.set("llama.embedding_length", u32(c.dim));
    out.set("llama.block_count", u32(c.layers));
    out.set("llama.feed_forward_length", u32(c.hidden));
    out.set("llama.attention.head_count", u32(c.heads));
    out.set("llama.attention.head_count_kv", u32(c.kv_head_count()));
    out.set("llama.attention.layer_norm_rms_epsilon", Value::f32(c.norm_eps));
    out.set("llama.rope.freq_base", Value::f32(c.rope_theta));
    out.set("llama.rope.dimension_count", u32(c.head_dim()));
    out.set("llama.vocab_size", u32(c.vocab));
}

/// The byte-level vocabulary: token b is the byte b, as the SentencePiece byte token "<0xBB>" (type 6, BYTE).
inline void add_byte_vocabulary(gguf::Writer& out, const Config& c) {
    npft::require(c.vocab == 256, "the byte-level vocabulary has 256 tokens, the model has ", c.vocab);
    std::vector<std::string> tokens;
    char text[8];
    for (int b = 0; b < 256; ++b) {
        std::snprintf(text, sizeof text, "<0x%02X>", b);
        tokens.emplace_back(text);
    }
    using gguf::Value;
    out.set("tokenizer.ggml.model", Value::string("llama"));
    out.set("tokenizer.ggml.tokens", Value::strings(tokens));
    out.set("tokenizer.ggml.scores", Value::f32s(std::vector<float>(256, 0.0f)));
    out.set("tokenizer.ggml.token_type", Value::i32s(std::vector<std::int32_t>(256, 6)));
    // The byte model has no special tokens; llama.cpp still wants ids, and is told not to add them.
    out.set("tokenizer.ggml.bos_token_id", Value::u32(1));
    out.set("tokenizer.ggml.eos_token_id", Value::u32(2));
    out.set("tokenizer.ggml.unknown_token_id", Value::u32(0));
    out.set("tokenizer.ggml.add_bos_token", Value::boolean(false));
    out.set("tokenizer.ggml.add_eos_token", Value::boolean(false));
}

/// Whether llama.cpp adds <s> / </s> around text it tokenizes (Hugging Face's tokenizer_config.json add_bos_token and
/// add_eos_token; LLaMA's defaults).
struct SpecialTokenFlags {
    bool add_bos = true;
    bool add_eos = false;
};

/// A SentencePiece vocabulary in llama.cpp's "llama" tokenizer keys. Ids the tokenizer does not have, up to the
/// embedding's vocab rows (a padded vocab_size), become unused "[PADi]" tokens with score -1000, as llama.cpp's converter
/// writes them, so that the token list is as long as the embedding.
inline void add_sentencepiece_vocabulary(gguf::Writer& out, const Config& c, const npft::io::SentencePieceTokenizer& tokenizer,
                                         SpecialTokenFlags flags = {}) {
    npft::require(tokenizer.vocab_size() <= c.vocab, "tokenizer '", tokenizer.source(), "' has ", tokenizer.vocab_size(),
                  " tokens, more than the model's vocabulary of ", c.vocab);
    std::vector<std::string> tokens;
    std::vector<float> scores;
    std::vector<std::int32_t> types;
    for (const npft::io::TokenPiece& p : tokenizer.vocabulary()) {
        tokens.push_back(p.piece);
        scores.push_back(p.score);
        types.push_back(static_cast<std::int32_t>(p.type));
    }
    for (npft::Index id = tokenizer.vocab_size(); id < c.vocab; ++id) {
        tokens.push_back("[PAD" + std::to_string(id) + "]");
        scores.push_back(-1000.0f);
        types.push_back(static_cast<std::int32_t>(npft::io::TokenType::unused));
    }
    using gguf::Value;
    out.set("tokenizer.ggml.model", Value::string("llama"));
    out.set("tokenizer.ggml.tokens", Value::strings(tokens));
    out.set("tokenizer.ggml.scores", Value::f32s(scores));
    out.set("tokenizer.ggml.token_type", Value::i32s(types));
    const auto id = [&](const char* key, std::int32_t v) {
        if (v >= 0) out.set(key, Value::u32(static_cast<std::uint32_t>(v)));
    };
    id("tokenizer.ggml.bos_token_id", tokenizer.bos_id());
    id("tokenizer.ggml.eos_token_id", tokenizer.eos_id());
    id("tokenizer.ggml.unknown_token_id", tokenizer.unk_id());
    id("tokenizer.ggml.padding_token_id", tokenizer.pad_id());
    npft::require(!flags.add_bos || tokenizer.bos_id() >= 0, "tokenizer '", tokenizer.source(), "' has no <s> to add");
    npft::require(!flags.add_eos || tokenizer.eos_id() >= 0, "tokenizer '", tokenizer.source(), "' has no </s> to add");
    out.set("tokenizer.ggml.add_bos_token", Value::boolean(flags.add_bos));
    out.set("tokenizer.ggml.add_eos_token", Value::boolean(flags.add_eos));
}

/// Adds every weight as its class's type. `progress(name, done, total)` is called after each tensor.
inline void add_llama_weights(gguf::Writer& out, const Weights& w, const GgufTypes& types,
                              const std::function<void(const std::string&, std::size_t, std::size_t)>& progress = {}) {
    std::size_t total = 0, done = 0;
    w.for_each([&](const std::string&, const Matrix&) { ++total; });
    w.for_each([&](const std::string& name, const Matrix& m) {
        const std::string target = gguf_tensor_name(name);
        if (name.ends_with("norm")) {
            out.add_vector(target, std::span<const float>(m.data(), static_cast<std::size_t>(m.size())));
        } else {
            const gguf::TensorType type = name == "embedding" ? types.embedding : name == "head" ? types.output : types.linear;
            npft::require(m.cols() % static_cast<npft::Index>(gguf::block_size(type)) == 0, "tensor '", name, "' has ", m.cols(),
                          " inputs, not a multiple of ", gguf::type_name(type), "'s block of ", gguf::block_size(type),
                          ": choose F16 or F32 for its class");
            switch (type) {
                case gguf::TensorType::q4_0:
                    out.add_quantized(target, npft::quant::Quantizer<npft::quant::GgmlQ4_0Grid>().quantize(m), type);
                    break;
                case gguf::TensorType::q8_0:
                    out.add_quantized(target, npft::quant::Quantizer<npft::quant::GgmlQ8_0Grid>().quantize(m), type);
                    break;
                case gguf::TensorType::q4_1:
                    npft::fail("tensor '", name, "': Q4_1 is written only from an npft asymmetric 4-bit quantized matrix (Writer::add_quantized); "
                               "for fp32 weights choose Q4_0 or Q8_0, which follow ggml's own quantizer");
                default: out.add_matrix(target, npft::as_matrix_view(m), type);
            }
        }
        if (progress) progress(target, ++done, total);
    });
}

/// The whole model file: metadata, vocabulary, weights. The vocabulary is the tokenizer's when one is given, else the
/// byte-level one for a 256-token model, else none (llama.cpp then needs tokenizer keys added to the file).
inline void save_gguf(const std::filesystem::path& path, const Config& c, const Weights& w, const GgufTypes& types,
                      const std::string& name = "npft tiny_llama",
                      const std::function<void(const std::string&, std::size_t, std::size_t)>& progress = {},
                      const npft::io::SentencePieceTokenizer* tokenizer = nullptr, SpecialTokenFlags flags = {}) {
    gguf::Writer out;
    add_llama_metadata(out, c, types, name);
    if (tokenizer != nullptr) add_sentencepiece_vocabulary(out, c, *tokenizer, flags);
    else if (c.vocab == 256) add_byte_vocabulary(out, c);
    add_llama_weights(out, w, types, progress);
    out.save(path);
}

/// The config a "llama" GGUF file describes (rope, eps and sizes; the vocabulary from the token list).
inline Config config_from_gguf(const gguf::File& f) {
    const std::string arch = f.get("general.architecture").as_string();
    npft::require(arch == "llama", f.source(), ": architecture '", arch, "' is not supported (only \"llama\")");
    const auto count = [&](const char* key) { return static_cast<npft::Index>(f.get(key).as_uint()); };
    Config c;
    c.layers = count("llama.block_count");
    c.dim = count("llama.embedding_length");
    c.hidden = count("llama.feed_forward_length");
    c.heads = count("llama.attention.head_count");
    c.context = count("llama.context_length");
    c.norm_eps = static_cast<float>(f.get("llama.attention.layer_norm_rms_epsilon").as_real());
    c.rope_theta = f.has("llama.rope.freq_base") ? static_cast<float>(f.get("llama.rope.freq_base").as_real()) : 10000.0f;
    c.vocab = static_cast<npft::Index>(f.tensor("token_embd.weight").rows());
    if (f.has("llama.attention.head_count_kv") && count("llama.attention.head_count_kv") != c.heads)
        c.kv_heads = count("llama.attention.head_count_kv");
    c.validate();
    return c;
}

/// Every weight of a "llama" GGUF file, decoded to fp32 with ggml's reference formulas (so a quantized file gives the
/// weights llama.cpp computes with). A file without output.weight ties the head to the embedding.
inline Weights weights_from_gguf(const gguf::File& f, const Config& c) {
    Weights w = Weights::zeros(c);
    w.for_each([&](const std::string& name, Matrix& m) {
        std::string source = gguf_tensor_name(name);
        if (name == "head" && !f.contains(source)) source = "token_embd.weight";
        const Matrix read = f.read_matrix(source);
        npft::require(read.size() == m.size() && (read.rows() == m.rows() || m.rows() == 1), f.source(), ": tensor '", source,
                      "' is ", read.rows(), " x ", read.cols(), ", the config needs ", m.rows(), " x ", m.cols());
        m = read.reshaped<Eigen::RowMajor>(m.rows(), m.cols());
    });
    return w;
}

}  // namespace tiny_llama
