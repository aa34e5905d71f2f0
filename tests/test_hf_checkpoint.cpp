// Hugging Face checkpoint folders: what the loader accepts and the clear errors for what it does not. (The numbers of
// the loaded model are checked against a numpy implementation of the Hugging Face forward by test_hf_python.)
#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <npft/io/safetensors.hpp>
#include <npft/io/sentencepiece.hpp>
#include <string>

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
void write_weights(const Folder& f, npft::io::Dtype norm_dtype = npft::io::Dtype::f32, npft::index vocab = 10) {
    npft::io::SafetensorsWriter w;
    const auto matrix = [&](const std::string& name, npft::index rows, npft::index cols) {
        npft::Matrix m(rows, cols);
        for (npft::index i = 0; i < m.size(); ++i) m.data()[i] = static_cast<float>(i);
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
