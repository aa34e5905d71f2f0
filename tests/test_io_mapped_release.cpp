// MappedFile::release / SafetensorsFile::release: pages leave the resident set, the data stays readable and unchanged.
#include <catch2/catch.hpp>
#include <filesystem>
#include <npft/io/mapped_file.hpp>
#include <npft/io/safetensors.hpp>
#include <vector>

using Catch::Contains;

TEST_CASE("released tensors of a mapped safetensors file read back unchanged", "[io][mapped]") {
    const auto path = std::filesystem::temp_directory_path() / "npft_test_mapped_release.safetensors";
    npft::Matrix a(300, 257), b(3, 5);  // a spans many pages, with edges that are not page aligned
    for (npft::Index i = 0; i < a.size(); ++i) a.data()[i] = static_cast<float>(i % 977) - 400.0f;
    for (npft::Index i = 0; i < b.size(); ++i) b.data()[i] = 0.5f * static_cast<float>(i);
    npft::io::SafetensorsWriter w;
    w.add("b", b);
    w.add("a", a);
    w.save(path);
    const auto f = npft::io::SafetensorsFile::map(path);
    CHECK(f.read_matrix("a") == a);
    f.release("a");
    f.release("b");
    CHECK(f.read_matrix("a") == a);
    CHECK(f.read_matrix("b") == b);
    // A file held in memory: release is a no-op.
    const auto loaded = npft::io::SafetensorsFile::load(path);
    loaded.release("a");
    CHECK(loaded.read_matrix("a") == a);

    const npft::io::MappedFile m(path, "test");
    const std::vector<std::byte> elsewhere(16);
    CHECK_THROWS_WITH(m.release(std::span<const std::byte>(elsewhere)), Contains("the range is not in the file"));
    m.release(m.bytes());
    CHECK(f.read_matrix("a") == a);
    std::filesystem::remove(path);
}
