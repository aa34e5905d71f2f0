// Resumable pre-training of the tiny LLaMA: 2000 steps straight and 1000 + save + resume (in a fresh model, on another
// thread count) + 1000 give the same bits; a state from another run is refused with a clear error.
#include <catch2/catch.hpp>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <npft/core/random.hpp>

#include "tiny_llama/pretraining.hpp"

using tiny_llama::Config;
using tiny_llama::Model;
using tiny_llama::Pretrainer;
using tiny_llama::Pretraining;

namespace {

Config tiny_config() {
    Config c;
    c.layers = 1;
    c.dim = 16;
    c.heads = 2;
    c.hidden = 32;
    c.context = 12;
    return c;
}

// A text with structure to learn: words drawn from a small vocabulary.
std::vector<tiny_llama::Token> training_text() {
    const std::vector<std::string> words = {"the ", "lord ", "said ", "unto ", "him, ", "and ", "it ", "was ", "so.\n"};
    std::string text;
    const npft::RandomKey key{9, 9};
    for (std::uint64_t i = 0; i < 3000; ++i)
        text += words[static_cast<std::size_t>(npft::uniform01(key, i) * static_cast<float>(words.size())) % words.size()];
    return tiny_llama::ByteTokenizer{}.encode(text);
}

std::string file_bytes(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

struct TempDir {
    std::filesystem::path path = std::filesystem::temp_directory_path() / "npft_test_llama_pretraining";
    TempDir() {
        std::filesystem::remove_all(path);
        std::filesystem::create_directories(path);
    }
    ~TempDir() { std::filesystem::remove_all(path); }
};

}  // namespace

TEST_CASE("pre-training: 2000 steps straight equal 1000 + resume + 1000, bit for bit", "[llama][pretraining]") {
    const Config c = tiny_config();
    const Pretraining recipe{.steps = 2000, .batch = 4, .lr = 3e-3f};
    const auto text = training_text();
    TempDir dir;

    Model straight(c, 5);
    Pretrainer straight_trainer(straight, recipe, 42);
    double first_loss = 0.0, last_loss = 0.0;
    while (!straight_trainer.done()) {
        const double loss = straight_trainer.train_step(text);
        if (straight_trainer.step() == 1) first_loss = loss;
        last_loss = loss;
    }
    straight_trainer.save(dir.path / "straight.safetensors", "test");
    CHECK(last_loss < 0.6 * first_loss);  // it learned: the test would also pass for a model that never moves

    {
        Model half(c, 5);
        Pretrainer trainer(half, recipe, 42);
        while (trainer.step() < 1000) trainer.train_step(text);
        trainer.save(dir.path / "half.safetensors", "test");
    }
    Model resumed(c, 123);  // other initial weights: everything must come from the state
    resumed.set_threads(2);
    Pretrainer trainer(resumed, recipe, 42);
    trainer.resume(dir.path / "half.safetensors", "test");
    CHECK(trainer.step() == 1000);
    while (!trainer.done()) trainer.train_step(text);
    trainer.save(dir.path / "resumed.safetensors", "test");

    // Weights, both AdamW moments, step and metadata: the two files are the same bytes.
    const std::string a = file_bytes(dir.path / "straight.safetensors"), b = file_bytes(dir.path / "resumed.safetensors");
    REQUIRE(a.size() > 10000);
    CHECK(a == b);
    bool same = true;
    straight.weights().for_each([&](const std::string& name, const npft::Matrix& m) {
        const npft::Matrix* other = nullptr;
        resumed.weights().for_each([&](const std::string& n, const npft::Matrix& r) { if (n == name) other = &r; });
        same = same && other && std::memcmp(m.data(), other->data(), sizeof(float) * static_cast<std::size_t>(m.size())) == 0;
    });
    CHECK(same);
}

TEST_CASE("pre-training: a state from another run is refused, naming the difference", "[llama][pretraining]") {
    const Config c = tiny_config();
    const Pretraining recipe{.steps = 10, .batch = 2, .lr = 1e-3f};
    const auto text = training_text();
    TempDir dir;
    const auto path = dir.path / "state.safetensors";
    {
        Model m(c, 1);
        Pretrainer t(m, recipe, 7);
        t.train_step(text);
        t.save(path, "text=abc");
    }
    Model m(c, 1);
    Pretrainer other_seed(m, recipe, 8);
    CHECK_THROWS_WITH(other_seed.resume(path, "text=abc"), Catch::Contains("seed") && Catch::Contains("'7'"));
    Pretrainer other_run(m, recipe, 7);
    CHECK_THROWS_WITH(other_run.resume(path, "text=xyz"), Catch::Contains("run") && Catch::Contains("text=xyz"));
    Pretrainer other_recipe(m, Pretraining{.steps = 20, .batch = 2, .lr = 1e-3f}, 7);
    CHECK_THROWS_WITH(other_recipe.resume(path, "text=abc"), Catch::Contains("recipe"));
    Config wider = c;
    wider.dim = 32;
    Model w(wider, 1);
    Pretrainer other_config(w, recipe, 7);
    CHECK_THROWS_WITH(other_config.resume(path, "text=abc"), Catch::Contains("config"));
    CHECK_THROWS_AS(other_run.resume(dir.path / "missing.safetensors", "text=abc"), npft::Error);
    Pretrainer same(m, recipe, 7);
    same.resume(path, "text=abc");
    CHECK(same.step() == 1);
    CHECK_THROWS_AS(Pretrainer(m, Pretraining{.steps = 0}, 7), npft::Error);
}
