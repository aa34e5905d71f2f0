// GGUF writer and reader, ggml's block encodings, and the grids that are llama.cpp's Q4_0 and Q8_0.
// References are independent of the code under test: byte layouts spelled out from the GGUF spec (ggml docs/gguf.md),
// blocks worked out by hand from ggml's reference quantizer rules, and corruptions built byte by byte. The bytes are
// also checked against PyPI gguf's own quantizers by tests/python/check_gguf.py (test_gguf_python).
#include <catch2/catch.hpp>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <npft/core/random.hpp>
#include <npft/io/gguf.hpp>
#include <npft/quant/ggml_grids.hpp>
#include <npft/quant/nonuniform.hpp>
#include <npft/quant/quantizer.hpp>
#include <npft/quant/uniform.hpp>
#include <string>
#include <vector>

using Catch::Contains;
using Index = npft::Index;
namespace gguf = npft::io::gguf;
namespace quant = npft::quant;
using gguf::TensorType;
using gguf::Value;
using gguf::ValueType;

namespace {

// Little-endian byte builders for hand-written expected files.
struct Bytes {
    std::vector<std::byte> b;
    Bytes& u8(unsigned v) {
        b.push_back(static_cast<std::byte>(v));
        return *this;
    }
    Bytes& u32(std::uint32_t v) {
        for (int i = 0; i < 4; ++i) u8((v >> (8 * i)) & 0xffu);
        return *this;
    }
    Bytes& u64(std::uint64_t v) {
        for (int i = 0; i < 8; ++i) u8(static_cast<unsigned>((v >> (8 * i)) & 0xffu));
        return *this;
    }
    Bytes& str(const std::string& s) {
        u64(s.size());
        for (const char c : s) u8(static_cast<unsigned char>(c));
        return *this;
    }
    Bytes& f32(float f) {
        std::uint32_t bits;
        std::memcpy(&bits, &f, 4);
        return u32(bits);
    }
    Bytes& pad_to(std::size_t alignment) {
        while (b.size() % alignment != 0) u8(0);
        return *this;
    }
};

gguf::File parse(std::vector<std::byte> bytes) { return gguf::File::from_bytes(std::move(bytes), "test.gguf"); }

npft::Matrix random_matrix(Index rows, Index cols, std::uint64_t seed, float scale = 0.05f) {
    npft::Matrix m(rows, cols);
    const npft::RandomKey key{seed, npft::make_stream(0x6767)};
    for (Index i = 0; i < m.size(); ++i) m.data()[i] = scale * npft::gaussian(key, static_cast<std::uint64_t>(i));
    return m;
}

template <class Grid>
std::vector<std::byte> ggml_blocks(const npft::Matrix& w, Grid grid, TensorType type) {
    const quant::QuantizedMatrix q = quant::Quantizer<Grid>(grid).quantize(w);
    return gguf::encode_quantized(q, type, "w");
}

}  // namespace

TEST_CASE("gguf writer lays out a file byte for byte as the spec says", "[io][gguf]") {
    gguf::Writer w;
    w.set("general.architecture", Value::string("llama"));
    w.set("n", Value::u32(7));
    const std::vector<float> v = {1.0f, -2.0f, 0.5f};
    w.add_vector("norm", v);

    Bytes e;
    e.u8('G').u8('G').u8('U').u8('F').u32(3).u64(1).u64(3);
    e.str("general.architecture").u32(8).str("llama");
    e.str("n").u32(4).u32(7);
    e.str("general.alignment").u32(4).u32(32);  // written when not set
    e.str("norm").u32(1).u64(3).u32(0).u64(0);   // 1 dimension of 3, type F32, offset 0
    e.pad_to(32);
    e.f32(1.0f).f32(-2.0f).f32(0.5f).pad_to(32);
    CHECK(w.to_bytes() == e.b);

    const gguf::File f = parse(e.b);
    CHECK(f.file_version() == 3);
    CHECK(f.get("general.architecture").as_string() == "llama");
    CHECK(f.get("n").as_uint() == 7);
    REQUIRE(f.tensors().size() == 1);
    CHECK(f.tensor("norm").ne == std::vector<std::uint64_t>{3});
    const npft::Matrix back = f.read_matrix("norm");
    CHECK(back(0, 0) == 1.0f);
    CHECK(back(0, 1) == -2.0f);
    CHECK(back(0, 2) == 0.5f);
}

