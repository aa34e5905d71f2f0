// Writes a synthetic Hugging Face LLaMA checkpoint folder in the exact Hugging Face layout, for smoke runs and for
// measuring load memory (none of it is a real model; weights are counter-based uniform noise of std 0.02):
//
//   write_hf_checkpoint DIR --layers L --dim D --hidden H --heads N --kv-heads K --vocab V --context C
//                       [--dtype bf16|f16|f32] [--shards N] [--tokenizer TEXT_FILE]
//
// config.json, model.safetensors (or N shards with model.safetensors.index.json; each shard is written before the next
// is built, so the writer holds one shard), and with --tokenizer a SentencePiece tokenizer.model of V pieces trained on
// TEXT_FILE plus tokenizer_config.json (add_bos_token true, add_eos_token false, as LLaMA's).
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <npft/core/random.hpp>
#include <npft/io/safetensors.hpp>
#include <npft/io/sentencepiece.hpp>

namespace fs = std::filesystem;
using Index = npft::Index;

namespace {

struct Shape {
    std::string name;
    Index rows, cols;  // cols 0: a vector of `rows`
};

template <class T>
void add_tensor(npft::io::SafetensorsWriter& w, const Shape& s, std::uint64_t stream) {
    const Index n = s.rows * (s.cols == 0 ? 1 : s.cols);
    std::vector<T> data(static_cast<std::size_t>(n));
    const npft::RandomKey key{1, npft::make_stream(0x6866, stream)};
    for (Index i = 0; i < n; ++i)  // norms near 1, matrices uniform with std 0.02 (half-width 0.02 sqrt 3)
        data[static_cast<std::size_t>(i)] = static_cast<T>(s.cols == 0 ? 1.0f + 0.1f * (npft::uniform01(key, static_cast<std::uint64_t>(i)) - 0.5f)
                                                                         : 0.0693f * (npft::uniform01(key, static_cast<std::uint64_t>(i)) - 0.5f));
    w.add(s.name, data, s.cols == 0 ? std::vector<Index>{s.rows} : std::vector<Index>{s.rows, s.cols});
}

}  // namespace

int main(int argc, char** argv) {
    try {
        npft::require(argc >= 2, "usage: write_hf_checkpoint DIR --layers L --dim D --hidden H --heads N --kv-heads K --vocab V "
                                 "--context C [--dtype bf16|f16|f32] [--shards N] [--tokenizer TEXT_FILE]");
        const fs::path dir = argv[1];
        std::map<std::string, std::string> opt = {{"--dtype", "bf16"}, {"--shards", "1"}};
        for (int i = 2; i < argc; i += 2) {
            npft::require(i + 1 < argc, argv[i], " needs a value");
            opt[argv[i]] = argv[i + 1];
        }
        const auto number = [&](const char* key) {
            npft::require(opt.contains(key), "missing ", key);
            return static_cast<Index>(std::stoll(opt.at(key)));
        };
        const Index layers = number("--layers"), dim = number("--dim"), hidden = number("--hidden"), heads = number("--heads"),
                    kv = number("--kv-heads"), vocab = number("--vocab"), context = number("--context"), shards = number("--shards");
        const std::string dtype = opt.at("--dtype");
        npft::require(dtype == "bf16" || dtype == "f16" || dtype == "f32", "--dtype must be bf16, f16 or f32");
        npft::require(shards >= 1 && dim % heads == 0 && heads % kv == 0, "inconsistent sizes");
        fs::create_directories(dir);
        std::ofstream(dir / "config.json")
            << "{\"model_type\": \"llama\", \"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": " << dim
            << ", \"intermediate_size\": " << hidden << ", \"num_hidden_layers\": " << layers << ", \"num_attention_heads\": " << heads
            << ", \"num_key_value_heads\": " << kv << ", \"vocab_size\": " << vocab << ", \"max_position_embeddings\": " << context
            << ", \"rms_norm_eps\": 1e-05, \"rope_theta\": 10000.0, \"tie_word_embeddings\": false, \"hidden_act\": \"silu\","
            << " \"torch_dtype\": \"" << (dtype == "bf16" ? "bfloat16" : dtype == "f16" ? "float16" : "float32") << "\"}\n";

        std::vector<Shape> shapes = {{"model.embed_tokens.weight", vocab, dim}};
        const Index kv_rows = dim / heads * kv;
        for (Index l = 0; l < layers; ++l) {
            const std::string p = "model.layers." + std::to_string(l) + ".";
            shapes.insert(shapes.end(), {{p + "input_layernorm.weight", dim, 0}, {p + "self_attn.q_proj.weight", dim, dim},
                                         {p + "self_attn.k_proj.weight", kv_rows, dim}, {p + "self_attn.v_proj.weight", kv_rows, dim},
                                         {p + "self_attn.o_proj.weight", dim, dim}, {p + "post_attention_layernorm.weight", dim, 0},
                                         {p + "mlp.gate_proj.weight", hidden, dim}, {p + "mlp.up_proj.weight", hidden, dim},
                                         {p + "mlp.down_proj.weight", dim, hidden}});
        }
        shapes.insert(shapes.end(), {{"model.norm.weight", dim, 0}, {"lm_head.weight", vocab, dim}});

        std::string weight_map;
        const std::size_t per_shard = (shapes.size() + static_cast<std::size_t>(shards) - 1) / static_cast<std::size_t>(shards);
        for (Index s = 0; s < shards; ++s) {
            char file[64];
            std::snprintf(file, sizeof file, "model-%05td-of-%05td.safetensors", s + 1, shards);
            const std::string name = shards == 1 ? "model.safetensors" : file;
            npft::io::SafetensorsWriter w;
            w.add_metadata("format", "pt");
            for (std::size_t t = static_cast<std::size_t>(s) * per_shard; t < std::min(shapes.size(), (static_cast<std::size_t>(s) + 1) * per_shard); ++t) {
                if (dtype == "bf16") add_tensor<npft::bfloat16>(w, shapes[t], t);
                else if (dtype == "f16") add_tensor<npft::half>(w, shapes[t], t);
                else add_tensor<float>(w, shapes[t], t);
                weight_map += std::string(weight_map.empty() ? "" : ", ") + "\"" + shapes[t].name + "\": \"" + name + "\"";
            }
            w.save(dir / name);
            std::fprintf(stderr, "wrote %s\n", (dir / name).string().c_str());
        }
        if (shards > 1) std::ofstream(dir / "model.safetensors.index.json") << "{\"metadata\": {}, \"weight_map\": {" << weight_map << "}}\n";

        if (opt.contains("--tokenizer")) {
            const std::vector<fs::path> text{opt.at("--tokenizer")};
            npft::io::train_sentencepiece(text, static_cast<int>(vocab), dir / "tokenizer.model");
            std::ofstream(dir / "tokenizer_config.json") << "{\"add_bos_token\": true, \"add_eos_token\": false}\n";
        }
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "write_hf_checkpoint: %s\n", e.what());
        return 1;
    }
}
