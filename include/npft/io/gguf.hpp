#pragma once
// Writing and reading GGUF files (version 3), the format llama.cpp loads (github.com/ggml-org/ggml docs/gguf.md):
//
//   u32 magic "GGUF" | u32 version 3 | u64 tensor count | u64 metadata count
//   metadata:     string key | u32 value type | value          (string = u64 length + UTF-8 bytes, no terminator;
//                                                              array = u32 element type + u64 count + elements)
//   tensor infos: string name | u32 n_dims | u64 ne[n_dims] | u32 type | u64 offset (into the data section)
//   padding to `general.alignment` (default 32), then the data section; every tensor's offset is aligned.
//
// ne[0] is the contiguous dimension: a row-major [rows, cols] matrix has ne = {cols, rows}. All little-endian.
// The reader maps the file and trusts nothing in it: every count, length, dimension and offset is checked against the
// bytes that are actually there before it is used, and a bad file gives an npft::Error naming the file and the problem.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../core/eigen.hpp"
#include "../core/error.hpp"
#include "../quant/quantized_matrix.hpp"
#include "gguf_blocks.hpp"
#include "gguf_types.hpp"
#include "mapped_file.hpp"

namespace npft::io::gguf {

inline constexpr std::uint32_t version = 3;
inline constexpr std::uint32_t default_alignment = 32;
inline constexpr std::string_view alignment_key = "general.alignment";
inline constexpr std::size_t max_dims = 4;  // GGML_MAX_DIMS

/// Collects metadata and tensors, then writes one GGUF file. Keys and tensors keep the order they were added in.
class Writer {
public:
    /// Sets a metadata key; each key once (a second value would silently replace the first).
    void set(std::string key, Value value) {
        require(!key.empty(), "GGUF metadata key must be non-empty");
        require(!has(key), "GGUF metadata key '", key, "' was already set");
        if (key == alignment_key) {
            require(value.type == ValueType::u32 && value.uint > 0 && (value.uint & (value.uint - 1)) == 0,
                    "general.alignment must be a UINT32 power of two, got ", value_type_name(value.type), " ", value.uint);
            alignment_ = static_cast<std::uint32_t>(value.uint);
        }
        if (value.type == ValueType::array)
            for (const Value& v : value.items) require(v.type == value.element, "GGUF key '", key, "': array items must all be ", value_type_name(value.element));
        metadata_.emplace_back(std::move(key), std::move(value));
    }
    bool has(std::string_view key) const {
        return std::ranges::any_of(metadata_, [&](const auto& kv) { return kv.first == key; });
    }

    /// A tensor given as its encoded bytes; `ne` in ggml order (ne[0] contiguous).
    void add_tensor(std::string name, TensorType type, std::vector<std::uint64_t> ne, std::vector<std::byte> bytes) {
        require(!name.empty(), "GGUF tensor name must be non-empty");
        require(!std::ranges::any_of(tensors_, [&](const Tensor& t) { return t.name == name; }), "GGUF tensor '", name,
                "' was already added");
        require(!ne.empty() && ne.size() <= max_dims, "GGUF tensor '", name, "' must have 1 to ", max_dims, " dimensions, got ", ne.size());
        std::uint64_t count = 1;
        for (const std::uint64_t d : ne) {
            require(d > 0, "GGUF tensor '", name, "' has an empty dimension");
            count *= d;
        }
        require(ne[0] % block_size(type) == 0, "GGUF tensor '", name, "': ", type_name(type), " needs ne[0] = ", ne[0],
                " to be a multiple of its block of ", block_size(type));
        require(bytes.size() == count / block_size(type) * block_bytes(type), "GGUF tensor '", name, "': ", count, " weights of ",
                type_name(type), " need ", count / block_size(type) * block_bytes(type), " bytes, got ", bytes.size());
        tensors_.push_back({std::move(name), type, std::move(ne), std::move(bytes)});
    }

    /// A fp32 matrix [rows, cols] stored as F32, F16 or BF16, with ne = {cols, rows}.
    void add_matrix(std::string name, MatrixView<const float> m, TensorType type = TensorType::f32) {
        require(!m.empty(), "GGUF tensor '", name, "' is empty");
        add_tensor(std::move(name), type, {static_cast<std::uint64_t>(m.cols()), static_cast<std::uint64_t>(m.rows())}, encode_float(m, type));
    }
    /// A fp32 vector stored as F32 (llama.cpp keeps norms in F32).
    void add_vector(std::string name, std::span<const float> v) {
        const MatrixView<const float> row(v.data(), 1, static_cast<Index>(v.size()), static_cast<Index>(v.size()), 1);
        require(!v.empty(), "GGUF tensor '", name, "' is empty");
        add_tensor(std::move(name), TensorType::f32, {v.size()}, encode_float(row, TensorType::f32));
    }
    /// A quantized matrix stored exactly as `type` (throws naming the nearest lossless type when it cannot be).
    void add_quantized(std::string name, const quant::QuantizedMatrix& m, TensorType type) {
        std::vector<std::byte> bytes = encode_quantized(m, type, name);
        add_tensor(std::move(name), type, {static_cast<std::uint64_t>(m.cols()), static_cast<std::uint64_t>(m.rows())}, std::move(bytes));
    }