TEST_CASE("gguf metadata of every value type survives a round trip", "[io][gguf]") {
    gguf::Writer w;
    w.set("u8", Value::u8(200));
    w.set("i8", Value::i8(-100));
    w.set("u16", Value::u16(60000));
    w.set("i16", Value::i16(-30000));
    w.set("u32", Value::u32(4000000000u));
    w.set("i32", Value::i32(-2000000000));
    w.set("u64", Value::u64(0xfedcba9876543210ull));
    w.set("i64", Value::i64(-0x123456789abcdefll));
    w.set("f32", Value::f32(0.1f));
    w.set("f64", Value::f64(0.1));
    w.set("bool", Value::boolean(true));
    w.set("string", Value::string("h\xc3\xa9llo"));
    w.set("strings", Value::strings({"<0x00>", "", "\xe2\x96\x81the"}));
    w.set("nested", Value::array(ValueType::array, {Value::i32s({1, -2}), Value::i32s({})}));
    w.set(std::string(gguf::alignment_key), Value::u32(64));
    CHECK_THROWS_WITH(w.set("u8", Value::u8(1)), Contains("key 'u8' was already set"));
    CHECK_THROWS_WITH(Value::array(ValueType::f32, {Value::i32(1)}), Contains("array of FLOAT32 cannot hold a INT32"));

    const gguf::File f = parse(w.to_bytes());
    CHECK(f.alignment() == 64);
    CHECK(f.get("u8").uint == 200);
    CHECK(f.get("i8").sint == -100);
    CHECK(f.get("u16").uint == 60000);
    CHECK(f.get("i16").sint == -30000);
    CHECK(f.get("u32").uint == 4000000000u);
    CHECK(f.get("i32").sint == -2000000000);
    CHECK(f.get("u64").uint == 0xfedcba9876543210ull);
    CHECK(f.get("i64").sint == -0x123456789abcdefll);
    CHECK(f.get("f32").real == static_cast<double>(0.1f));
    CHECK(f.get("f64").real == 0.1);
    CHECK(f.get("bool").flag);
    CHECK(f.get("string").text == "h\xc3\xa9llo");
    const Value& s = f.get("strings");
    REQUIRE(s.items.size() == 3);
    CHECK(s.items[2].text == "\xe2\x96\x81the");
    CHECK(f.get("nested").items[0].items[1].sint == -2);
    CHECK(f.get("nested").items[1].items.empty());
    CHECK_THROWS_WITH(f.get("missing"), Contains("test.gguf: no metadata key 'missing'"));
    CHECK_THROWS_WITH(f.get("string").as_uint(), Contains("STRING is not a non-negative integer"));
}

