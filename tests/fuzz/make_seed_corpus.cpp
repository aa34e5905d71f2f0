// Writes the fuzzers' seed corpus with the library's own writers: valid safetensors files (every dtype, metadata,
// an empty tensor), packed matrices in every format, and JSON documents. Usage: make_seed_corpus <output folder>;
// it creates <output>/safetensors, <output>/quantized and <output>/json.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <npft/core/random.hpp>
#include <npft/io/quantized.hpp>
#include <npft/io/safetensors.hpp>
#include <npft/quant/nonuniform.hpp>
#include <npft/quant/quantizer.hpp>
#include <npft/quant/uniform.hpp>

namespace {

namespace fs = std::filesystem;
namespace q = npft::quant;

void write_file(const fs::path& path, const std::vector<std::byte>& bytes) {
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    npft::require(static_cast<bool>(out), "cannot write ", path.string());
}

npft::Matrix weights(npft::Index rows, npft::Index cols) {
    npft::Matrix w(rows, cols);
    for (npft::Index i = 0; i < w.size(); ++i) w.data()[i] = npft::gaussian({11, 0}, static_cast<std::uint64_t>(i));
    return w;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: make_seed_corpus <output folder>\n");
        return 2;
    }
    try {
        const fs::path root = argv[1];
        for (const char* sub : {"safetensors", "quantized", "json"}) fs::create_directories(root / sub);

        npft::io::SafetensorsWriter plain;
        plain.add("f32", weights(3, 4));
        plain.add("f16", std::vector<npft::half>{npft::half(1.5f), npft::half(-2.0f)}, {2});
        plain.add("i64", std::vector<std::int64_t>{1, -2, 3}, {3, 1});
        plain.add("empty", std::vector<float>{}, {0, 4});
        plain.add_metadata("format", "pt");
        write_file(root / "safetensors" / "mixed.safetensors", plain.to_bytes());
        npft::io::SafetensorsWriter single;
        single.add("x", std::vector<std::uint8_t>{7}, {1});
        write_file(root / "safetensors" / "single.safetensors", single.to_bytes());

        const npft::Matrix w = weights(4, 64);
        int count = 0;
        auto save = [&](const q::QuantizedMatrix& m) {
            npft::io::SafetensorsWriter out;
            npft::io::save_quantized(out, "w", m);
            write_file(root / "quantized" / ("w" + std::to_string(count++) + ".safetensors"), out.to_bytes());
        };
        for (const int bits : {2, 3, 4, 8}) {
            save(q::Quantizer<q::UniformGrid>(q::UniformGrid(bits, 32, q::Symmetry::symmetric)).quantize(w));
            save(q::Quantizer<q::UniformGrid>(q::UniformGrid(bits, 0, q::Symmetry::asymmetric)).quantize(w));
            if (bits <= 4) save(q::Quantizer<q::NonUniformGrid>(q::NonUniformGrid(bits)).quantize(w));
        }

        const std::vector<std::string> documents = {
            R"({"a": [1, 2.5e-3, -0, true, false, null], "b": {"c": "\u00e9\ud83d\ude00\n"}})",
            R"([[[[]]], {}, "", 18446744073709551615])",
            R"({"__metadata__": {"k": "v"}, "t": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}})",
        };
        for (std::size_t i = 0; i < documents.size(); ++i) {
            const std::string& d = documents[i];
            std::vector<std::byte> bytes(d.size());
            for (std::size_t j = 0; j < d.size(); ++j) bytes[j] = static_cast<std::byte>(d[j]);
            write_file(root / "json" / ("doc" + std::to_string(i) + ".json"), bytes);
        }
        // Every safetensors header is a JSON document too: the bytes after the 8-byte little-endian header length.
        const std::vector<std::byte> file = plain.to_bytes();
        std::size_t header_length = 0;
        for (int i = 7; i >= 0; --i) header_length = header_length * 256 + std::to_integer<std::size_t>(file[static_cast<std::size_t>(i)]);
        write_file(root / "json" / "header.json",
                   std::vector<std::byte>(file.begin() + 8, file.begin() + 8 + static_cast<std::ptrdiff_t>(header_length)));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "make_seed_corpus: %s\n", e.what());
        return 1;
    }
    return 0;
}
