// safetensors reader/writer, the JSON header parser, and quantized-matrix files.
// References are independent of the code under test: headers and byte buffers written by hand from the format's
// README, expected bytes spelled out, and corruptions built byte by byte.
#include <catch2/catch.hpp>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <map>
#include <npft/core/random.hpp>
#include <npft/io/quantized.hpp>
#include <npft/io/safetensors.hpp>
#include <npft/quant/quantizer.hpp>
#include <npft/quant/uniform.hpp>
#include <string>
#include <vector>

using Catch::Contains;
using Index = npft::Index;  // plain `index` would clash with POSIX index() from <strings.h>
namespace io = npft::io;
namespace json = npft::io::json;
namespace quant = npft::quant;

namespace {

// A fresh directory under the system temp directory, removed with its contents at scope exit.
struct TempDir {
    std::filesystem::path path;
    TempDir() {
        static int counter = 0;
        path = std::filesystem::temp_directory_path() /
               ("npft_test_io_" + std::to_string(std::chrono::system_clock::now().time_since_epoch().count()) + "_" +
                std::to_string(counter++));
        std::filesystem::create_directories(path);
    }
    ~TempDir() {
        std::error_code ignored;
        std::filesystem::remove_all(path, ignored);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
};

std::uint64_t random_bits64(std::uint64_t stream, std::uint64_t i) {
    const auto w = npft::random_words(npft::RandomKey{20261123, stream}, i);
    return (static_cast<std::uint64_t>(w[1]) << 32) | w[0];
}

// Arbitrary bit patterns (NaNs, infinities and subnormals included for the float types): a round trip must keep bits.
template <class T>
std::vector<T> random_values(std::size_t n, std::uint64_t stream) {
    std::vector<T> out(n);
    for (std::size_t i = 0; i < n; ++i) {
        const std::uint64_t bits = random_bits64(stream, i);
        std::memcpy(static_cast<void*>(&out[i]), &bits, sizeof(T));  // half/bfloat16 are trivially copyable
    }
    return out;
}

template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
    return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

std::vector<std::byte> to_bytes(const std::vector<unsigned>& values) {
    std::vector<std::byte> out;
    for (const unsigned v : values) out.push_back(static_cast<std::byte>(v));
    return out;
}

// A file from its parts, built without the writer: 8-byte little-endian header length, header text, data bytes.
std::vector<std::byte> make_file(const std::string& header, const std::vector<unsigned>& data = {}) {
    std::vector<std::byte> out;
    const std::uint64_t n = header.size();
    for (int i = 0; i < 8; ++i) out.push_back(static_cast<std::byte>((n >> (8 * i)) & 0xff));
    for (const char c : header) out.push_back(static_cast<std::byte>(c));
    for (const unsigned v : data) out.push_back(static_cast<std::byte>(v));
    return out;
}

io::SafetensorsFile parse(const std::string& header, const std::vector<unsigned>& data = {}) {
    return io::SafetensorsFile::from_bytes(make_file(header, data), "test");
}

std::vector<unsigned> zeros(std::size_t n) { return std::vector<unsigned>(n, 0); }

}  // namespace

// ---- JSON -----------------------------------------------------------------------------------------

TEST_CASE("json parses objects, arrays, literals, numbers and escapes", "[io][json]") {
    const json::Value v = json::parse(R"( {"a": [1, -2.5e3, 0, true, false, null], "s": "q\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00", "o": {}} )");
    REQUIRE(v.is_object());
    REQUIRE(v.members.size() == 3);
    CHECK(v.members[0].key == "a");
    const json::Value& a = v.members[0].value;
    REQUIRE(a.items.size() == 6);
    CHECK(a.items[0].text == "1");
    CHECK(a.items[1].text == "-2.5e3");
    CHECK(a.items[3].kind == json::Value::Kind::boolean);
    CHECK(a.items[3].boolean);
    CHECK_FALSE(a.items[4].boolean);
    CHECK(a.items[5].kind == json::Value::Kind::null);
    // U+00E9 is C3 A9 in UTF-8; U+1F600 (the surrogate pair) is F0 9F 98 80.
    CHECK(v.members[1].value.text == "q\"\\/\b\f\n\r\t\xC3\xA9\xF0\x9F\x98\x80");
    CHECK(v.members[2].value.is_object());
    CHECK(v.members[2].value.members.empty());
}

TEST_CASE("json rejects malformed input with the byte position", "[io][json]") {
    CHECK_THROWS_WITH(json::parse("[1,]"), Contains("invalid JSON at byte 3"));
    CHECK_THROWS_WITH(json::parse("{\"a\":1,}"), Contains("expected a string key"));
    CHECK_THROWS_WITH(json::parse("01"), Contains("leading zeros"));
    CHECK_THROWS_WITH(json::parse("{} x"), Contains("after the JSON value"));
    CHECK_THROWS_WITH(json::parse("\"a\x01\""), Contains("control character 0x01"));
    CHECK_THROWS_WITH(json::parse("\"\xff\""), Contains("invalid UTF-8"));
    CHECK_THROWS_WITH(json::parse("\"\xC0\xAF\""), Contains("invalid UTF-8"));  // overlong '/'
    CHECK_THROWS_WITH(json::parse("\"\\ud800\""), Contains("unpaired high surrogate"));
    CHECK_THROWS_WITH(json::parse("\"\\x\""), Contains("invalid escape"));
    CHECK_THROWS_WITH(json::parse("\"abc"), Contains("unterminated string"));
    CHECK_THROWS_WITH(json::parse("{\"k\":1,\"k\":2}"), Contains("duplicate key \"k\""));
    CHECK_THROWS_WITH(json::parse("tru"), Contains("expected a value"));
    CHECK_THROWS_WITH(json::parse(""), Contains("end of input"));
    CHECK_THROWS_WITH(json::parse(std::string(65, '[') + std::string(65, ']')), Contains("nesting deeper than 64"));
    CHECK_NOTHROW(json::parse(std::string(64, '[') + std::string(64, ']')));
}

TEST_CASE("json integers convert only when exact", "[io][json]") {
    const auto number = [](const char* text) { return json::as_uint64(json::parse(text)); };
    CHECK(number("0") == 0u);
    CHECK(number("18446744073709551615") == 18446744073709551615ull);
    CHECK_FALSE(number("18446744073709551616").has_value());
    CHECK_FALSE(number("1.0").has_value());
    CHECK_FALSE(number("1e3").has_value());
    CHECK_FALSE(number("-1").has_value());
    CHECK_FALSE(number("\"7\"").has_value());
}

TEST_CASE("json quote escapes what it must and round-trips", "[io][json]") {
    const std::string text = std::string("a\"b\\c\n\x01\x1f") + "\xC3\xA9";
    CHECK(json::quote(text) == "\"a\\\"b\\\\c\\n\\u0001\\u001f\xC3\xA9\"");
    CHECK(json::parse(json::quote(text)).text == text);
}

// ---- Round trips ----------------------------------------------------------------------------------

TEMPLATE_TEST_CASE("every dtype and shape round-trips bit for bit", "[io][safetensors]", std::uint8_t, std::int8_t,
                   std::uint16_t, std::int16_t, std::uint32_t, std::int32_t, std::uint64_t, std::int64_t, npft::half,
                   npft::bfloat16, float, double) {
    const std::vector<std::vector<Index>> shapes = {{}, {0}, {7}, {2, 3}, {3, 0, 2}, {2, 3, 5}, {1, 1, 1, 1}};
    io::SafetensorsWriter writer;
    std::vector<std::vector<TestType>> data;
    for (std::size_t s = 0; s < shapes.size(); ++s) {
        data.push_back(random_values<TestType>(io::shape_numel(shapes[s]), s));
        writer.add("t" + std::to_string(s), data.back(), shapes[s]);
    }
    writer.add_metadata("dtype", io::dtype_name(io::dtype_of<TestType>));

    TempDir dir;
    const auto path = dir.path / "all.safetensors";
    writer.save(path);
    CHECK_FALSE(std::filesystem::exists(dir.path / "all.safetensors.partial"));
    const io::SafetensorsFile from_disk = io::SafetensorsFile::load(path);
    const io::SafetensorsFile from_memory = io::SafetensorsFile::from_bytes(writer.to_bytes());
    CHECK(std::filesystem::file_size(path) == writer.to_bytes().size());

    for (const io::SafetensorsFile* file : {&from_disk, &from_memory}) {
        REQUIRE(file->size() == shapes.size());
        CHECK(file->metadata("dtype") == io::dtype_name(io::dtype_of<TestType>));
        for (std::size_t s = 0; s < shapes.size(); ++s) {
            const std::string name = "t" + std::to_string(s);
            const io::TensorInfo& info = file->info(name);
            CHECK(info.dtype == io::dtype_of<TestType>);
            CHECK(info.shape == shapes[s]);
            CHECK(info.bytes() == data[s].size() * sizeof(TestType));
            CHECK(same_bits(file->read<TestType>(name), data[s]));
            CHECK(same_bits(file->read<TestType>(name, shapes[s]), data[s]));
        }
    }
}

TEST_CASE("dtype names, sizes and parsing agree with the format", "[io][safetensors]") {
    const std::map<std::string, std::size_t> expected = {{"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E4M3", 1}, {"F8_E5M2", 1},
                                                         {"U16", 2},  {"I16", 2}, {"F16", 2}, {"BF16", 2},    {"U32", 4},
                                                         {"I32", 4},  {"F32", 4}, {"U64", 8}, {"I64", 8},     {"F64", 8}};
    for (const auto& [name, size] : expected) {
        const auto d = io::parse_dtype(name);
        REQUIRE(d.has_value());
        CHECK(io::dtype_name(*d) == name);
        CHECK(io::dtype_size(*d) == size);
    }
    CHECK(io::all_dtypes.size() == expected.size());
    CHECK_FALSE(io::parse_dtype("f32").has_value());
    CHECK_FALSE(io::parse_dtype("F128").has_value());
    STATIC_REQUIRE(io::TensorElement<const float>);
    STATIC_REQUIRE_FALSE(io::TensorElement<bool>);
    STATIC_REQUIRE_FALSE(io::TensorElement<char>);
}

TEST_CASE("the writer's bytes match a hand-written file", "[io][safetensors]") {
    io::SafetensorsWriter writer;
    writer.add("b", std::vector<std::uint8_t>{1, 2, 3}, {3});
    writer.add("a", std::vector<float>{1.0f, -2.0f}, {2});
    writer.add_metadata("k", "v\"");
    // Wider dtypes first, then by name; header padded with spaces to a multiple of 8 bytes (134 -> 136).
    const std::string header =
        R"({"__metadata__":{"k":"v\""},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
        R"("b":{"dtype":"U8","shape":[3],"data_offsets":[8,11]}}  )";
    REQUIRE(header.size() % 8 == 0);
    const std::vector<std::byte> expected = make_file(header, {0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0xc0, 1, 2, 3});
    CHECK(writer.to_bytes() == expected);
}