TEST_CASE("Q4_0 grid and blocks follow ggml's reference rule, worked by hand", "[io][gguf][ggml]") {
    // x_j = j - 16: the largest magnitude is x_0 = -16, so d = -16 / -8 = 2 and id = 0.5;
    // q_j = min(15, trunc(x_j / 2 + 8.5)) = trunc(j / 2 + 0.5): 0 1 1 2 2 3 3 ... 15 15 (j = 31 gives 16, clamped).
    npft::Matrix w(1, 32);
    for (Index j = 0; j < 32; ++j) w(0, j) = static_cast<float>(j - 16);
    std::vector<unsigned> q(32);
    for (unsigned j = 0; j < 32; ++j) q[j] = std::min(15u, (j + 1) / 2);
    Bytes e;
    e.u8(0x00).u8(0x40);  // fp16 2.0
    for (unsigned j = 0; j < 16; ++j) e.u8(q[j] | (q[j + 16] << 4));
    CHECK(ggml_blocks(w, quant::GgmlQ4_0Grid{}, TensorType::q4_0) == e.b);

    // Mirrored, x_j = 16 - j: now the largest magnitude is +16, so d = -2 (the sign is part of the scale) and
    // q_j = trunc(-(16 - j) / 2 + 8.5) gives the same codes.
    for (Index j = 0; j < 32; ++j) w(0, j) = static_cast<float>(16 - j);
    e.b[1] = std::byte{0xc0};  // fp16 -2.0
    const quant::QuantizedMatrix signed_scale = quant::Quantizer<quant::GgmlQ4_0Grid>().quantize(w);
    CHECK(gguf::encode_quantized(signed_scale, TensorType::q4_0, "w") == e.b);
    CHECK(signed_scale.dequantize_at(0, 0) == 16.0f);  // (0 - 8) * -2

    // Ties round half up (towards +inf), not to even: with d = 1 (max -8), 0.5 -> 9, -0.5 -> 8, 2.5 -> 11, -2.5 -> 6.
    for (Index j = 0; j < 32; ++j) w(0, j) = 0.0f;
    w(0, 0) = -8.0f, w(0, 1) = 0.5f, w(0, 2) = -0.5f, w(0, 3) = 2.5f, w(0, 17) = -2.5f;
    const auto tie = ggml_blocks(w, quant::GgmlQ4_0Grid{}, TensorType::q4_0);
    CHECK(static_cast<unsigned>(tie[2]) == (0u | (8u << 4)));   // x_0 = -8 -> 0, x_16 = 0 -> 8
    CHECK(static_cast<unsigned>(tie[3]) == (9u | (6u << 4)));   // x_1 = 0.5 -> 9, x_17 = -2.5 -> 6
    CHECK(static_cast<unsigned>(tie[4]) == (8u | (8u << 4)));   // x_2 = -0.5 -> 8
    CHECK(static_cast<unsigned>(tie[5]) == (11u | (8u << 4)));  // x_3 = 2.5 -> 11
}

TEST_CASE("Q8_0 grid and blocks follow ggml's reference rule, worked by hand", "[io][gguf][ggml]") {
    // amax = 127 gives d = 1, id = 1: q = roundf(x), halves away from zero (2.5 -> 3, -2.5 -> -3, 0.5 -> 1).
    npft::Matrix w = npft::Matrix::Zero(1, 32);
    w(0, 0) = 127.0f, w(0, 1) = 2.5f, w(0, 2) = -2.5f, w(0, 3) = 0.5f, w(0, 4) = -127.0f, w(0, 31) = 3.49f;
    Bytes e;
    e.u8(0x00).u8(0x3c);  // fp16 1.0
    std::vector<int> q(32, 0);
    q[0] = 127, q[1] = 3, q[2] = -3, q[3] = 1, q[4] = -127, q[31] = 3;
    for (const int v : q) e.u8(static_cast<unsigned>(static_cast<std::uint8_t>(static_cast<std::int8_t>(v))));
    CHECK(ggml_blocks(w, quant::GgmlQ8_0Grid{}, TensorType::q8_0) == e.b);

    // An all-zero block: d = 0, every code 0.
    const npft::Matrix zero = npft::Matrix::Zero(2, 64);
    const auto z = ggml_blocks(zero, quant::GgmlQ8_0Grid{}, TensorType::q8_0);
    CHECK(z == std::vector<std::byte>(4 * 34, std::byte{0}));
}

