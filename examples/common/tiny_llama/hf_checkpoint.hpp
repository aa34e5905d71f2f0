#pragma once
// A Hugging Face LLaMA checkpoint folder loaded into the decoder:
//   config.json                               architecture and sizes (fields below)
//   model.safetensors                         the weights, or
//   model.safetensors.index.json + shards     {"weight_map": {"model.layers.0.self_attn.q_proj.weight": "shard.safetensors", ...}}
// Weights may be F32, F16 or BF16; they are converted to fp32 tensor by tensor from mapped files, and each tensor's
// pages are released from the resident set once converted, so the peak is the fp32 model plus about one tensor (a
// TinyLlama-1.1B-shaped bf16 checkpoint: 4.10 GiB of fp32 weights, peak 4.48 GiB; docs/io.md).
// Names: model.embed_tokens, model.layers.i.{input_layernorm, self_attn.{q,k,v,o}_proj, post_attention_layernorm,
// mlp.{gate,up,down}_proj}, model.norm, lm_head (absent when tie_word_embeddings: the head is
// then a copy of the embedding, which training may move apart from it).
//
// Rotary: Hugging Face rotates dimension i of a head with dimension i + head_dim/2 ("rotate half"); this model rotates
// interleaved pairs (2i, 2i + 1), as Meta's code and llama.cpp do. Both use frequency theta^(-2i/head_dim) for pair i,
// so permuting the rows of q_proj and k_proj within each head (row i -> 2i, row i + head_dim/2 -> 2i + 1) makes the
// interleaved model compute exactly the Hugging Face one: attention scores are unchanged because q and k are permuted
// alike. The permutation moves whole rows, so quantization groups (along a row's inputs) are unchanged too.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <npft/io/json.hpp>
#include <npft/io/safetensors.hpp>
#include <npft/io/sentencepiece.hpp>

#include "config.hpp"
#include "weights.hpp"