TEST_CASE("a file written by hand parses", "[io][safetensors]") {
    // Keys in any order, whitespace, metadata last, a unicode name, a U8 tensor that leaves the F32 one unaligned,
    // a scalar and an empty tensor; spaces pad the header as the format allows.
    const std::string header = R"({ "w\u00e9" : {"shape": [2], "dtype": "F32", "data_offsets": [3, 11]},
        "bytes": {"dtype": "U8", "shape": [3], "data_offsets": [0, 3]},
        "scalar": {"dtype": "I32", "shape": [], "data_offsets": [11, 15]},
        "empty": {"dtype": "BF16", "shape": [0, 4], "data_offsets": [15, 15]},
        "__metadata__": {"format": "pt", "note": "\u00e9"} }   )";
    const io::SafetensorsFile f = parse(header, {7, 8, 9, 0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x20, 0xc1, 0xfe, 0xff, 0xff, 0xff});
    CHECK(f.names() == std::vector<std::string>{"bytes", "empty", "scalar", "w\xC3\xA9"});
    CHECK(f.read<std::uint8_t>("bytes") == std::vector<std::uint8_t>{7, 8, 9});
    CHECK(f.read<float>("w\xC3\xA9") == std::vector<float>{1.0f, -10.0f});
    CHECK(f.read<std::int32_t>("scalar", {}) == std::vector<std::int32_t>{-2});
    CHECK(f.info("empty").shape == std::vector<Index>{0, 4});
    CHECK(f.read<npft::bfloat16>("empty").empty());
    CHECK(f.metadata().size() == 2);
    CHECK(f.metadata("format") == "pt");
    CHECK(f.metadata("note") == "\xC3\xA9");
    CHECK(f.raw("bytes").size() == 3);
    CHECK(f.info("w\xC3\xA9").begin == 3);
}

