// The tiny LLaMA's checkpoint files: bf16 storage (what ships in models/) rounds every weight to nearest-even bf16 and
// loads back as exactly that; the config stored in the metadata reads back (stored_config); a reference model folder
// is refused, naming the problem, when it lacks its weights or the tokenizer its vocabulary needs.
#include <catch2/catch.hpp>

#include <bit>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <npft/io/safetensors.hpp>

#include "reference_checkpoint.hpp"
#include "tiny_llama/checkpoint.hpp"
#include "tiny_llama/weights.hpp"

using tiny_llama::Config;

namespace {

namespace fs = std::filesystem;

Config tiny_config() {
    Config c;
    c.layers = 2;
    c.dim = 16;
    c.heads = 4;
    c.kv_heads = 2;
    c.hidden = 24;
    c.context = 12;
    c.rope_theta = 500000.0f;
    c.norm_eps = 1e-6f;
    return c;
}

fs::path scratch(const std::string& name) {
    const fs::path dir = fs::temp_directory_path() / ("npft_test_llama_checkpoint_" + name);
    fs::remove_all(dir);
    fs::create_directories(dir);
    return dir;
}

// Round to nearest even on the upper 16 bits, written here independently of npft::bfloat16.
float bf16_reference(float x) {
    std::uint32_t bits = std::bit_cast<std::uint32_t>(x);
    const std::uint32_t lower = bits & 0xFFFFu, halfway = 0x8000u;
    bits &= 0xFFFF0000u;
    if (lower > halfway || (lower == halfway && (bits & 0x10000u) != 0)) bits += 0x10000u;
    return std::bit_cast<float>(bits);
}

}  // namespace

TEST_CASE("checkpoint: bf16 storage loads back as each weight rounded to nearest-even bf16", "[llama][checkpoint]") {
    const Config c = tiny_config();
    const tiny_llama::Weights w = tiny_llama::initial_weights(c, 5);
    const fs::path dir = scratch("bf16");
    tiny_llama::save_weights(dir / "f32.safetensors", c, w, "k");
    tiny_llama::save_weights(dir / "bf16.safetensors", c, w, "k", tiny_llama::WeightStorage::bf16);
    CHECK(fs::file_size(dir / "bf16.safetensors") < fs::file_size(dir / "f32.safetensors") * 6 / 10);

    const tiny_llama::Weights exact = tiny_llama::load_weights(dir / "f32.safetensors", c);
    const tiny_llama::Weights rounded = tiny_llama::load_weights(dir / "bf16.safetensors", c);
    std::vector<const npft::Matrix*> originals, exacts;
    w.for_each([&](const std::string&, const npft::Matrix& m) { originals.push_back(&m); });
    exact.for_each([&](const std::string&, const npft::Matrix& m) { exacts.push_back(&m); });
    std::size_t i = 0, changed = 0, compared = 0;
    rounded.for_each([&](const std::string& name, const npft::Matrix& m) {
        const npft::Matrix& original = *originals[i];
        CHECK((*exacts[i] == original));  // fp32 storage is exact
        for (npft::Index r = 0; r < m.rows(); ++r)
            for (npft::Index col = 0; col < m.cols(); ++col) {
                ++compared;
                if (m(r, col) != bf16_reference(original(r, col))) FAIL(name << "(" << r << "," << col << ")");
                changed += m(r, col) != original(r, col);
            }
        ++i;
    });
    CHECK(compared > 1000);
    CHECK(changed > compared / 2);  // rounding did happen (random fp32 weights are almost never bf16 already)
}

TEST_CASE("checkpoint: stored_config reads back the config, and names a malformed field", "[llama][checkpoint]") {
    const Config c = tiny_config();
    const fs::path dir = scratch("config");
    tiny_llama::save_weights(dir / "m.safetensors", c, tiny_llama::initial_weights(c, 1), "k");
    const Config back = tiny_llama::stored_config(dir / "m.safetensors");
    CHECK(back.describe() == c.describe());
    CHECK(back.kv_heads == 2);
    CHECK(back.rope_theta == 500000.0f);

    const auto with_config = [&](const std::string& text) {
        npft::io::SafetensorsWriter writer;
        writer.add_metadata("config", text);
        writer.add("x", std::vector<float>{1.0f}, {1});
        writer.save(dir / "bad.safetensors");
        return dir / "bad.safetensors";
    };
    CHECK_THROWS_WITH(tiny_llama::stored_config(with_config("vocab=256 layers=two dim=16")),
                      Catch::Contains("config field 'layers=two' is not a number"));
    CHECK_THROWS_WITH(tiny_llama::stored_config(with_config("vocab=256 layers=2 depth=3")),
                      Catch::Contains("unknown config field 'depth'"));
    CHECK_THROWS_WITH(tiny_llama::stored_config(with_config("vocab=256 layers=2x")), Catch::Contains("'layers=2x' is not a number"));
    CHECK_THROWS_WITH(tiny_llama::stored_config(with_config("vocab=256 layers=2 dim=15 heads=4")),
                      Catch::Contains("multiple of the head count"));
}

TEST_CASE("reference model folder: loads a byte-level model; refuses a missing file or tokenizer", "[llama][checkpoint]") {
    Config c = tiny_config();
    const fs::path dir = scratch("reference");
    CHECK_THROWS_WITH(demo::load_reference_model(dir), Catch::Contains("has no reference.safetensors"));

    tiny_llama::save_weights(dir / "reference.safetensors", c, tiny_llama::initial_weights(c, 2), "trained-so",
                             tiny_llama::WeightStorage::bf16);
    const demo::ReferenceModel m = demo::load_reference_model(dir);
    CHECK(m.config.describe() == c.describe());
    CHECK_FALSE(m.tokenizer.has_value());
    CHECK(m.key == "trained-so");

    c.vocab = 300;
    tiny_llama::save_weights(dir / "reference.safetensors", c, tiny_llama::initial_weights(c, 2), "k");
    CHECK_THROWS_WITH(demo::load_reference_model(dir), Catch::Contains("no tokenizer.model"));
}
