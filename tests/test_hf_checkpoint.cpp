// Hugging Face checkpoint folders: what the loader accepts and the clear errors for what it does not. (The numbers of
// the loaded model are checked against a numpy implementation of the Hugging Face forward by test_hf_python.)
#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <npft/io/safetensors.hpp>
#include <npft/io/sentencepiece.hpp>
#include <string>

#include "tiny_llama/gguf_export.hpp"
#include "tiny_llama/hf_checkpoint.hpp"

using Catch::Contains;
namespace fs = std::filesystem;

namespace {

struct Folder {
    fs::path path;
    Folder() {
        static int counter = 0;
        path = fs::temp_directory_path() /
               ("npft_test_hf_" + std::to_string(std::chrono::system_clock::now().time_since_epoch().count()) + "_" + std::to_string(counter++));
        fs::create_directories(path);
    }
    ~Folder() {
        std::error_code ignored;
        fs::remove_all(path, ignored);
    }
    void write(const std::string& name, const std::string& text) const { std::ofstream(path / name) << text; }
};

std::string config_json(const std::string& extra = "", int vocab = 10) {
    return R"({"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 8, "intermediate_size": 12,
               "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": )" +
           std::to_string(vocab) + R"(, "max_position_embeddings": 6, "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "tie_word_embeddings": true)" +
           extra + "}";
}

// Every tensor of the config above (tied: no lm_head), filled with its index in the file order.
void write_weights(const Folder& f, npft::io::Dtype norm_dtype = npft::io::Dtype::f32, npft::Index vocab = 10) {
    npft::io::SafetensorsWriter w;
    const auto matrix = [&](const std::string& name, npft::Index rows, npft::Index cols) {
        npft::Matrix m(rows, cols);
        for (npft::Index i = 0; i < m.size(); ++i) m.data()[i] = static_cast<float>(i);
        w.add(name, m);
    };
    const auto vector = [&](const std::string& name) {
        if (norm_dtype == npft::io::Dtype::f64) w.add(name, std::vector<double>(8, 1.0), {8});
        else w.add(name, std::vector<float>(8, 1.0f), {8});
    };
    matrix("model.embed_tokens.weight", vocab, 8);
    vector("model.norm.weight");
    vector("model.layers.0.input_layernorm.weight");
    vector("model.layers.0.post_attention_layernorm.weight");
    matrix("model.layers.0.self_attn.q_proj.weight", 8, 8);
    matrix("model.layers.0.self_attn.k_proj.weight", 4, 8);
    matrix("model.layers.0.self_attn.v_proj.weight", 4, 8);
    matrix("model.layers.0.self_attn.o_proj.weight", 8, 8);
    matrix("model.layers.0.mlp.gate_proj.weight", 12, 8);
    matrix("model.layers.0.mlp.up_proj.weight", 12, 8);
    matrix("model.layers.0.mlp.down_proj.weight", 8, 12);
    w.save(f.path / "model.safetensors");
}

}  // namespace

TEST_CASE("hf checkpoint: config, GQA shapes, tied head and the rotate-half permutation", "[hf]") {
    Folder f;
    f.write("config.json", config_json());
    write_weights(f);
    const tiny_llama::HfCheckpoint hf = tiny_llama::load_hf_checkpoint(f.path);
    CHECK(hf.config.dim == 8);
    CHECK(hf.config.heads == 2);
    CHECK(hf.config.kv_head_count() == 1);
    CHECK(hf.config.context == 6);
    CHECK(hf.config.norm_eps == 1e-6f);
    CHECK(hf.tied_embeddings);
    CHECK(hf.weights.head == hf.weights.embedding);
    // k_proj is [4, 8] with element (r, c) = 8 r + c; head_dim 4: rows 0 1 2 3 become 0 2 1 3 (i -> 2i, i + 2 -> 2i + 1).
    const npft::Matrix& k = hf.weights.layers[0].k;
    REQUIRE(k.rows() == 4);
    CHECK(k(0, 0) == 0.0f);
    CHECK(k(1, 0) == 16.0f);
    CHECK(k(2, 0) == 8.0f);
    CHECK(k(3, 0) == 24.0f);
    // v is not permuted.
    CHECK(hf.weights.layers[0].v(1, 0) == 8.0f);
}