namespace tiny_llama {

namespace hf_detail {
namespace json = npft::io::json;

inline std::string read_text(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    npft::require(static_cast<bool>(in), "cannot read '", path.string(), "'");
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

inline const json::Value* member(const json::Value& object, std::string_view key) {
    for (const json::Member& m : object.members)
        if (m.key == key) return &m.value;
    return nullptr;
}

/// The config.json number `key` (required unless a fallback is given).
inline double number(const json::Value& config, const std::filesystem::path& path, std::string_view key,
                     std::optional<double> fallback = std::nullopt) {
    const json::Value* v = member(config, key);
    if (v == nullptr || v->kind == json::Value::Kind::null) {
        npft::require(fallback.has_value(), "'", path.string(), "' has no \"", key, "\"");
        return *fallback;
    }
    npft::require(v->is_number(), "'", path.string(), "': \"", key, "\" must be a number");
    return std::stod(v->text);
}

inline npft::Index count(const json::Value& config, const std::filesystem::path& path, std::string_view key,
                         std::optional<double> fallback = std::nullopt) {
    const double v = number(config, path, key, fallback);
    npft::require(v > 0 && v == static_cast<double>(static_cast<npft::Index>(v)), "'", path.string(), "': \"", key,
                  "\" must be a positive integer");
    return static_cast<npft::Index>(v);
}
}  // namespace hf_detail

/// What config.json says, checked: a LLaMA-architecture decoder this model can run.
struct HfConfig {
    Config config;
    bool tied_embeddings = false;
};

namespace hf_detail {
/// The JSON object in `path`; an npft::Error naming the file when it is not valid JSON or not an object.
inline npft::io::json::Value read_json_object(const std::filesystem::path& path) {
    npft::io::json::Value root;
    try {
        root = npft::io::json::parse(read_text(path));
    } catch (const npft::Error& e) {
        npft::fail("'", path.string(), "' is not valid JSON: ", e.what());
    }
    npft::require(root.is_object(), "'", path.string(), "' must be a JSON object");
    return root;
}
}  // namespace hf_detail

inline HfConfig read_hf_config(const std::filesystem::path& dir) {
    namespace json = npft::io::json;
    const std::filesystem::path path = dir / "config.json";
    npft::require(std::filesystem::is_directory(dir), "Hugging Face checkpoint '", dir.string(), "' is not a folder");
    npft::require(std::filesystem::exists(path), "'", dir.string(),
                  "' has no config.json: a Hugging Face checkpoint folder holds config.json and model.safetensors");
    const json::Value root = hf_detail::read_json_object(path);
    const json::Value* type = hf_detail::member(root, "model_type");
    const json::Value* architectures = hf_detail::member(root, "architectures");
    std::string architecture = type && type->is_string() ? type->text : "";
    if (architectures && architectures->is_array() && !architectures->items.empty() && architectures->items[0].is_string())
        architecture += (architecture.empty() ? "" : " / ") + architectures->items[0].text;
    npft::require(type && type->is_string() && type->text == "llama", "'", path.string(), "': architecture '",
                  architecture.empty() ? "unknown" : architecture,
                  "' is not supported; npft loads LLaMA-architecture checkpoints (model_type \"llama\": LLaMA, LLaMA 2, TinyLlama)");
    for (const char* unsupported : {"rope_scaling", "attention_bias", "mlp_bias"}) {
        const json::Value* v = hf_detail::member(root, unsupported);
        const bool set = v && !(v->kind == json::Value::Kind::null || (v->kind == json::Value::Kind::boolean && !v->boolean));
        npft::require(!set, "'", path.string(), "': \"", unsupported, "\" is set, which this model does not implement");
    }
    if (const json::Value* act = hf_detail::member(root, "hidden_act"))
        npft::require(act->is_string() && act->text == "silu", "'", path.string(), "': hidden_act must be \"silu\"");

    HfConfig out;
    Config& c = out.config;
    c.dim = hf_detail::count(root, path, "hidden_size");
    c.hidden = hf_detail::count(root, path, "intermediate_size");
    c.layers = hf_detail::count(root, path, "num_hidden_layers");
    c.heads = hf_detail::count(root, path, "num_attention_heads");
    const npft::Index kv = hf_detail::count(root, path, "num_key_value_heads", static_cast<double>(c.heads));
    c.kv_heads = kv == c.heads ? 0 : kv;
    c.vocab = hf_detail::count(root, path, "vocab_size");
    c.context = hf_detail::count(root, path, "max_position_embeddings");
    c.norm_eps = static_cast<float>(hf_detail::number(root, path, "rms_norm_eps", 1e-6));
    c.rope_theta = static_cast<float>(hf_detail::number(root, path, "rope_theta", 10000.0));
    if (const json::Value* tied = hf_detail::member(root, "tie_word_embeddings"))
        out.tied_embeddings = tied->kind == json::Value::Kind::boolean && tied->boolean;
    if (hf_detail::member(root, "head_dim"))
        npft::require(hf_detail::count(root, path, "head_dim") * c.heads == c.dim, "'", path.string(),
                      "': head_dim x num_attention_heads must equal hidden_size");
    c.validate();
    return out;
}

/// The Hugging Face name of each tensor of Weights ("layers.0.attn.q" -> "model.layers.0.self_attn.q_proj.weight").
inline std::string hf_tensor_name(const std::string& name) {
    if (name == "embedding") return "model.embed_tokens.weight";
    if (name == "final_norm") return "model.norm.weight";
    if (name == "head") return "lm_head.weight";
    const auto dot = name.find('.', 7);
    const std::string block = "model.layers." + name.substr(7, dot - 7) + ".", part = name.substr(dot + 1);
    static const std::pair<const char*, const char*> parts[] = {
        {"attn_norm", "input_layernorm"}, {"attn.q", "self_attn.q_proj"}, {"attn.k", "self_attn.k_proj"},
        {"attn.v", "self_attn.v_proj"},   {"attn.o", "self_attn.o_proj"}, {"mlp_norm", "post_attention_layernorm"},
        {"mlp.gate", "mlp.gate_proj"},    {"mlp.up", "mlp.up_proj"},      {"mlp.down", "mlp.down_proj"}};
    for (const auto& [ours, theirs] : parts)
        if (part == ours) return block + theirs + ".weight";
    npft::fail("no Hugging Face name for tensor '", name, "'");
}

/// Rows of a q or k projection from rotate-half order to interleaved pairs, head by head (see the top of the file).
inline Matrix rotate_half_to_interleaved(const Matrix& w, npft::Index head_dim) {
    Matrix out(w.rows(), w.cols());
    const npft::Index half = head_dim / 2;
    for (npft::Index h = 0; h < w.rows() / head_dim; ++h)
        for (npft::Index i = 0; i < half; ++i) {
            out.row(h * head_dim + 2 * i) = w.row(h * head_dim + i);
            out.row(h * head_dim + 2 * i + 1) = w.row(h * head_dim + half + i);
        }
    return out;
}

/// Throws a clear error unless `dir` has the SentencePiece tokenizer npft reads (tokenizer.model).
inline std::filesystem::path require_sentencepiece_model(const std::filesystem::path& dir) {
    const std::filesystem::path model = dir / "tokenizer.model";
    if (std::filesystem::exists(model)) return model;
    npft::require(!std::filesystem::exists(dir / "tokenizer.json"), "'", dir.string(),
                  "' has only tokenizer.json (a Hugging Face fast tokenizer); npft reads the SentencePiece tokenizer.model "
                  "that LLaMA, LLaMA 2 and TinyLlama ship");
    npft::fail("'", dir.string(), "' has no tokenizer.model (SentencePiece)");
}

/// The folder's tokenizer.model, checked against the config: every id it produces must index the embedding (a config's
/// vocab_size may be larger, padded; never smaller).
inline npft::io::SentencePieceTokenizer load_hf_tokenizer(const std::filesystem::path& dir, npft::Index vocab) {
    npft::io::SentencePieceTokenizer t = npft::io::SentencePieceTokenizer::load(require_sentencepiece_model(dir));
    npft::require(t.vocab_size() <= vocab, "'", t.source(), "' has ", t.vocab_size(), " tokens but config.json's vocab_size is ",
                  vocab, ": the tokenizer does not belong to this model");
    return t;
}

/// What load_hf_checkpoint does about the tokenizer.
enum class HfTokenizer {
    skip,        ///< weights only
    if_present,  ///< tokenizer.model when the folder has one and this build reads SentencePiece (npft::sentencepiece)
    required,    ///< tokenizer.model or a clear error (tokenizer.json only, none, or a build without SentencePiece)
};

/// The model in a Hugging Face checkpoint folder.
struct HfCheckpoint {
    Config config;
    Weights weights;
    bool tied_embeddings = false;
    std::optional<npft::io::SentencePieceTokenizer> tokenizer;  ///< see HfTokenizer
    /// Whether text is tokenized with <s> first / </s> last: tokenizer_config.json's add_bos_token and add_eos_token,
    /// LLaMA's defaults when absent.
    bool add_bos = true, add_eos = false;
};

/// add_bos_token / add_eos_token of the folder's tokenizer_config.json, into `out` (left as they are when absent).
inline void read_hf_special_token_flags(const std::filesystem::path& dir, bool& add_bos, bool& add_eos) {
    namespace json = npft::io::json;
    const std::filesystem::path path = dir / "tokenizer_config.json";
    if (!std::filesystem::exists(path)) return;
    const json::Value root = hf_detail::read_json_object(path);
    for (auto [key, flag] : {std::pair<const char*, bool*>{"add_bos_token", &add_bos}, {"add_eos_token", &add_eos}})
        if (const json::Value* v = hf_detail::member(root, key); v && v->kind != json::Value::Kind::null) {
            npft::require(v->kind == json::Value::Kind::boolean, "'", path.string(), "': \"", key, "\" must be true or false");
            *flag = v->boolean;
        }
}

inline HfCheckpoint load_hf_checkpoint(const std::filesystem::path& dir, HfTokenizer tokenizer = HfTokenizer::if_present) {
    namespace io = npft::io;
    namespace json = npft::io::json;
    const HfConfig hf = read_hf_config(dir);
    const Config& c = hf.config;
    // The tokenizer first: a required one that is missing or broken fails before gigabytes of weights are read.
    std::optional<npft::io::SentencePieceTokenizer> loaded_tokenizer;
    if (tokenizer == HfTokenizer::required ||
        (tokenizer == HfTokenizer::if_present && npft::io::has_sentencepiece && std::filesystem::exists(dir / "tokenizer.model")))
        loaded_tokenizer = load_hf_tokenizer(dir, c.vocab);

    // Which file holds which tensor.
    std::map<std::string, std::filesystem::path> where;
    const std::filesystem::path index_path = dir / "model.safetensors.index.json";
    if (std::filesystem::exists(index_path)) {
        const json::Value Index = json::parse(hf_detail::read_text(index_path));
        const json::Value* map = Index.is_object() ? hf_detail::member(Index, "weight_map") : nullptr;
        npft::require(map && map->is_object(), "'", index_path.string(), "' has no \"weight_map\" object");
        for (const json::Member& m : map->members) {
            npft::require(m.value.is_string() && m.value.text.find('/') == std::string::npos, "'", index_path.string(),
                          "': the shard of '", m.key, "' must be a file name in the folder");
            where[m.key] = dir / m.value.text;
        }
    } else {
        npft::require(std::filesystem::exists(dir / "model.safetensors"), "'", dir.string(),
                      "' has neither model.safetensors nor model.safetensors.index.json",
                      std::filesystem::exists(dir / "pytorch_model.bin") ? " (pytorch_model.bin is not read: convert it to safetensors)" : "");
    }
    std::map<std::filesystem::path, io::SafetensorsFile> files;
    const auto file_of = [&](const std::string& name) -> const io::SafetensorsFile& {
        const std::filesystem::path path = where.empty() ? dir / "model.safetensors" : where.contains(name) ? where.at(name) : std::filesystem::path();
        npft::require(!path.empty(), "'", index_path.string(), "' does not list tensor '", name, "'");
        auto it = files.find(path);
        if (it == files.end()) it = files.emplace(path, io::SafetensorsFile::map(path)).first;
        return it->second;
    };

    HfCheckpoint out{c, Weights::zeros(c), hf.tied_embeddings, std::move(loaded_tokenizer)};
    read_hf_special_token_flags(dir, out.add_bos, out.add_eos);
    out.weights.for_each([&](const std::string& name, Matrix& m) {
        const std::string source = hf_tensor_name(name);
        if (name == "head" && hf.tied_embeddings) {
            m = out.weights.embedding;
            return;
        }
        const io::SafetensorsFile& f = file_of(source);
        npft::require(f.contains(source), "safetensors ", f.source(), ": no tensor '", source, "'");
        const io::TensorInfo& t = f.info(source);
        npft::require(t.dtype == io::Dtype::f32 || t.dtype == io::Dtype::f16 || t.dtype == io::Dtype::bf16, "safetensors ", f.source(),
                      ": tensor '", source, "' has dtype ", io::dtype_name(t.dtype), "; npft loads F32, F16 and BF16 checkpoints");
        if (m.rows() == 1) {  // a norm gain: [dim] in the file
            npft::require(t.shape == std::vector<npft::Index>{m.cols()}, "safetensors ", f.source(), ": tensor '", source, "' has shape ",
                          io::shape_string(t.shape), ", expected [", m.cols(), "]");
            const std::span<const std::byte> raw = f.raw(source);
            for (npft::Index i = 0; i < m.cols(); ++i) {
                const std::byte* p = raw.data() + static_cast<std::size_t>(i) * io::dtype_size(t.dtype);
                if (t.dtype == io::Dtype::f32) io::detail::load_le(&m(0, i), p, 1);
                else if (t.dtype == io::Dtype::f16) { npft::half h; io::detail::load_le(&h, p, 1); m(0, i) = static_cast<float>(h); }
                else { npft::bfloat16 h; io::detail::load_le(&h, p, 1); m(0, i) = static_cast<float>(h); }
            }
            f.release(source);
            return;
        }
        npft::require(t.shape == std::vector<npft::Index>{m.rows(), m.cols()}, "safetensors ", f.source(), ": tensor '", source,
                      "' has shape ", io::shape_string(t.shape), ", the config needs [", m.rows(), ", ", m.cols(), "]");
        m = f.read_matrix(source);
        f.release(source);  // the file's pages of this tensor leave the resident set: no second copy builds up
        if (name.ends_with("attn.q") || name.ends_with("attn.k")) m = rotate_half_to_interleaved(m, c.head_dim());
    });
    return out;
}

}  // namespace tiny_llama