TEST_CASE("a file without tensors or metadata is valid", "[io][safetensors]") {
    io::SafetensorsWriter writer;
    const std::vector<std::byte> bytes = writer.to_bytes();
    CHECK(bytes == make_file("{}      "));
    const io::SafetensorsFile f = io::SafetensorsFile::from_bytes(bytes);
    CHECK(f.size() == 0);
    CHECK(f.metadata().empty());
}

TEST_CASE("matrix and vector views round-trip whatever their strides", "[io][safetensors]") {
    npft::Matrix m(3, 5);
    for (Index r = 0; r < 3; ++r)
        for (Index c = 0; c < 5; ++c) m(r, c) = static_cast<float>(10 * r + c);
    const auto view = npft::as_matrix_view(m);
    std::vector<npft::half> h(6);
    for (std::size_t i = 0; i < h.size(); ++i) h[i] = npft::half(0.5f * static_cast<float>(i) - 1.0f);

    io::SafetensorsWriter writer;
    writer.add("m", m);                                    // Eigen, row-major
    writer.add("mt", view.transposed());                   // strided view: stored row-major as 5 x 3
    writer.add("col", view.col(2));                        // strided vector
    writer.add("h", npft::MatrixView<npft::half>::dense(h.data(), 2, 3, npft::Layout::col_major));
    writer.add("v", npft::Vector(npft::Vector::LinSpaced(4, 0.0f, 3.0f)));
    const io::SafetensorsFile f = io::SafetensorsFile::from_bytes(writer.to_bytes());

    CHECK(f.info("mt").shape == std::vector<Index>{5, 3});
    CHECK(f.read_matrix("m") == m);
    CHECK(f.read_matrix("mt") == npft::Matrix(m.transpose()));
    CHECK(f.read<float>("col", {3}) == std::vector<float>{2.0f, 12.0f, 22.0f});
    CHECK(f.read<float>("v") == std::vector<float>{0.0f, 1.0f, 2.0f, 3.0f});

    // h is col-major 2 x 3: element (r, c) = h[r + 2c]; the file holds it row-major.
    const npft::Matrix hm = f.read_matrix("h");
    for (Index r = 0; r < 2; ++r)
        for (Index c = 0; c < 3; ++c) CHECK(hm(r, c) == static_cast<float>(h[static_cast<std::size_t>(r + 2 * c)]));

    // read_into a strided destination: the transpose of a column-major buffer.
    std::vector<float> out(15, -1.0f);
    const auto target = npft::MatrixView<float>::dense(out.data(), 3, 5, npft::Layout::col_major);
    f.read_into("m", target);
    for (Index r = 0; r < 3; ++r)
        for (Index c = 0; c < 5; ++c) CHECK(target(r, c) == m(r, c));
    std::vector<float> every_other(6, -1.0f);
    f.read_into("col", npft::VectorView<float>(every_other.data(), 3, 2));
    CHECK(every_other == std::vector<float>{2.0f, -1.0f, 12.0f, -1.0f, 22.0f, -1.0f});
}