TEST_CASE("quantized matrices export exactly or are refused with the nearest lossless type", "[io][gguf]") {
    const npft::Matrix w = random_matrix(6, 128, 11);
    const auto decoded = [](const std::vector<std::byte>& bytes, TensorType t, Index rows, Index cols) {
        npft::Matrix out(rows, cols);
        gguf::decode(t, bytes, std::span<float>(out.data(), static_cast<std::size_t>(out.size())));
        return out;
    };
    // Q4_0 / Q8_0 grids: the blocks decode (ggml's formulas) to exactly npft's dequantized weights.
    for (const auto& [q, t] : {std::pair{quant::Quantizer<quant::GgmlQ4_0Grid>().quantize(w), TensorType::q4_0},
                               std::pair{quant::Quantizer<quant::GgmlQ8_0Grid>().quantize(w), TensorType::q8_0}}) {
        CHECK(decoded(gguf::encode_quantized(q, t, "w"), t, 6, 128) == q.dequantize());
        CHECK(gguf::nearest_lossless_type(q) == t);
    }
    // npft's own symmetric 4-bit g128 is Q4_0 too (a group is four blocks sharing a scale); 3-bit fits in Q4_0's range.
    for (const int bits : {3, 4}) {
        const auto q = quant::Quantizer<quant::UniformGrid>(quant::UniformGrid(bits, 128, quant::Symmetry::symmetric)).quantize(w);
        CHECK(decoded(gguf::encode_quantized(q, TensorType::q4_0, "w"), TensorType::q4_0, 6, 128) == q.dequantize());
        CHECK(decoded(gguf::encode_quantized(q, TensorType::q8_0, "w"), TensorType::q8_0, 6, 128) == q.dequantize());
    }
    // Asymmetric 4-bit: levels q - zero reach [-15, 15], outside Q4_0; Q8_0 holds them exactly.
    const auto asym = quant::Quantizer<quant::UniformGrid>(quant::UniformGrid(4, 32)).quantize(w);
    CHECK_THROWS_WITH(gguf::encode_quantized(asym, TensorType::q4_0, "blk.0.attn_q.weight"),
                      Contains("tensor 'blk.0.attn_q.weight': a 4-bit uniform_asymmetric matrix (group 32) cannot be stored as Q4_0 "
                               "without loss"));
    CHECK(decoded(gguf::encode_quantized(asym, TensorType::q8_0, "w"), TensorType::q8_0, 6, 128) == asym.dequantize());
    // Q4_1 stores w = d q + m: exact exactly when m = -scale * zero is an fp16 value. Make one group that is, one that is not.
    quant::QuantizedMatrix q41(quant::Format::uniform_asymmetric, 4, 1, 64, 32);
    q41.set_group(0, 0, {4, 0.5f, 3.0f});          // m = -1.5: fp16
    q41.set_group(0, 1, {4, 0.0999755859375f, 7.0f});  // fp16 scale, m = -0.69982910... needs 14 significant bits
    for (Index j = 0; j < 64; ++j) q41.codes().set(0, j, static_cast<std::uint32_t>(j % 16));
    CHECK_THROWS_WITH(gguf::encode_quantized(q41, TensorType::q4_1, "w"),
                      Contains("row 0, group 1 is not an fp16 value; the nearest lossless GGUF type is Q8_0"));
    q41.set_group(0, 1, {4, 0.0999755859375f, 0.0f});
    CHECK(decoded(gguf::encode_quantized(q41, TensorType::q4_1, "w"), TensorType::q4_1, 1, 64) == q41.dequantize());
    // Groups that are not whole blocks of 32, and lookup tables, have no block type.
    const auto g16 = quant::Quantizer<quant::UniformGrid>(quant::UniformGrid(4, 16, quant::Symmetry::symmetric)).quantize(w);
    CHECK_THROWS_WITH(gguf::encode_quantized(g16, TensorType::q8_0, "w"), Contains("groups of 16 inputs are not whole blocks of 32"));
    const auto lut = quant::Quantizer<quant::NonUniformGrid>(quant::NonUniformGrid(4)).quantize(w);
    CHECK_THROWS_WITH(gguf::encode_quantized(lut, TensorType::q4_0, "w"),
                      Contains("GGUF has no type for non-uniform lookup-table levels") && Contains("nearest lossless GGUF type is F16"));
    CHECK(decoded(gguf::encode_quantized(lut, TensorType::f16, "w"), TensorType::f16, 6, 128) == lut.dequantize());
}

