// Writes the GGUF file that tests/python/check_gguf.py compares with PyPI gguf (llama.cpp's reader and quantizers):
// metadata of every value type, and fp32 matrices chosen to stress ggml's Q4_0 and Q8_0 rules (ties, sign of the
// largest-magnitude weight, equal magnitudes of both signs, all-zero blocks, tiny and large scales), each stored as
// NAME.f32 and as NAME.q4_0 / NAME.q8_0 made by npft's GgmlQ4_0Grid / GgmlQ8_0Grid.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>

#include <npft/core/random.hpp>
#include <npft/io/gguf.hpp>
#include <npft/quant/ggml_grids.hpp>
#include <npft/quant/quantizer.hpp>

namespace gguf = npft::io::gguf;
using gguf::Value;

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s OUT.gguf\n", argv[0]);
        return 2;
    }
    try {
        gguf::Writer w;
        w.set("npft.u8", Value::u8(200));
        w.set("npft.i8", Value::i8(-100));
        w.set("npft.u16", Value::u16(60000));
        w.set("npft.i16", Value::i16(-30000));
        w.set("npft.u32", Value::u32(4000000000u));
        w.set("npft.i32", Value::i32(-2000000000));
        w.set("npft.u64", Value::u64(0xfedcba9876543210ull));
        w.set("npft.i64", Value::i64(-0x123456789abcdefll));
        w.set("npft.f32", Value::f32(0.1f));
        w.set("npft.f64", Value::f64(0.1));
        w.set("npft.bool", Value::boolean(true));
        w.set("npft.string", Value::string("h\xc3\xa9llo"));
        w.set("npft.strings", Value::strings({"<0x00>", "", "\xe2\x96\x81the"}));
        w.set("npft.floats", Value::f32s({0.5f, -1.25f}));

        const npft::Index rows = 16, cols = 256;
        const npft::RandomKey key{2026, npft::make_stream(0x66697874)};
        std::uint64_t draw = 0;
        const auto gaussian = [&] { return npft::gaussian(key, draw++); };
        const auto add = [&](const std::string& name, const npft::Matrix& m) {
            w.add_matrix(name + ".f32", npft::as_matrix_view(m));
            w.add_quantized(name + ".q4_0", npft::quant::Quantizer<npft::quant::GgmlQ4_0Grid>().quantize(m), gguf::TensorType::q4_0);
            w.add_quantized(name + ".q8_0", npft::quant::Quantizer<npft::quant::GgmlQ8_0Grid>().quantize(m), gguf::TensorType::q8_0);
        };
        npft::Matrix m(rows, cols);
        for (npft::Index i = 0; i < m.size(); ++i) m.data()[i] = 0.05f * gaussian();
        add("gaussian", m);
        for (npft::Index i = 0; i < m.size(); ++i) m.data()[i] = std::pow(gaussian(), 3.0f);
        add("heavy_tailed", m);
        // Multiples of 1/2 up to 8 in magnitude: with a block maximum of +-8, x * id + 8.5 lands on exact halves.
        for (npft::Index i = 0; i < m.size(); ++i) m.data()[i] = std::round(std::clamp(gaussian() * 6.0f, -16.0f, 16.0f)) / 2.0f;
        for (npft::Index r = 0; r < rows; ++r)
            for (npft::Index b = 0; b < cols / 32; ++b) m(r, b * 32 + (r + b) % 32) = (r + b) % 2 ? 8.0f : -8.0f;
        add("ties", m);
        // Special blocks: all zero; one weight; +3 and -3 both present (the first wins the sign); tiny; large.
        m.setZero();
        for (npft::Index r = 0; r < rows; ++r) {
            m(r, 32 + r) = r % 2 ? 1.0f : -1.0f;
            m(r, 64) = 3.0f, m(r, 70) = -3.0f, m(r, 96) = -3.0f, m(r, 100) = 3.0f;
            for (npft::Index j = 128; j < 160; ++j) m(r, j) = 1e-6f * gaussian();
            for (npft::Index j = 160; j < 192; ++j) m(r, j) = 1e4f * gaussian();
            for (npft::Index j = 192; j < 256; ++j) m(r, j) = static_cast<float>(j - 224) * 0.25f;
        }
        add("special", m);
        w.save(argv[1]);
        std::printf("wrote %s\n", argv[1]);
        return 0;
    } catch (const npft::Error& e) {
        std::fprintf(stderr, "gguf_fixture: %s\n", e.what());
        return 1;
    }
}