TEST_CASE("raw tensors carry dtypes without a C++ type", "[io][safetensors]") {
    io::SafetensorsWriter writer;
    const std::vector<std::byte> fp8 = to_bytes({0x38, 0xb8, 0x7f, 0x00});
    writer.add_raw("fp8", io::Dtype::f8_e4m3, {2, 2}, fp8);
    writer.add_raw("mask", io::Dtype::boolean, {3}, to_bytes({1, 0, 1}));
    const io::SafetensorsFile f = io::SafetensorsFile::from_bytes(writer.to_bytes());
    CHECK(f.info("fp8").dtype == io::Dtype::f8_e4m3);
    CHECK(std::vector<std::byte>(f.raw("fp8").begin(), f.raw("fp8").end()) == fp8);
    CHECK(f.info("mask").dtype == io::Dtype::boolean);
    CHECK_THROWS_WITH(writer.add_raw("bad", io::Dtype::f32, {2}, fp8), Contains("needs 8 bytes, got 4"));
}

TEST_CASE("saving replaces an existing file", "[io][safetensors]") {
    TempDir dir;
    const auto path = dir.path / "w.safetensors";
    io::SafetensorsWriter first;
    first.add("a", std::vector<float>{1.0f}, {1});
    first.save(path);
    io::SafetensorsWriter second;
    second.add("b", std::vector<std::int32_t>{5, 6}, {2});
    second.save(path);
    const io::SafetensorsFile f = io::SafetensorsFile::load(path);
    CHECK(f.names() == std::vector<std::string>{"b"});
    CHECK(f.read<std::int32_t>("b") == std::vector<std::int32_t>{5, 6});
}

// ---- Errors ---------------------------------------------------------------------------------------

TEST_CASE("the writer rejects bad tensors", "[io][safetensors]") {
    io::SafetensorsWriter writer;
    writer.add("a", std::vector<float>{1.0f, 2.0f}, {2});
    CHECK_THROWS_WITH(writer.add("a", std::vector<float>{1.0f}, {1}), Contains("tensor 'a' was already added"));
    CHECK_THROWS_WITH(writer.add("b", std::vector<float>{1.0f, 2.0f}, {3}), Contains("holds 3 elements, but the data has 2"));
    CHECK_THROWS_WITH(writer.add("c", std::vector<float>{}, {-1}), Contains("negative dimension"));
    CHECK_THROWS_WITH(writer.add("__metadata__", std::vector<float>{1.0f}, {1}), Contains("reserved"));
    CHECK_THROWS_WITH(writer.add("", std::vector<float>{1.0f}, {1}), Contains("non-empty"));
    writer.add_metadata("k", "v");
    CHECK_THROWS_WITH(writer.add_metadata("k", "w"), Contains("metadata key 'k' was already added"));
    CHECK(writer.size() == 1);

    TempDir dir;
    CHECK_THROWS_WITH(writer.save(dir.path / "no" / "such" / "dir.safetensors"), Contains("cannot open"));
}

TEST_CASE("missing and unreadable files give clear errors", "[io][safetensors]") {
    TempDir dir;
    CHECK_THROWS_WITH(io::SafetensorsFile::load(dir.path / "missing.safetensors"), Contains("does not exist"));
    CHECK_THROWS_WITH(io::SafetensorsFile::load(dir.path), Contains("is a directory"));
}