    std::size_t tensor_count() const { return tensors_.size(); }
    /// Bytes of tensor data (padding excluded).
    std::uint64_t tensor_bytes() const {
        std::uint64_t n = 0;
        for (const Tensor& t : tensors_) n += t.bytes.size();
        return n;
    }

    /// The whole file.
    std::vector<std::byte> to_bytes() const {
        std::vector<std::byte> out;
        put_u32(out, 0x46554747u);  // "GGUF"
        put_u32(out, version);
        put_u64(out, tensors_.size());
        const bool implicit_alignment = !has(alignment_key);
        put_u64(out, metadata_.size() + (implicit_alignment ? 1 : 0));
        for (const auto& [key, value] : metadata_) put_entry(out, key, value);
        if (implicit_alignment) put_entry(out, std::string(alignment_key), Value::u32(alignment_));
        std::uint64_t offset = 0;
        for (const Tensor& t : tensors_) {
            put_string(out, t.name);
            put_u32(out, static_cast<std::uint32_t>(t.ne.size()));
            for (const std::uint64_t d : t.ne) put_u64(out, d);
            put_u32(out, static_cast<std::uint32_t>(t.type));
            put_u64(out, offset);
            offset = align(offset + t.bytes.size());
        }
        out.resize(align(out.size()));
        for (const Tensor& t : tensors_) {
            out.insert(out.end(), t.bytes.begin(), t.bytes.end());
            out.resize(align(out.size()));
        }
        return out;
    }

    /// Writes the file under a temporary name beside `path`, then renames it into place.
    void save(const std::filesystem::path& path) const {
        const std::vector<std::byte> bytes = to_bytes();
        std::filesystem::path partial = path;
        partial += ".partial";
        {
            std::ofstream out(partial, std::ios::binary | std::ios::trunc);
            require(static_cast<bool>(out), "cannot open '", partial.string(), "' for writing");
            out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
            out.close();
            if (!out) {
                std::error_code ignored;
                std::filesystem::remove(partial, ignored);
                fail("writing '", partial.string(), "' failed (disk full or I/O error)");
            }
        }
        std::error_code ec;
        std::filesystem::rename(partial, path, ec);
        require(!ec, "cannot move '", partial.string(), "' to '", path.string(), "': ", ec.message());
    }

private:
    struct Tensor {
        std::string name;
        TensorType type;
        std::vector<std::uint64_t> ne;
        std::vector<std::byte> bytes;
    };

    std::uint64_t align(std::uint64_t n) const { return (n + alignment_ - 1) / alignment_ * alignment_; }

    static void put_u32(std::vector<std::byte>& out, std::uint32_t v) {
        for (int i = 0; i < 4; ++i) out.push_back(static_cast<std::byte>((v >> (8 * i)) & 0xffu));
    }
    static void put_u64(std::vector<std::byte>& out, std::uint64_t v) {
        for (int i = 0; i < 8; ++i) out.push_back(static_cast<std::byte>((v >> (8 * i)) & 0xffu));
    }
    static void put_string(std::vector<std::byte>& out, std::string_view s) {
        put_u64(out, s.size());
        for (const char c : s) out.push_back(static_cast<std::byte>(c));
    }
    static void put_value(std::vector<std::byte>& out, const Value& v) {
        switch (v.type) {
            case ValueType::u8:
            case ValueType::u16:
            case ValueType::u32:
            case ValueType::u64:
                for (std::uint64_t i = 0; i < scalar_bytes(v.type); ++i) out.push_back(static_cast<std::byte>((v.uint >> (8 * i)) & 0xffu));
                return;
            case ValueType::i8:
            case ValueType::i16:
            case ValueType::i32:
            case ValueType::i64: {
                const auto bits = static_cast<std::uint64_t>(v.sint);
                for (std::uint64_t i = 0; i < scalar_bytes(v.type); ++i) out.push_back(static_cast<std::byte>((bits >> (8 * i)) & 0xffu));
                return;
            }
            case ValueType::f32: {
                const float f = static_cast<float>(v.real);
                std::uint32_t bits;
                std::memcpy(&bits, &f, 4);
                put_u32(out, bits);
                return;
            }
            case ValueType::f64: {
                std::uint64_t bits;
                std::memcpy(&bits, &v.real, 8);
                put_u64(out, bits);
                return;
            }
            case ValueType::boolean: out.push_back(static_cast<std::byte>(v.flag ? 1 : 0)); return;
            case ValueType::string: put_string(out, v.text); return;
            case ValueType::array:
                put_u32(out, static_cast<std::uint32_t>(v.element));
                put_u64(out, v.items.size());
                for (const Value& item : v.items) put_value(out, item);
                return;
        }
    }
    static void put_entry(std::vector<std::byte>& out, const std::string& key, const Value& value) {
        put_string(out, key);
        put_u32(out, static_cast<std::uint32_t>(value.type));
        put_value(out, value);
    }