TEST_CASE("hf checkpoint: clear errors for what it cannot load", "[hf]") {
    Folder f;
    CHECK_THROWS_WITH(tiny_llama::load_hf_checkpoint(f.path / "missing"), Contains("is not a folder"));
    CHECK_THROWS_WITH(tiny_llama::load_hf_checkpoint(f.path), Contains("has no config.json"));
    f.write("config.json", R"({"model_type": "mistral", "architectures": ["MistralForCausalLM"]})");
    CHECK_THROWS_WITH(tiny_llama::load_hf_checkpoint(f.path), Contains("architecture 'mistral / MistralForCausalLM' is not supported"));
    f.write("config.json", config_json(R"(, "rope_scaling": {"type": "linear", "factor": 2.0})"));
    CHECK_THROWS_WITH(tiny_llama::load_hf_checkpoint(f.path), Contains("\"rope_scaling\" is set"));
    f.write("config.json", R"({"model_type": "llama", "hidden_size": 8})");
    CHECK_THROWS_WITH(tiny_llama::load_hf_checkpoint(f.path), Contains("has no \"intermediate_size\""));
    f.write("config.json", config_json());
    CHECK_THROWS_WITH(tiny_llama::load_hf_checkpoint(f.path), Contains("has neither model.safetensors nor model.safetensors.index.json"));
    write_weights(f, npft::io::Dtype::f64);
    CHECK_THROWS_WITH(tiny_llama::load_hf_checkpoint(f.path),
                      Contains("tensor 'model.layers.0.input_layernorm.weight' has dtype F64; npft loads F32, F16 and BF16"));
    write_weights(f);
    f.write("model.safetensors.index.json", R"({"weight_map": {"model.embed_tokens.weight": "model.safetensors"}})");
    CHECK_THROWS_WITH(tiny_llama::load_hf_checkpoint(f.path), Contains("does not list tensor 'model.layers.0.input_layernorm.weight'"));
    f.write("model.safetensors.index.json", R"({"weight_map": {"model.embed_tokens.weight": "other.safetensors"}})");
    CHECK_THROWS_WITH(tiny_llama::load_hf_checkpoint(f.path), Contains("other.safetensors' cannot be opened"));

    f.write("tokenizer.json", "{}");
    CHECK_THROWS_WITH(tiny_llama::require_sentencepiece_model(f.path), Contains("has only tokenizer.json"));
    f.write("tokenizer.model", "");
    CHECK(tiny_llama::require_sentencepiece_model(f.path) == f.path / "tokenizer.model");
}

namespace {
// A 300-piece SentencePiece model trained on a few repeated lines, written as the folder's tokenizer.model.
void write_tokenizer(const Folder& f) {
    std::string text;
    for (int i = 0; i < 200; ++i) text += "the king said unto the people of the land " + std::to_string(i) + "\n";
    f.write("corpus.txt", text);
    const std::vector<fs::path> files{f.path / "corpus.txt"};
    npft::io::train_sentencepiece(files, 300, f.path / "tokenizer.model");
}
}  // namespace

#if defined(NPFT_HAS_SENTENCEPIECE) && NPFT_HAS_SENTENCEPIECE
TEST_CASE("hf checkpoint: tokenizer.model is read and checked against the config", "[hf][sentencepiece]") {
    Folder f;
    f.write("config.json", config_json("", 320));
    write_weights(f, npft::io::Dtype::f32, 320);
    write_tokenizer(f);
    const tiny_llama::HfCheckpoint hf = tiny_llama::load_hf_checkpoint(f.path);
    REQUIRE(hf.tokenizer.has_value());
    CHECK(hf.tokenizer->vocab_size() == 300);
    CHECK(hf.tokenizer->bos_id() == 1);
    CHECK(hf.tokenizer->decode(hf.tokenizer->encode("the king said")) == "the king said");
    CHECK(!tiny_llama::load_hf_checkpoint(f.path, tiny_llama::HfTokenizer::skip).tokenizer.has_value());
    // A tokenizer with more ids than the embedding has rows belongs to another model.
    f.write("config.json", config_json("", 10));
    write_weights(f);
    CHECK_THROWS_WITH(tiny_llama::load_hf_checkpoint(f.path), Contains("has 300 tokens but config.json's vocab_size is 10"));
    // Required, but only tokenizer.json: refused before any weight is read (there are none here).
    Folder json_only;
    json_only.write("config.json", config_json());
    json_only.write("tokenizer.json", "{}");
    CHECK_THROWS_WITH(tiny_llama::load_hf_checkpoint(json_only.path, tiny_llama::HfTokenizer::required),
                      Contains("has only tokenizer.json"));
    CHECK_THROWS_WITH(tiny_llama::load_hf_checkpoint(json_only.path), Contains("has neither model.safetensors"));
    json_only.write("tokenizer.model", "not a model");
    CHECK_THROWS_WITH(tiny_llama::load_hf_checkpoint(json_only.path), Contains("is not a valid tokenizer.model"));
}