TEST_CASE("gguf tensors of every type round-trip through a mapped file", "[io][gguf]") {
    const std::filesystem::path path = std::filesystem::temp_directory_path() /
                                       ("npft_test_gguf_" + std::to_string(std::chrono::system_clock::now().time_since_epoch().count()) + ".gguf");
    const npft::Matrix w = random_matrix(3, 64, 5);
    gguf::Writer out;
    out.set("general.architecture", Value::string("llama"));
    out.add_matrix("f32", npft::as_matrix_view(w), TensorType::f32);
    out.add_matrix("f16", npft::as_matrix_view(w), TensorType::f16);
    out.add_matrix("bf16", npft::as_matrix_view(w), TensorType::bf16);
    const auto q4 = quant::Quantizer<quant::GgmlQ4_0Grid>().quantize(w);
    const auto q8 = quant::Quantizer<quant::GgmlQ8_0Grid>().quantize(w);
    out.add_quantized("q4_0", q4, TensorType::q4_0);
    out.add_quantized("q8_0", q8, TensorType::q8_0);
    CHECK_THROWS_WITH(out.add_matrix("f32", npft::as_matrix_view(w)), Contains("tensor 'f32' was already added"));
    out.save(path);
    {
        const gguf::File f = gguf::File::load(path);
        CHECK(f.tensor("q4_0").ne == std::vector<std::uint64_t>{64, 3});
        CHECK(f.tensor("q4_0").bytes == 3 * 2 * 18);
        CHECK(f.read_matrix("f32") == w);
        CHECK(f.read_matrix("q4_0") == q4.dequantize());
        CHECK(f.read_matrix("q8_0") == q8.dequantize());
        const npft::Matrix h = f.read_matrix("f16"), b = f.read_matrix("bf16");
        for (Index i = 0; i < w.size(); ++i) {
            CHECK(h.data()[i] == static_cast<float>(npft::half(w.data()[i])));
            CHECK(b.data()[i] == static_cast<float>(npft::bfloat16(w.data()[i])));
        }
        for (const auto& t : f.tensors()) CHECK(t.offset % 32 == 0);
    }
    std::filesystem::remove(path);
    CHECK_THROWS_WITH(gguf::File::load(path), Contains("cannot be opened"));
}