    std::vector<std::pair<std::string, Value>> metadata_;
    std::vector<Tensor> tensors_;
    std::uint32_t alignment_ = default_alignment;
};

/// What the file says about one tensor.
struct TensorInfo {
    std::string name;
    TensorType type = TensorType::f32;
    std::vector<std::uint64_t> ne;  ///< ggml order: ne[0] contiguous
    std::uint64_t offset = 0;       ///< into the data section
    std::uint64_t bytes = 0;
    std::uint64_t count = 0;        ///< elements

    /// Rows of the tensor seen as a matrix [count / ne[0], ne[0]].
    std::uint64_t rows() const { return count / ne[0]; }
};

/// A GGUF file, mapped (load) or held in memory (from_bytes), parsed and checked.
class File {
public:
    static File load(const std::filesystem::path& path) {
        File f;
        f.source_ = "GGUF file '" + path.string() + "'";
        f.mapped_ = MappedFile(path, "GGUF");
        f.bytes_ = f.mapped_.bytes();
        f.parse();
        return f;
    }
    static File from_bytes(std::vector<std::byte> bytes, std::string source = "GGUF buffer") {
        File f;
        f.source_ = std::move(source);
        f.owned_ = std::move(bytes);
        f.bytes_ = f.owned_;
        f.parse();
        return f;
    }
    File(File&&) noexcept = default;
    File& operator=(File&&) noexcept = default;

    std::uint32_t file_version() const { return version_; }
    std::uint32_t alignment() const { return alignment_; }
    const std::vector<std::pair<std::string, Value>>& metadata() const { return metadata_; }
    bool has(std::string_view key) const { return find_key(key) != nullptr; }
    /// The value of `key`; throws naming the key when it is absent.
    const Value& get(std::string_view key) const {
        const Value* v = find_key(key);
        if (v == nullptr) error("no metadata key '", key, "'");
        return *v;
    }

    const std::vector<TensorInfo>& tensors() const { return tensors_; }
    bool contains(std::string_view name) const { return index_.find(name) != index_.end(); }
    const TensorInfo& tensor(std::string_view name) const {
        const auto it = index_.find(name);
        if (it == index_.end()) error("no tensor named '", name, "'");
        return tensors_[it->second];
    }
    /// The tensor's encoded bytes (a view into the mapped file).
    std::span<const std::byte> raw(std::string_view name) const {
        const TensorInfo& t = tensor(name);
        return bytes_.subspan(static_cast<std::size_t>(data_start_ + t.offset), static_cast<std::size_t>(t.bytes));
    }
    /// The tensor as an fp32 matrix [count / ne[0], ne[0]], decoded with ggml's reference formulas.
    Matrix read_matrix(std::string_view name) const {
        const TensorInfo& t = tensor(name);
        require(t.count <= static_cast<std::uint64_t>(std::numeric_limits<Index>::max()), source_, ": tensor '", name, "' is too large");
        Matrix out(static_cast<Index>(t.rows()), static_cast<Index>(t.ne[0]));
        decode(t.type, raw(name), std::span<float>(out.data(), static_cast<std::size_t>(out.size())));
        return out;
    }
    const std::string& source() const { return source_; }

private:
    File() = default;

    template <class... Parts>
    [[noreturn]] void error(const Parts&... parts) const {
        fail(source_, ": ", parts...);
    }

    const Value* find_key(std::string_view key) const {
        const auto it = key_index_.find(key);
        return it == key_index_.end() ? nullptr : &metadata_[it->second].second;
    }