TEST_CASE("a SentencePiece vocabulary in GGUF: pieces, scores, types, padding, special ids and flags", "[hf][sentencepiece][gguf]") {
    Folder f;
    write_tokenizer(f);
    const auto tokenizer = npft::io::SentencePieceTokenizer::load(f.path / "tokenizer.model");
    tiny_llama::Config c;
    c.vocab = 310;  // 10 more ids than the tokenizer has: [PAD300] ... [PAD309]
    c.dim = 32;
    c.hidden = 64;
    c.layers = 1;
    c.heads = 2;
    c.context = 16;
    tiny_llama::save_gguf(f.path / "model.gguf", c, tiny_llama::Weights::zeros(c), {}, "test", {}, &tokenizer, {false, true});
    const auto file = tiny_llama::gguf::File::load(f.path / "model.gguf");
    CHECK(file.get("tokenizer.ggml.model").as_string() == "llama");
    const auto& tokens = file.get("tokenizer.ggml.tokens").items;
    const auto& scores = file.get("tokenizer.ggml.scores").items;
    const auto& types = file.get("tokenizer.ggml.token_type").items;
    REQUIRE(tokens.size() == 310);
    REQUIRE(scores.size() == 310);
    REQUIRE(types.size() == 310);
    for (std::int32_t id = 0; id < 300; ++id) {
        CHECK(tokens[static_cast<std::size_t>(id)].as_string() == tokenizer.token(id).piece);
        CHECK(scores[static_cast<std::size_t>(id)].real == static_cast<double>(tokenizer.token(id).score));
        CHECK(types[static_cast<std::size_t>(id)].sint == static_cast<std::int64_t>(tokenizer.token(id).type));
    }
    // SentencePiece's numbering, which llama.cpp reads: unknown 2, control 3, byte 6, normal 1, unused 5.
    CHECK(types[0].sint == 2);
    CHECK(types[1].sint == 3);
    CHECK(types[3 + 0x41].sint == 6);
    CHECK(tokens[3 + 0x41].as_string() == "<0x41>");
    CHECK(types[299].sint == 1);
    CHECK(tokens[305].as_string() == "[PAD305]");
    CHECK(types[305].sint == 5);
    CHECK(scores[305].real == -1000.0);
    CHECK(file.get("tokenizer.ggml.bos_token_id").as_uint() == 1);
    CHECK(file.get("tokenizer.ggml.eos_token_id").as_uint() == 2);
    CHECK(file.get("tokenizer.ggml.unknown_token_id").as_uint() == 0);
    CHECK(!file.has("tokenizer.ggml.padding_token_id"));
    CHECK(!file.get("tokenizer.ggml.add_bos_token").flag);
    CHECK(file.get("tokenizer.ggml.add_eos_token").flag);
    // A tokenizer larger than the model's vocabulary cannot be written for it.
    c.vocab = 299;
    CHECK_THROWS_WITH(tiny_llama::save_gguf(f.path / "small.gguf", c, tiny_llama::Weights::zeros(c), {}, "test", {}, &tokenizer),
                      Contains("has 300 tokens, more than the model's vocabulary of 299"));
}

TEST_CASE("hf checkpoint: tokenizer_config.json sets add_bos / add_eos", "[hf][sentencepiece]") {
    Folder f;
    f.write("config.json", config_json("", 320));
    write_weights(f, npft::io::Dtype::f32, 320);
    write_tokenizer(f);  // writes no tokenizer_config.json: LLaMA's defaults
    CHECK(tiny_llama::load_hf_checkpoint(f.path).add_bos);
    CHECK(!tiny_llama::load_hf_checkpoint(f.path).add_eos);
    f.write("tokenizer_config.json", R"({"add_bos_token": false, "add_eos_token": true, "model_max_length": 2048})");
    const auto hf = tiny_llama::load_hf_checkpoint(f.path);
    CHECK(!hf.add_bos);
    CHECK(hf.add_eos);
    f.write("tokenizer_config.json", R"({"add_bos_token": "yes"})");
    CHECK_THROWS_WITH(tiny_llama::load_hf_checkpoint(f.path), Contains("\"add_bos_token\" must be true or false"));
}
#else
TEST_CASE("hf checkpoint: without SentencePiece a required tokenizer names the missing dependency", "[hf][sentencepiece]") {
    Folder f;
    f.write("config.json", config_json());
    write_weights(f);
    f.write("tokenizer.model", "a model this build cannot read");
    CHECK(!tiny_llama::load_hf_checkpoint(f.path).tokenizer.has_value());
    CHECK_THROWS_WITH(tiny_llama::load_hf_checkpoint(f.path, tiny_llama::HfTokenizer::required),
                      Contains("built without SentencePiece"));
    CHECK_THROWS_WITH(write_tokenizer(f), Contains("built without SentencePiece"));
}
#endif