TEST_CASE("corrupt headers give errors that name the problem", "[io][safetensors]") {
    const std::string ok_a = R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";

    SECTION("truncated header length") {
        CHECK_THROWS_WITH(io::SafetensorsFile::from_bytes(to_bytes({1, 0, 0, 0, 0}), "test"),
                          Contains("too short for the 8-byte header length"));
        CHECK_THROWS_WITH(io::SafetensorsFile::from_bytes({}, "test"), Contains("is truncated: 0 bytes"));
    }
    SECTION("header length larger than the file") {
        std::vector<std::byte> bytes = make_file("{}", zeros(8));
        bytes[0] = std::byte{100};
        CHECK_THROWS_WITH(io::SafetensorsFile::from_bytes(bytes, "test"),
                          Contains("header length 100 is larger than the 10 bytes that follow it"));
        bytes[7] = std::byte{0x80};  // ~2^63: must not overflow the comparison
        CHECK_THROWS_WITH(io::SafetensorsFile::from_bytes(bytes, "test"), Contains("is larger than the 10 bytes"));
    }
    SECTION("not an object") {
        CHECK_THROWS_WITH(parse("[]"), Contains("starting with '{'"));
        CHECK_THROWS_WITH(parse(""), Contains("starting with '{'"));
    }
    SECTION("invalid JSON") {
        CHECK_THROWS_WITH(parse(R"({"a":{"dtype":"F32",}})"), Contains("header is not valid JSON: invalid JSON at byte"));
        CHECK_THROWS_WITH(parse("{\"a\":1"), Contains("not valid JSON"));
    }
    SECTION("the error names the source") {
        CHECK_THROWS_WITH(parse("[]"), Contains("safetensors test: header must be"));
    }
    SECTION("unknown dtype") {
        CHECK_THROWS_WITH(parse(R"({"a":{"dtype":"F12","shape":[2],"data_offsets":[0,8]}})", zeros(8)),
                          Contains("tensor 'a' has unknown dtype \"F12\""));
        CHECK_THROWS_WITH(parse(R"({"a":{"dtype":7,"shape":[2],"data_offsets":[0,8]}})", zeros(8)),
                          Contains("\"dtype\" must be a string"));
    }
    SECTION("missing or unknown fields") {
        CHECK_THROWS_WITH(parse(R"({"a":{"dtype":"F32","data_offsets":[0,8]}})", zeros(8)), Contains("tensor 'a' has no \"shape\""));
        CHECK_THROWS_WITH(parse(R"({"a":{"dtype":"F32","shape":[2]}})", zeros(8)), Contains("has no \"data_offsets\""));
        CHECK_THROWS_WITH(parse(R"({"a":{"shape":[2],"data_offsets":[0,8]}})", zeros(8)), Contains("has no \"dtype\""));
        CHECK_THROWS_WITH(parse(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}})", zeros(8)),
                          Contains("tensor 'a' has an unknown field \"x\""));
        CHECK_THROWS_WITH(parse(R"({"a":[1]})"), Contains("must be described by an object"));
    }
    SECTION("bad shapes") {
        CHECK_THROWS_WITH(parse(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", zeros(8)),
                          Contains("\"shape\" must be an array of non-negative integers"));
        CHECK_THROWS_WITH(parse(R"({"a":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})", zeros(8)),
                          Contains("non-negative integers"));
        CHECK_THROWS_WITH(parse(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,8]}})", zeros(8)),
                          Contains("overflows"));
        CHECK_THROWS_WITH(parse(R"({"a":{"dtype":"F32","shape":[99999999999999999999],"data_offsets":[0,8]}})", zeros(8)),
                          Contains("non-negative integers"));
    }
    SECTION("shape product not matching the byte size") {
        CHECK_THROWS_WITH(parse(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", zeros(8)),
                          Contains("tensor 'a': shape [3] of F32 needs 12 bytes, but data_offsets [0, 8] hold 8"));
        CHECK_THROWS_WITH(parse(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[0,4]}})", zeros(4)),
                          Contains("needs 0 bytes"));
    }
    SECTION("offsets out of order") {
        CHECK_THROWS_WITH(parse(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}})", zeros(8)),
                          Contains("data_offsets [8, 4] are out of order"));
        CHECK_THROWS_WITH(parse(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0]}})", zeros(4)),
                          Contains("two non-negative integers"));
        CHECK_THROWS_WITH(parse(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}})", zeros(4)),
                          Contains("two non-negative integers"));
    }
    SECTION("offsets out of bounds") {
        CHECK_THROWS_WITH(parse(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", zeros(8)),
                          Contains("data_offsets [0, 16] are out of bounds of the 8-byte data buffer"));
        CHECK_THROWS_WITH(parse(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[18446744073709551615,18446744073709551615]}})"),
                          Contains("out of bounds"));
    }
    SECTION("overlapping tensors") {
        CHECK_THROWS_WITH(parse("{" + ok_a + R"(,"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", zeros(12)),
                          Contains("tensors 'a' and 'b' overlap"));
        CHECK_THROWS_WITH(parse("{" + ok_a + R"(,"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", zeros(8)),
                          Contains("overlap"));
    }
    SECTION("holes and trailing bytes") {
        CHECK_THROWS_WITH(parse("{" + ok_a + R"(,"b":{"dtype":"F32","shape":[1],"data_offsets":[12,16]}})", zeros(16)),
                          Contains("data buffer bytes [8, 12) belong to no tensor (holes are not allowed)"));
        CHECK_THROWS_WITH(parse("{" + ok_a + "}", zeros(9)), Contains("bytes [8, 9) belong to no tensor (trailing bytes"));
        CHECK_THROWS_WITH(parse("{}", zeros(1)), Contains("trailing bytes"));
    }
    SECTION("duplicate names") {
        CHECK_THROWS_WITH(parse("{" + ok_a + "," + ok_a + "}", zeros(8)), Contains("duplicate key \"a\""));
    }
    SECTION("metadata must map strings to strings") {
        CHECK_THROWS_WITH(parse(R"({"__metadata__":{"k":1}})"), Contains("\"__metadata__\" value of 'k' must be a string"));
        CHECK_THROWS_WITH(parse(R"({"__metadata__":[]})"), Contains("\"__metadata__\" must be an object"));
    }
}

TEST_CASE("reads with the wrong name, dtype or shape are refused", "[io][safetensors]") {
    io::SafetensorsWriter writer;
    writer.add("a", std::vector<float>{1, 2, 3, 4, 5, 6}, {2, 3});
    writer.add("u", std::vector<std::uint8_t>{1, 2}, {1, 2});
    const io::SafetensorsFile f = io::SafetensorsFile::from_bytes(writer.to_bytes(), "test");
    CHECK_THROWS_WITH(f.read<float>("zz"), Contains("safetensors test: no tensor named 'zz'"));
    CHECK_THROWS_WITH(f.metadata("k"), Contains("safetensors test: no metadata key 'k'"));
    CHECK_THROWS_WITH(f.read<npft::half>("a"), Contains("tensor 'a' has dtype F32, cannot read it as F16"));
    CHECK_THROWS_WITH(f.read<std::int32_t>("a"), Contains("cannot read it as I32"));
    CHECK_THROWS_WITH(f.read<float>("a", {3, 2}), Contains("tensor 'a' has shape [2, 3], expected [3, 2]"));
    npft::Matrix wrong(3, 2);
    CHECK_THROWS_WITH(f.read_into("a", npft::as_matrix_view(wrong)), Contains("expected [3, 2]"));
    std::vector<npft::half> halves(6);
    CHECK_THROWS_WITH(f.read_into("a", npft::MatrixView<npft::half>::dense(halves.data(), 2, 3)), Contains("cannot read it as F16"));
    CHECK_THROWS_WITH(f.read_matrix("u"), Contains("has dtype U8, expected F32, F16 or BF16"));
    CHECK_THROWS_WITH(io::SafetensorsFile::from_bytes(make_file(R"({"s":{"dtype":"F32","shape":[],"data_offsets":[0,4]}})", zeros(4)))
                          .read_matrix("s"),
                      Contains("expected a matrix"));
}

TEST_CASE("every truncation of a valid file is an error, and damaged headers never crash", "[io][safetensors]") {
    io::SafetensorsWriter writer;
    writer.add("w", random_values<float>(12, 1), {3, 4});
    writer.add("b", random_values<std::uint8_t>(5, 2), {5});
    writer.add_metadata("k", "v");
    const std::vector<std::byte> bytes = writer.to_bytes();
    REQUIRE_NOTHROW(io::SafetensorsFile::from_bytes(bytes));
    for (std::size_t n = 0; n < bytes.size(); ++n) {
        const std::vector<std::byte> prefix(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(n));
        CHECK_THROWS_AS(io::SafetensorsFile::from_bytes(prefix), npft::Error);
    }
    // Each header byte replaced by keyed random values: the reader either accepts the file or throws npft::Error
    // (under ASan/UBSan this also proves it never reads out of bounds).
    std::size_t rejected = 0;
    std::size_t header_end = 8;
    for (int i = 7; i >= 0; --i) header_end += static_cast<std::size_t>(bytes[static_cast<std::size_t>(i)]) << (8 * i);
    for (std::size_t at = 0; at < header_end; ++at) {
        for (std::uint64_t trial = 0; trial < 4; ++trial) {
            std::vector<std::byte> damaged = bytes;
            damaged[at] = static_cast<std::byte>(random_bits64(3, at * 4 + trial) & 0xff);
            if (damaged[at] == bytes[at]) continue;
            try {
                const io::SafetensorsFile f = io::SafetensorsFile::from_bytes(damaged);
                for (const std::string& name : f.names()) CHECK(f.raw(name).size() == f.info(name).bytes());
            } catch (const npft::Error&) {
                ++rejected;
            }
        }
    }
    CHECK(rejected > header_end);  // most damage is detected
}

// ---- Quantized matrices ---------------------------------------------------------------------------

namespace {

// A quantized matrix with keyed random codes and valid metadata, built directly (independent of any quantizer).
quant::QuantizedMatrix random_quantized(quant::Format format, int bits, Index rows, Index cols, Index group, std::uint64_t seed) {
    quant::QuantizedMatrix m(format, bits, rows, cols, format == quant::Format::lut ? cols : group);
    const std::uint32_t levels = 1u << bits;
    for (Index r = 0; r < rows; ++r)
        for (Index j = 0; j < cols; ++j)
            m.codes().set(r, j, static_cast<std::uint32_t>(random_bits64(seed, static_cast<std::uint64_t>(r * cols + j)) % levels));
    for (std::size_t i = 0; i < m.scales().size(); ++i)
        m.scales()[i] = npft::half(0.001f * static_cast<float>(1 + random_bits64(seed + 1, i) % 1000));
    for (std::size_t i = 0; i < m.zeros().size(); ++i)
        m.zeros()[i] = npft::half(static_cast<float>(random_bits64(seed + 2, i) % levels));
    for (Index r = 0; r < (format == quant::Format::lut ? rows : 0); ++r) {
        float level = -1.0f;
        for (std::uint32_t q = 0; q < levels; ++q) {
            level += 0.01f * static_cast<float>(1 + random_bits64(seed + 3, static_cast<std::uint64_t>(r) * levels + q) % 50);
            m.lut()[static_cast<std::size_t>(r) * levels + q] = npft::half(level);
        }
    }
    return m;
}

void check_identical(const quant::QuantizedMatrix& a, const quant::QuantizedMatrix& b) {
    CHECK(a.format() == b.format());
    CHECK(a.bits() == b.bits());
    CHECK(a.rows() == b.rows());
    CHECK(a.cols() == b.cols());
    CHECK(a.group_size() == b.group_size());
    CHECK(a.codes().words() == b.codes().words());
    CHECK(a.scales() == b.scales());
    CHECK(a.zeros() == b.zeros());
    CHECK(a.lut() == b.lut());
    CHECK(a.dequantize() == b.dequantize());
}

// The documented tensors and metadata of a quantized matrix, assembled by hand so tests can corrupt any piece.
std::vector<std::byte> assemble(const quant::QuantizedMatrix& m, const std::string& name,
                                const std::map<std::string, std::string>& metadata_overrides = {},
                                const std::string& drop_tensor = "", const std::string& extra_tensor = "") {
    io::SafetensorsWriter w;
    w.add(name + ".codes", m.codes().words(), {m.rows(), m.codes().words_per_row()});
    const auto add_half = [&](const std::string& field, const std::vector<npft::half>& values, Index cols) {
        if (field != drop_tensor && !values.empty()) w.add(name + "." + field, values, {m.rows(), cols});
    };
    add_half("scales", m.scales(), m.groups());
    add_half("zeros", m.zeros(), m.groups());
    add_half("lut", m.lut(), Index{1} << m.bits());
    if (!extra_tensor.empty()) w.add(name + "." + extra_tensor, std::vector<npft::half>(1), {1});
    std::map<std::string, std::string> metadata = {{name + ".format", quant::format_name(m.format())},
                                                   {name + ".bits", std::to_string(m.bits())},
                                                   {name + ".group_size", std::to_string(m.group_size())},
                                                   {name + ".shape", "[" + std::to_string(m.rows()) + ", " + std::to_string(m.cols()) + "]"},
                                                   {name + ".packing", "npft.bitstream32.v1"}};
    for (const auto& [key, value] : metadata_overrides) metadata[key] = value;
    for (const auto& [key, value] : metadata) w.add_metadata(key, value);
    return w.to_bytes();
}

}  // namespace

TEST_CASE("quantized matrices round-trip exactly for every format, bit width and odd shape", "[io][quantized]") {
    const quant::Format formats[] = {quant::Format::uniform_symmetric, quant::Format::uniform_asymmetric, quant::Format::lut};
    struct Shape {
        Index rows, cols, group;
    };
    const Shape shapes[] = {{3, 40, 8}, {2, 64, 64}, {5, 96, 32}, {1, 33, 11}};
    std::uint64_t seed = 100;
    for (const quant::Format format : formats) {
        for (const int bits : {2, 3, 4, 5, 6, 7, 8}) {
            for (const Shape& s : shapes) {
                CAPTURE(quant::format_name(format), bits, s.rows, s.cols, s.group);
                const quant::QuantizedMatrix original = random_quantized(format, bits, s.rows, s.cols, s.group, seed += 10);
                io::SafetensorsWriter writer;
                io::save_quantized(writer, "layer.w", original);
                const std::vector<std::byte> bytes = writer.to_bytes();
                // The documented naming, independently assembled, gives the same file.
                CHECK(bytes == assemble(original, "layer.w"));
                const io::SafetensorsFile f = io::SafetensorsFile::from_bytes(bytes);
                CHECK(io::has_quantized(f, "layer.w"));
                CHECK(f.info("layer.w.codes").dtype == io::Dtype::u32);
                check_identical(io::load_quantized(f, "layer.w"), original);
            }
        }
    }
}

TEST_CASE("a quantizer's output survives a file round trip beside other tensors", "[io][quantized]") {
    npft::Matrix w(16, 128);
    for (Index r = 0; r < w.rows(); ++r)
        for (Index c = 0; c < w.cols(); ++c)
            w(r, c) = npft::gaussian(npft::RandomKey{5, 0}, static_cast<std::uint64_t>(r * w.cols() + c));
    const quant::QuantizedMatrix q4 = quant::Quantizer<quant::Uniform<4, 32>>().quantize(w);
    const quant::QuantizedMatrix q3 = quant::Quantizer<quant::Uniform<3>>().quantize(w);

    TempDir dir;
    io::SafetensorsWriter writer;
    io::save_quantized(writer, "q4", q4);
    io::save_quantized(writer, "q3", q3);
    writer.add("fp32", w);
    writer.add_metadata("model", "test");
    writer.save(dir.path / "model.safetensors");

    const io::SafetensorsFile f = io::SafetensorsFile::load(dir.path / "model.safetensors");
    check_identical(io::load_quantized(f, "q4"), q4);
    check_identical(io::load_quantized(f, "q3"), q3);
    CHECK(f.read_matrix("fp32") == w);
    CHECK(f.metadata("q4.format") == "uniform_asymmetric");
    CHECK(f.metadata("q4.bits") == "4");
    CHECK(f.metadata("q4.group_size") == "32");
    CHECK(f.metadata("q3.group_size") == "128");
    CHECK(f.metadata("q4.shape") == "[16, 128]");
    CHECK_FALSE(io::has_quantized(f, "fp32"));
    CHECK_THROWS_WITH(io::save_quantized(writer, "q4", q4), Contains("already added"));
}

TEST_CASE("corrupt quantized matrices give errors that name the matrix and the problem", "[io][quantized]") {
    const quant::QuantizedMatrix m = random_quantized(quant::Format::uniform_asymmetric, 4, 3, 40, 8, 7);
    const auto load = [](const std::vector<std::byte>& bytes) {
        return io::load_quantized(io::SafetensorsFile::from_bytes(bytes, "test"), "w");
    };
    REQUIRE_NOTHROW(load(assemble(m, "w")));

    CHECK_THROWS_WITH(load(assemble(m, "v")), Contains("quantized matrix 'w': no metadata key 'w.format'"));
    CHECK_THROWS_WITH(load(assemble(m, "w", {{"w.bits", "9"}})), Contains("quantized matrix 'w': bits must be between 2 and 8, got 9"));
    CHECK_THROWS_WITH(load(assemble(m, "w", {{"w.bits", "four"}})),
                      Contains("metadata 'w.bits' must be a non-negative decimal integer, got 'four'"));
    CHECK_THROWS_WITH(load(assemble(m, "w", {{"w.format", "int4"}})), Contains("unknown format 'int4'"));
    CHECK_THROWS_WITH(load(assemble(m, "w", {{"w.group_size", "7"}})), Contains("group size 7 does not divide the input dimension 40"));
    CHECK_THROWS_WITH(load(assemble(m, "w", {{"w.shape", "[3]"}})), Contains("metadata 'w.shape' must be \"[rows, cols]\""));
    CHECK_THROWS_WITH(load(assemble(m, "w", {{"w.shape", "3x40"}})), Contains("must be \"[rows, cols]\""));
    CHECK_THROWS_WITH(load(assemble(m, "w", {{"w.packing", "gptq"}})), Contains("codes are packed as 'gptq'"));
    CHECK_THROWS_WITH(load(assemble(m, "w", {{"w.shape", "[3, 80]"}})), Contains("tensor 'w.codes' has shape [3, 8], expected [3, 12]"));
    CHECK_THROWS_WITH(load(assemble(m, "w", {{"w.format", "uniform_symmetric"}})),
                      Contains("tensor 'w.zeros' does not belong to the uniform_symmetric format"));
    CHECK_THROWS_WITH(load(assemble(m, "w", {}, "zeros")), Contains("no tensor named 'w.zeros'"));
    CHECK_THROWS_WITH(load(assemble(m, "w", {}, "", "lut")), Contains("tensor 'w.lut' does not belong"));

    quant::QuantizedMatrix bad_zero = m;
    bad_zero.zeros()[4] = npft::half(16.0f);
    CHECK_THROWS_WITH(load(assemble(bad_zero, "w")), Contains("quantized matrix 'w': zero point 16 is not an integer code in [0, 15]"));
    quant::QuantizedMatrix bad_scale = m;
    bad_scale.scales()[0] = npft::half(-1.0f);
    CHECK_THROWS_WITH(load(assemble(bad_scale, "w")), Contains("scale -1 is not a finite non-negative number"));
    io::SafetensorsWriter refused;
    CHECK_THROWS_WITH(io::save_quantized(refused, "w", bad_scale), Contains("scale -1"));
    CHECK(refused.size() == 0);

    // 40 codes of 4 bits pad to 64 per row (8 words); code 63 of row 1 is the top nibble of that row's last word.
    quant::QuantizedMatrix bad_padding = m;
    bad_padding.codes().words()[2 * 8 - 1] |= 0x10000000u;
    CHECK_THROWS_WITH(load(assemble(bad_padding, "w")), Contains("row 1 has a non-zero padding code at column 63"));
}