    // Reads from bytes_ at pos_, never past the end.
    std::span<const std::byte> take(std::uint64_t n, const char* what) {
        if (n > bytes_.size() - pos_)
            error("truncated: ", what, " needs ", n, " bytes at offset ", pos_, ", only ", bytes_.size() - pos_, " remain");
        const auto s = bytes_.subspan(pos_, static_cast<std::size_t>(n));
        pos_ += static_cast<std::size_t>(n);
        return s;
    }
    std::uint64_t read_uint(std::uint64_t size, const char* what) {
        const auto s = take(size, what);
        std::uint64_t v = 0;
        for (std::size_t i = s.size(); i-- > 0;) v = (v << 8) | static_cast<std::uint64_t>(s[i]);
        return v;
    }
    std::string read_string(const char* what) {
        const std::uint64_t n = read_uint(8, what);
        const auto s = take(n, what);
        return std::string(reinterpret_cast<const char*>(s.data()), s.size());
    }
    ValueType read_value_type(const std::string& key) {
        const std::uint64_t id = read_uint(4, "a value type");
        if (id > static_cast<std::uint64_t>(ValueType::f64)) error("key '", key, "' has unknown value type ", id);
        return static_cast<ValueType>(id);
    }
    Value read_value(ValueType type, const std::string& key, int depth) {
        Value v;
        v.type = type;
        switch (type) {
            case ValueType::u8:
            case ValueType::u16:
            case ValueType::u32:
            case ValueType::u64: v.uint = read_uint(scalar_bytes(type), "a value"); return v;
            case ValueType::i8:
            case ValueType::i16:
            case ValueType::i32:
            case ValueType::i64: {
                const std::uint64_t size = scalar_bytes(type), bits = read_uint(size, "a value");
                const std::uint64_t sign = std::uint64_t{1} << (8 * size - 1);
                // Sign-extend from `size` bytes.
                v.sint = size == 8 ? static_cast<std::int64_t>(bits) : static_cast<std::int64_t>(bits ^ sign) - static_cast<std::int64_t>(sign);
                return v;
            }
            case ValueType::f32: {
                const auto bits = static_cast<std::uint32_t>(read_uint(4, "a value"));
                float f;
                std::memcpy(&f, &bits, 4);
                v.real = f;
                return v;
            }
            case ValueType::f64: {
                const std::uint64_t bits = read_uint(8, "a value");
                std::memcpy(&v.real, &bits, 8);
                return v;
            }
            case ValueType::boolean: {
                const std::uint64_t b = read_uint(1, "a value");
                if (b > 1) error("key '", key, "': BOOL value ", b, " is neither 0 nor 1");
                v.flag = b == 1;
                return v;
            }
            case ValueType::string: v.text = read_string("a string value"); return v;
            case ValueType::array: {
                if (depth >= 4) error("key '", key, "': arrays nested deeper than 4 levels");
                v.element = read_value_type(key);
                const std::uint64_t count = read_uint(8, "an array length");
                // Every element takes at least this many bytes, so a huge count cannot make us allocate what is not there.
                const std::uint64_t least = v.element == ValueType::string ? 8 : v.element == ValueType::array ? 12 : scalar_bytes(v.element);
                if (count > (bytes_.size() - pos_) / least)
                    error("key '", key, "': array of ", count, " ", value_type_name(v.element), " values does not fit in the ",
                          bytes_.size() - pos_, " bytes that remain");
                v.items.reserve(static_cast<std::size_t>(count));
                for (std::uint64_t i = 0; i < count; ++i) v.items.push_back(read_value(v.element, key, depth + 1));
                return v;
            }
        }
        return v;
    }