TEST_CASE("gguf reader rejects hostile files with a clear error", "[io][gguf]") {
    gguf::Writer w;
    w.set("general.architecture", Value::string("llama"));
    w.set("tokens", Value::strings({"a", "b"}));
    const npft::Matrix t = random_matrix(2, 32, 3);
    w.add_matrix("t", npft::as_matrix_view(t), TensorType::f32);
    w.add_quantized("q", quant::Quantizer<quant::GgmlQ4_0Grid>().quantize(random_matrix(2, 32, 4)), TensorType::q4_0);
    const std::vector<std::byte> good = w.to_bytes();
    REQUIRE_NOTHROW(parse(good));

    // Every truncation that cuts into a tensor is an npft::Error, never a crash. The last tensor (2 Q4_0 blocks, 36
    // bytes) is followed by 28 bytes of padding, which a file may omit.
    const std::size_t last_byte = good.size() - 28;
    CHECK_NOTHROW(parse(std::vector<std::byte>(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(last_byte))));
    for (std::size_t n = 0; n < last_byte; n += (n < 400 ? 1 : 7))
        CHECK_THROWS_AS(parse(std::vector<std::byte>(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(n))), npft::Error);

    // Random byte flips: parsed or refused, never undefined behaviour (run under the sanitizers).
    const npft::RandomKey key{17, npft::make_stream(0x666c6970)};
    for (std::uint64_t trial = 0; trial < 3000; ++trial) {
        std::vector<std::byte> bad = good;
        for (std::uint64_t k = 0; k < 3; ++k) {
            const auto at = static_cast<std::size_t>(npft::uniform01(key, trial * 6 + 2 * k) * static_cast<float>(bad.size()));
            bad[std::min(at, bad.size() - 1)] = static_cast<std::byte>(npft::uniform01(key, trial * 6 + 2 * k + 1) * 256.0f);
        }
        try {
            const gguf::File f = parse(bad);
            for (const auto& t : f.tensors()) (void)f.read_matrix(t.name);
        } catch (const npft::Error&) {
        }
    }

    const auto header_of = [](std::uint32_t version, std::uint64_t tensors, std::uint64_t kvs) {
        Bytes b;
        b.u8('G').u8('G').u8('U').u8('F').u32(version).u64(tensors).u64(kvs);
        return b;
    };
    CHECK_THROWS_WITH(parse(Bytes().u32(0x46554746).b), Contains("not a GGUF file"));
    CHECK_THROWS_WITH(parse(header_of(1, 0, 0).b), Contains("GGUF version 1 is not supported"));
    CHECK_THROWS_WITH(parse(header_of(3, 0, 1ull << 60).b), Contains("metadata count 1152921504606846976 cannot fit"));
    CHECK_THROWS_WITH(parse(header_of(3, 0, 1).str("k").u32(8).u64(1ull << 62).b), Contains("truncated: a string value needs"));
    CHECK_THROWS_WITH(parse(header_of(3, 0, 1).str("k").u32(9).u32(6).u64(1ull << 40).b),
                      Contains("key 'k': array of 1099511627776 FLOAT32 values does not fit"));
    CHECK_THROWS_WITH(parse(header_of(3, 0, 1).str("k").u32(13).b), Contains("key 'k' has unknown value type 13"));
    CHECK_THROWS_WITH(parse(header_of(3, 0, 1).str("k").u32(7).u8(2).b), Contains("BOOL value 2"));
    CHECK_THROWS_WITH(parse(header_of(3, 0, 2).str("k").u32(4).u32(1).str("k").u32(4).u32(1).b), Contains("key 'k' appears twice"));
    CHECK_THROWS_WITH(parse(header_of(3, 0, 1).str("general.alignment").u32(4).u32(24).b), Contains("power of two, got UINT32 24"));
    CHECK_THROWS_WITH(parse(header_of(3, 0, 1).str("general.alignment").u32(10).u64(32).b), Contains("power of two, got UINT64"));

    const auto one_tensor = [&](std::uint32_t dims, std::vector<std::uint64_t> ne, std::uint32_t type, std::uint64_t offset,
                                std::size_t data_bytes) {
        Bytes b = header_of(3, 1, 0);
        b.str("x").u32(dims);
        for (const auto d : ne) b.u64(d);
        b.u32(type).u64(offset).pad_to(32);
        b.b.resize(b.b.size() + data_bytes);
        return b.b;
    };
    CHECK_NOTHROW(parse(one_tensor(2, {32, 2}, 2, 0, 36)));
    CHECK_THROWS_WITH(parse(one_tensor(2, {32, 2}, 2, 0, 35)), Contains("tensor 'x': bytes [0, 35...) run past the 35-byte data section"));
    CHECK_THROWS_WITH(parse(one_tensor(5, {1, 1, 1, 1, 1}, 0, 0, 4)), Contains("tensor 'x' has 5 dimensions"));
    CHECK_THROWS_WITH(parse(one_tensor(2, {16, 2}, 2, 0, 36)), Contains("ne[0] = 16 is not a multiple of Q4_0's block of 32"));
    CHECK_THROWS_WITH(parse(one_tensor(1, {4}, 12, 0, 64)), Contains("tensor 'x' has ggml type 12, which this reader does not support"));
    CHECK_THROWS_WITH(parse(one_tensor(1, {4}, 0, 8, 64)), Contains("offset 8 is not a multiple of the alignment 32"));
    CHECK_THROWS_WITH(parse(one_tensor(2, {1ull << 32, 1ull << 32}, 0, 0, 4)), Contains("element count overflows"));
    CHECK_THROWS_WITH(parse(one_tensor(2, {0, 1}, 0, 0, 4)), Contains("empty dimension ne[0]"));
    CHECK_THROWS_WITH(parse(one_tensor(1, {1ull << 62}, 0, 0, 4)), Contains("byte size overflows"));
    Bytes overlap = header_of(3, 2, 0);
    overlap.str("a").u32(1).u64(16).u32(0).u64(0).str("b").u32(1).u64(8).u32(0).u64(32).pad_to(32);
    overlap.b.resize(overlap.b.size() + 64);
    CHECK_THROWS_WITH(parse(overlap.b), Contains("tensors 'a' and 'b' overlap"));
    Bytes twice = header_of(3, 2, 0);
    twice.str("a").u32(1).u64(8).u32(0).u64(0).str("a").u32(1).u64(8).u32(0).u64(32).pad_to(32);
    CHECK_THROWS_WITH(parse(twice.b), Contains("tensor 'a' appears twice"));
}