    void parse() {
        pos_ = 0;
        if (bytes_.size() < 4 || std::memcmp(bytes_.data(), "GGUF", 4) != 0) error("not a GGUF file (no \"GGUF\" magic)");
        pos_ = 4;
        version_ = static_cast<std::uint32_t>(read_uint(4, "the version"));
        if (version_ != 2 && version_ != 3) error("GGUF version ", version_, " is not supported (this reader reads 2 and 3)");
        const std::uint64_t tensor_count = read_uint(8, "the tensor count");
        const std::uint64_t kv_count = read_uint(8, "the metadata count");
        // A key takes at least 8 (length) + 4 (type) + 1 bytes; a tensor info at least 8 + 4 + 8 + 4 + 8.
        if (kv_count > (bytes_.size() - pos_) / 13) error("metadata count ", kv_count, " cannot fit in the file");
        if (tensor_count > (bytes_.size() - pos_) / 32) error("tensor count ", tensor_count, " cannot fit in the file");
        for (std::uint64_t i = 0; i < kv_count; ++i) {
            std::string key = read_string("a metadata key");
            if (key_index_.contains(key)) error("metadata key '", key, "' appears twice");
            const ValueType type = read_value_type(key);
            Value value = read_value(type, key, 0);
            key_index_.emplace(key, metadata_.size());
            metadata_.emplace_back(std::move(key), std::move(value));
        }
        if (const Value* a = find_key(alignment_key)) {
            if (a->type != ValueType::u32 || a->uint == 0 || (a->uint & (a->uint - 1)) != 0)
                error("general.alignment must be a UINT32 power of two, got ", value_type_name(a->type), " ", a->uint);
            alignment_ = static_cast<std::uint32_t>(a->uint);
        }
        for (std::uint64_t i = 0; i < tensor_count; ++i) tensors_.push_back(read_tensor_info());
        const std::uint64_t start = (pos_ + alignment_ - 1) / alignment_ * alignment_;
        if (start > bytes_.size()) error("truncated: the data section would start at byte ", start, " of a ", bytes_.size(), "-byte file");
        data_start_ = start;
        check_tensor_data();
    }

    TensorInfo read_tensor_info() {
        TensorInfo t;
        t.name = read_string("a tensor name");
        if (index_.contains(t.name)) error("tensor '", t.name, "' appears twice");
        const std::uint64_t dims = read_uint(4, "a dimension count");
        if (dims == 0 || dims > max_dims) error("tensor '", t.name, "' has ", dims, " dimensions (1 to ", max_dims, " allowed)");
        t.count = 1;
        for (std::uint64_t d = 0; d < dims; ++d) {
            const std::uint64_t n = read_uint(8, "a dimension");
            if (n == 0) error("tensor '", t.name, "' has an empty dimension ne[", d, "]");
            if (t.count > std::numeric_limits<std::uint64_t>::max() / n) error("tensor '", t.name, "': element count overflows");
            t.count *= n;
            t.ne.push_back(n);
        }
        const std::uint64_t type = read_uint(4, "a tensor type");
        const std::optional<TensorType> parsed = tensor_type_from_id(static_cast<std::uint32_t>(type));
        if (!parsed || type > std::numeric_limits<std::uint32_t>::max())
            error("tensor '", t.name, "' has ggml type ", type, ", which this reader does not support (F32, F16, BF16, Q4_0, Q4_1, Q8_0)");
        t.type = *parsed;
        if (t.ne[0] % block_size(t.type) != 0)
            error("tensor '", t.name, "': ne[0] = ", t.ne[0], " is not a multiple of ", type_name(t.type), "'s block of ", block_size(t.type));
        const std::uint64_t blocks = t.count / block_size(t.type);
        if (blocks > std::numeric_limits<std::uint64_t>::max() / block_bytes(t.type)) error("tensor '", t.name, "': byte size overflows");
        t.bytes = blocks * block_bytes(t.type);
        t.offset = read_uint(8, "a tensor offset");
        if (t.offset % alignment_ != 0) error("tensor '", t.name, "': offset ", t.offset, " is not a multiple of the alignment ", alignment_);
        index_.emplace(t.name, tensors_.size());
        return t;
    }

    // Every tensor inside the data section, none overlapping another.
    void check_tensor_data() const {
        const std::uint64_t available = bytes_.size() - data_start_;
        std::vector<const TensorInfo*> order;
        for (const TensorInfo& t : tensors_) {
            if (t.offset > available || t.bytes > available - t.offset)
                error("tensor '", t.name, "': bytes [", t.offset, ", ", t.offset + std::min(t.bytes, available), "...) run past the ", available,
                      "-byte data section");
            order.push_back(&t);
        }
        std::ranges::sort(order, [](const TensorInfo* a, const TensorInfo* b) { return a->offset < b->offset; });
        for (std::size_t i = 1; i < order.size(); ++i)
            if (order[i]->offset < order[i - 1]->offset + order[i - 1]->bytes)
                error("tensors '", order[i - 1]->name, "' and '", order[i]->name, "' overlap");
    }

    std::string source_;
    MappedFile mapped_;
    std::vector<std::byte> owned_;
    std::span<const std::byte> bytes_;
    std::size_t pos_ = 0;
    std::uint32_t version_ = 0;
    std::uint32_t alignment_ = default_alignment;
    std::uint64_t data_start_ = 0;
    std::vector<std::pair<std::string, Value>> metadata_;
    std::map<std::string, std::size_t, std::less<>> key_index_;
    std::vector<TensorInfo> tensors_;
    std::map<std::string, std::size_t, std::less<>> index_;
};

}  // namespace npft::io::gguf
