#pragma once
// Reading and writing safetensors files, the tensor format Hugging Face users already have.
//
// Layout (github.com/huggingface/safetensors, README "Format"):
//   bytes [0, 8)        N: little-endian u64, the header length
//   bytes [8, 8 + N)    UTF-8 JSON object, starting with '{', possibly padded with trailing spaces:
//                       {"__metadata__": {"key": "value", ...},
//                        "name": {"dtype": "F32", "shape": [rows, cols], "data_offsets": [begin, end]}, ...}
//   bytes [8 + N, end)  the data buffer: each tensor's little-endian, row-major bytes at [begin, end) relative to it.
// The tensors must cover the data buffer exactly: no holes, no overlaps, nothing trailing. Empty tensors (a zero in
// the shape, begin == end) and scalars (shape []) are allowed.
//
// The reader trusts nothing: every length, offset, shape and dtype is checked before a byte is touched, and a corrupt
// file gives an npft::Error that names the file and the problem. load() reads the whole file into memory; map() maps it.
#include <algorithm>
#include <array>
#include <bit>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <ranges>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "../core/checked_math.hpp"
#include "../core/config.hpp"
#include "../core/dtype.hpp"
#include "../core/eigen.hpp"
#include "../core/error.hpp"
#include "../core/tensor_view.hpp"
#include "atomic_file.hpp"
#include "json.hpp"
#include "mapped_file.hpp"

namespace npft::io {

/// Element types of the safetensors format. Every one can be read and written as raw bytes; the ones with a C++
/// counterpart (TensorElement) also through typed read/add.
enum class Dtype : std::uint8_t { boolean, u8, i8, f8_e4m3, f8_e5m2, u16, i16, f16, bf16, u32, i32, f32, u64, i64, f64 };

inline constexpr std::array<Dtype, 15> all_dtypes = {Dtype::boolean, Dtype::u8,  Dtype::i8,  Dtype::f8_e4m3, Dtype::f8_e5m2,
                                                     Dtype::u16,     Dtype::i16, Dtype::f16, Dtype::bf16,    Dtype::u32,
                                                     Dtype::i32,     Dtype::f32, Dtype::u64, Dtype::i64,     Dtype::f64};

/// The dtype as the format spells it ("F32", "BF16", "U8", ...).
inline const char* dtype_name(Dtype d) {
    switch (d) {
        case Dtype::boolean: return "BOOL";
        case Dtype::u8: return "U8";
        case Dtype::i8: return "I8";
        case Dtype::f8_e4m3: return "F8_E4M3";
        case Dtype::f8_e5m2: return "F8_E5M2";
        case Dtype::u16: return "U16";
        case Dtype::i16: return "I16";
        case Dtype::f16: return "F16";
        case Dtype::bf16: return "BF16";
        case Dtype::u32: return "U32";
        case Dtype::i32: return "I32";
        case Dtype::f32: return "F32";
        case Dtype::u64: return "U64";
        case Dtype::i64: return "I64";
        case Dtype::f64: return "F64";
    }
    return "unknown";
}

/// Bytes per element.
inline std::size_t dtype_size(Dtype d) {
    switch (d) {
        case Dtype::boolean:
        case Dtype::u8:
        case Dtype::i8:
        case Dtype::f8_e4m3:
        case Dtype::f8_e5m2: return 1;
        case Dtype::u16:
        case Dtype::i16:
        case Dtype::f16:
        case Dtype::bf16: return 2;
        case Dtype::u32:
        case Dtype::i32:
        case Dtype::f32: return 4;
        case Dtype::u64:
        case Dtype::i64:
        case Dtype::f64: return 8;
    }
    return 0;
}

/// The dtype named `name` ("F32", ...), or nullopt for a name the format does not define.
inline std::optional<Dtype> parse_dtype(std::string_view name) {
    for (const Dtype d : all_dtypes)
        if (name == dtype_name(d)) return d;
    return std::nullopt;
}

namespace detail {
template <class T>
constexpr std::optional<Dtype> dtype_for() {
    using U = std::remove_cv_t<T>;
    if constexpr (std::same_as<U, std::uint8_t>) return Dtype::u8;
    else if constexpr (std::same_as<U, std::int8_t>) return Dtype::i8;
    else if constexpr (std::same_as<U, std::uint16_t>) return Dtype::u16;
    else if constexpr (std::same_as<U, std::int16_t>) return Dtype::i16;
    else if constexpr (std::same_as<U, std::uint32_t>) return Dtype::u32;
    else if constexpr (std::same_as<U, std::int32_t>) return Dtype::i32;
    else if constexpr (std::same_as<U, std::uint64_t>) return Dtype::u64;
    else if constexpr (std::same_as<U, std::int64_t>) return Dtype::i64;
    else if constexpr (std::same_as<U, half>) return Dtype::f16;
    else if constexpr (std::same_as<U, bfloat16>) return Dtype::bf16;
    else if constexpr (std::same_as<U, float>) return Dtype::f32;
    else if constexpr (std::same_as<U, double>) return Dtype::f64;
    else return std::nullopt;
}
}  // namespace detail

/// A C++ type with a safetensors dtype: fixed-width integers, half, bfloat16, float, double. (BOOL and the F8 types
/// have no C++ counterpart here: use add_raw / raw.)
template <class T>
concept TensorElement = detail::dtype_for<T>().has_value();

/// The safetensors dtype of T.
template <TensorElement T>
inline constexpr Dtype dtype_of = *detail::dtype_for<T>();

/// A shape as text: "[2, 3]", "[]" for a scalar.
inline std::string shape_string(std::span<const Index> shape) {
    std::string out = "[";
    for (std::size_t i = 0; i < shape.size(); ++i) {
        if (i > 0) out += ", ";
        out += std::to_string(shape[i]);
    }
    return out + "]";
}

/// Element count of a shape; throws on a negative dimension or on overflow. (A scalar, shape [], has one element.)
inline std::size_t shape_numel(std::span<const Index> shape) {
    std::size_t n = 1;
    for (const Index d : shape) {
        require(d >= 0, "shape ", shape_string(shape), " has a negative dimension");
        const auto u = static_cast<std::size_t>(d);
        require(u == 0 || n <= std::numeric_limits<std::size_t>::max() / u, "shape ", shape_string(shape),
                " has too many elements to address");
        n *= u;
    }
    return n;
}

/// What the header says about one tensor.
struct TensorInfo {
    Dtype dtype = Dtype::f32;
    std::vector<Index> shape;
    std::size_t begin = 0;  ///< byte offsets into the data buffer: the tensor is [begin, end)
    std::size_t end = 0;

    std::size_t numel() const { return shape_numel(shape); }
    std::size_t bytes() const { return end - begin; }
};

namespace detail {
// Element-wise little-endian copies: a memcpy on little-endian hosts, a byte swap per element elsewhere.
template <class T>
void store_le(std::byte* dst, const T* src, std::size_t count) {
    std::memcpy(dst, static_cast<const void*>(src), count * sizeof(T));
    if constexpr (std::endian::native == std::endian::big && sizeof(T) > 1) {
        for (std::size_t i = 0; i < count; ++i) std::reverse(dst + i * sizeof(T), dst + (i + 1) * sizeof(T));
    }
}
template <class T>
void load_le(T* dst, const std::byte* src, std::size_t count) {
    static_assert(std::is_trivially_copyable_v<T>, "tensor elements are copied as bytes");
    std::memcpy(static_cast<void*>(dst), src, count * sizeof(T));
    if constexpr (std::endian::native == std::endian::big && sizeof(T) > 1) {
        auto* bytes = reinterpret_cast<unsigned char*>(dst);
        for (std::size_t i = 0; i < count; ++i) std::reverse(bytes + i * sizeof(T), bytes + (i + 1) * sizeof(T));
    }
}
inline std::uint64_t load_u64_le(const std::byte* src) {
    std::uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<std::uint64_t>(src[i]);
    return v;
}

// Headers larger than this are rejected, as the reference implementation does, so a corrupt length cannot make the
// reader parse gigabytes of JSON.
inline constexpr std::uint64_t max_header_bytes = 100'000'000;
inline constexpr std::string_view metadata_key = "__metadata__";

inline bool is_valid_utf8(std::string_view s) {
    for (std::size_t i = 0; i < s.size();) {
        const std::size_t n = json::detail::utf8_sequence_length(s, i);
        if (n == 0) return false;
        i += n;
    }
    return true;
}

// `s` with every byte that is not part of valid UTF-8 shown as \\xNN, so that an error message about a bad name stays
// readable (and is itself valid UTF-8).
inline std::string printable(std::string_view s) {
    static constexpr char hex[] = "0123456789abcdef";
    std::string out;
    for (std::size_t i = 0; i < s.size();) {
        const std::size_t n = json::detail::utf8_sequence_length(s, i);
        if (n == 0) {
            const auto b = static_cast<unsigned char>(s[i]);
            out += "\\x";
            out += hex[b >> 4];
            out += hex[b & 0xf];
            ++i;
        } else {
            out.append(s.substr(i, n));
            i += n;
        }
    }
    return out;
}

// The writer's side of the reader's rules for one tensor: a valid UTF-8, non-empty, non-reserved name and a shape
// whose byte size fits in 64 bits (checked product: a shape like [2^62] of F32 must not wrap to 0 bytes). Returns the
// byte size.
inline std::size_t checked_tensor_bytes(std::string_view name, std::span<const Index> shape, Dtype dtype) {
    require(!name.empty(), "tensor name must be non-empty");
    require(is_valid_utf8(name), "tensor name '", printable(name), "' is not valid UTF-8 (the format's header is UTF-8 JSON)");
    require(name != metadata_key, "tensor name '__metadata__' is reserved for the metadata");
    // The same order of checks as the reader's parse_tensor: the element count dimension by dimension, then the bytes.
    std::optional<std::size_t> numel = 1;
    for (const Index d : shape) {
        require(d >= 0, "tensor '", name, "': shape ", shape_string(shape), " has a negative dimension");
        if (numel) numel = checked_mul(*numel, static_cast<std::size_t>(d));
    }
    const std::optional<std::size_t> bytes = numel ? checked_mul(*numel, dtype_size(dtype)) : std::nullopt;
    require(bytes.has_value(), "tensor '", name, "': shape ", shape_string(shape), " of ", dtype_name(dtype),
            " has a byte size that overflows 64 bits");
    return *bytes;
}
}  // namespace detail

/// Collects tensors and string metadata, then writes one safetensors file. Tensors are copied when added, so the
/// caller's buffers may change or die before save(). Output is deterministic: the data buffer holds tensors by
/// decreasing element size, then by name (so every tensor is aligned to its element size in the file, the header
/// being padded to a multiple of 8 bytes); the header lists them in the same order after "__metadata__".
class SafetensorsWriter {
public:
    /// A tensor from contiguous row-major data (std::vector, std::array, std::span...) with the given shape.
    template <std::ranges::contiguous_range Range>
        requires TensorElement<std::ranges::range_value_t<Range>>
    void add(std::string name, const Range& data, std::vector<Index> shape) {
        using T = std::remove_cv_t<std::ranges::range_value_t<Range>>;
        const std::size_t count = std::ranges::size(data);
        const std::size_t numel = detail::checked_tensor_bytes(name, shape, dtype_of<T>) / sizeof(T);
        require(numel == count, "tensor '", name, "': shape ", shape_string(shape), " holds ", numel, " elements, but the data has ",
                count);
        Entry& e = new_entry(std::move(name), dtype_of<T>, std::move(shape));
        e.bytes.resize(count * sizeof(T));
        if (count > 0) detail::store_le(e.bytes.data(), std::ranges::data(data), count);
    }

    /// A matrix (any npft::MatrixView, Eigen matrix, Map or Ref of float, half or bfloat16), stored row-major with
    /// shape [rows, cols] whatever its strides.
    template <class M>
        requires MatrixViewable<const M>
    void add(std::string name, const M& matrix) {
        const auto view = as_matrix_view(matrix);
        using T = std::remove_const_t<typename decltype(view)::element_type>;
        Entry& e = new_entry(std::move(name), dtype_of<T>, {view.rows(), view.cols()});
        e.bytes.resize(static_cast<std::size_t>(view.size()) * sizeof(T));
        std::byte* out = e.bytes.data();
        for (Index r = 0; r < view.rows(); ++r) {
            for (Index c = 0; c < view.cols(); ++c, out += sizeof(T)) {
                const T value = view(r, c);
                detail::store_le(out, &value, 1);
            }
        }
    }

    /// A vector (npft::VectorView or Eigen vector), stored with shape [size].
    template <class V>
        requires VectorViewable<const V>
    void add(std::string name, const V& vector) {
        const auto view = as_vector_view(vector);
        using T = std::remove_const_t<typename decltype(view)::element_type>;
        Entry& e = new_entry(std::move(name), dtype_of<T>, {view.size()});
        e.bytes.resize(static_cast<std::size_t>(view.size()) * sizeof(T));
        for (Index i = 0; i < view.size(); ++i) {
            const T value = view[i];
            detail::store_le(e.bytes.data() + static_cast<std::size_t>(i) * sizeof(T), &value, 1);
        }
    }

    /// A tensor given as its little-endian bytes, for dtypes without a C++ type (BOOL, F8_E4M3, F8_E5M2) or data
    /// already encoded.
    void add_raw(std::string name, Dtype dtype, std::vector<Index> shape, std::span<const std::byte> bytes) {
        const std::size_t expected = detail::checked_tensor_bytes(name, shape, dtype);
        require(bytes.size() == expected, "tensor '", name, "': shape ", shape_string(shape), " of ", dtype_name(dtype), " needs ",
                expected, " bytes, got ", bytes.size());
        Entry& e = new_entry(std::move(name), dtype, std::move(shape));
        e.bytes.assign(bytes.begin(), bytes.end());
    }

    /// A "__metadata__" entry. Keys are unique: adding one twice throws (it would silently drop a value).
    void add_metadata(std::string key, std::string value) {
        require(detail::is_valid_utf8(key), "metadata key '", detail::printable(key), "' is not valid UTF-8");
        require(detail::is_valid_utf8(value), "metadata value of '", key, "' is not valid UTF-8: '", detail::printable(value), "'");
        require(!metadata_.contains(key), "metadata key '", key, "' was already added");
        metadata_.emplace(std::move(key), std::move(value));
    }

    bool contains(std::string_view name) const {
        return std::ranges::any_of(entries_, [&](const Entry& e) { return e.name == name; });
    }
    /// Number of tensors added.
    std::size_t size() const { return entries_.size(); }
    const std::map<std::string, std::string, std::less<>>& metadata() const { return metadata_; }

    /// The whole file as bytes.
    std::vector<std::byte> to_bytes() const {
        const std::vector<const Entry*> order = file_order();
        const std::string header = make_header(order);
        std::vector<std::byte> out(8 + header.size());
        const std::uint64_t n = header.size();
        for (int i = 0; i < 8; ++i) out[static_cast<std::size_t>(i)] = static_cast<std::byte>((n >> (8 * i)) & 0xffu);
        std::memcpy(out.data() + 8, header.data(), header.size());
        for (const Entry* e : order) out.insert(out.end(), e->bytes.begin(), e->bytes.end());
        return out;
    }

    /// Writes the file durably (atomic_file.hpp): to a unique temporary beside `path`, synced, then renamed into place,
    /// so a crash, a full disk or a concurrent writer never leaves a truncated file under `path`.
    void save(const std::filesystem::path& path) const {
        const std::vector<const Entry*> order = file_order();
        const std::string header = make_header(order);
        AtomicFile out(path);
        std::array<char, 8> length{};
        const std::uint64_t n = header.size();
        for (int i = 0; i < 8; ++i) length[static_cast<std::size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xffu);
        out.write(length.data(), 8);
        out.write(header.data(), header.size());
        for (const Entry* e : order) out.write(e->bytes.data(), e->bytes.size());
        out.commit();
    }

private:
    struct Entry {
        std::string name;
        Dtype dtype;
        std::vector<Index> shape;
        std::vector<std::byte> bytes;
    };

    std::vector<Entry> entries_;
    std::map<std::string, std::string, std::less<>> metadata_;

    Entry& new_entry(std::string name, Dtype dtype, std::vector<Index> shape) {
        detail::checked_tensor_bytes(name, shape, dtype);  // the reader's rules for names and shapes
        require(!contains(name), "tensor '", name, "' was already added (names must be unique)");
        entries_.push_back(Entry{std::move(name), dtype, std::move(shape), {}});
        return entries_.back();
    }

    std::vector<const Entry*> file_order() const {
        std::vector<const Entry*> order;
        for (const Entry& e : entries_) order.push_back(&e);
        std::ranges::sort(order, [](const Entry* a, const Entry* b) {
            const std::size_t sa = dtype_size(a->dtype), sb = dtype_size(b->dtype);
            return sa != sb ? sa > sb : a->name < b->name;
        });
        return order;
    }

    std::string make_header(const std::vector<const Entry*>& order) const {
        std::string h = "{";
        if (!metadata_.empty()) {
            h += json::quote(detail::metadata_key);
            h += ":{";
            bool first = true;
            for (const auto& [key, value] : metadata_) {
                if (!first) h += ',';
                first = false;
                h += json::quote(key) + ':' + json::quote(value);
            }
            h += '}';
        }
        std::size_t offset = 0;
        for (const Entry* e : order) {
            if (h.size() > 1) h += ',';
            h += json::quote(e->name);
            h += ":{\"dtype\":\"";
            h += dtype_name(e->dtype);
            h += "\",\"shape\":[";
            for (std::size_t i = 0; i < e->shape.size(); ++i) {
                if (i > 0) h += ',';
                h += std::to_string(e->shape[i]);
            }
            h += "],\"data_offsets\":[" + std::to_string(offset) + ',' + std::to_string(offset + e->bytes.size()) + "]}";
            offset += e->bytes.size();
        }
        h += '}';
        h.append((8 - h.size() % 8) % 8, ' ');  // the data buffer starts 8-byte aligned
        require(h.size() <= detail::max_header_bytes, "safetensors header of ", h.size(), " bytes (", entries_.size(),
                " tensors, ", metadata_.size(), " metadata keys) exceeds the readers' limit of ", detail::max_header_bytes,
                " bytes: split the tensors over several files or shorten the metadata");
        return h;
    }
};

/// A parsed safetensors file held in memory: names, dtypes, shapes and metadata, and typed, checked reads.
class SafetensorsFile {
public:
    /// Reads and checks the file at `path`.
    static SafetensorsFile load(const std::filesystem::path& path) {
        const std::string source = "file '" + path.string() + "'";
        std::error_code ec;
        const bool exists = std::filesystem::exists(path, ec);
        require(exists, "safetensors ", source, " does not exist");
        require(!std::filesystem::is_directory(path, ec), "safetensors ", source, " is a directory");
        std::ifstream in(path, std::ios::binary | std::ios::ate);
        require(static_cast<bool>(in), "safetensors ", source, " cannot be opened for reading");
        const std::streamoff size = in.tellg();
        require(size >= 0, "safetensors ", source, ": cannot determine its size");
        std::vector<std::byte> bytes(static_cast<std::size_t>(size));
        in.seekg(0);
        in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(size));
        require(static_cast<bool>(in), "safetensors ", source, ": reading ", size, " bytes failed");
        return from_bytes(std::move(bytes), source);
    }

    /// Maps the file at `path` instead of reading it (io/mapped_file.hpp): tensors are read from the page cache one by
    /// one, so a model larger than half the memory still loads. Same checks as load().
    static SafetensorsFile map(const std::filesystem::path& path) {
        SafetensorsFile f;
        f.source_ = "file '" + path.string() + "'";
        f.mapped_ = MappedFile(path, "safetensors");
        f.view_ = f.mapped_.bytes();
        f.parse();
        return f;
    }

    /// Parses and checks a whole file held in memory; `source` names it in error messages.
    static SafetensorsFile from_bytes(std::vector<std::byte> bytes, std::string source = "buffer") {
        SafetensorsFile f;
        f.source_ = std::move(source);
        f.file_ = std::move(bytes);
        f.view_ = f.file_;
        f.parse();
        return f;
    }

    /// Tensor names in ascending order.
    std::vector<std::string> names() const {
        std::vector<std::string> out;
        out.reserve(tensors_.size());
        for (const auto& [name, info] : tensors_) out.push_back(name);
        return out;
    }
    std::size_t size() const { return tensors_.size(); }
    bool contains(std::string_view name) const { return tensors_.find(name) != tensors_.end(); }

    /// Dtype, shape and offsets of `name`; throws if there is no such tensor.
    const TensorInfo& info(std::string_view name) const {
        const auto it = tensors_.find(name);
        if (it == tensors_.end()) error("no tensor named '", name, "'");
        return it->second;
    }

    /// The "__metadata__" map (empty if the file has none).
    const std::map<std::string, std::string, std::less<>>& metadata() const { return metadata_; }
    /// One metadata value; throws naming the key if it is absent.
    const std::string& metadata(std::string_view key) const {
        const auto it = metadata_.find(key);
        if (it == metadata_.end()) error("no metadata key '", key, "'");
        return it->second;
    }

    /// The tensor's bytes as stored (little-endian, row-major).
    std::span<const std::byte> raw(std::string_view name) const {
        const TensorInfo& t = info(name);
        return view_.subspan(data_start_ + t.begin, t.bytes());
    }

    /// The tensor's elements, row-major. Throws unless its dtype is exactly T's (no silent conversion).
    template <TensorElement T>
    std::vector<std::remove_cv_t<T>> read(std::string_view name) const {
        using U = std::remove_cv_t<T>;
        require_dtype(name, dtype_of<U>);
        const std::span<const std::byte> bytes = raw(name);
        std::vector<U> out(bytes.size() / sizeof(U));
        if (!out.empty()) detail::load_le(out.data(), bytes.data(), out.size());
        return out;
    }

    /// As read(name), and throws unless the tensor's shape is `expected_shape`.
    template <TensorElement T>
    std::vector<std::remove_cv_t<T>> read(std::string_view name, const std::vector<Index>& expected_shape) const {
        require_shape(name, expected_shape);
        return read<T>(name);
    }

    /// Copies a [rows, cols] tensor of dtype T into `out` (any strides). Throws on a dtype or shape mismatch.
    template <StorageElement T>
        requires(!std::is_const_v<T>)
    void read_into(std::string_view name, MatrixView<T> out) const {
        require_dtype(name, dtype_of<T>);
        require_shape(name, {out.rows(), out.cols()});
        const std::byte* in = raw(name).data();
        for (Index r = 0; r < out.rows(); ++r)
            for (Index c = 0; c < out.cols(); ++c, in += sizeof(T)) detail::load_le(&out(r, c), in, 1);
    }

    /// Copies a [size] tensor of dtype T into `out` (any stride). Throws on a dtype or shape mismatch.
    template <StorageElement T>
        requires(!std::is_const_v<T>)
    void read_into(std::string_view name, VectorView<T> out) const {
        require_dtype(name, dtype_of<T>);
        require_shape(name, {out.size()});
        const std::byte* in = raw(name).data();
        for (Index i = 0; i < out.size(); ++i, in += sizeof(T)) detail::load_le(&out[i], in, 1);
    }

    /// A [rows, cols] tensor of F32, F16 or BF16 as an fp32 npft::Matrix (the one read that converts, because model
    /// files ship in all three).
    Matrix read_matrix(std::string_view name) const {
        const TensorInfo& t = info(name);
        if (t.shape.size() != 2) error("tensor '", name, "' has shape ", shape_string(t.shape), ", expected a matrix [rows, cols]");
        Matrix out(t.shape[0], t.shape[1]);
        const auto view = as_matrix_view(out);
        switch (t.dtype) {
            case Dtype::f32: read_into(name, view); break;
            case Dtype::f16: convert_into<half>(name, view); break;
            case Dtype::bf16: convert_into<bfloat16>(name, view); break;
            default: error("tensor '", name, "' has dtype ", dtype_name(t.dtype), ", expected F32, F16 or BF16 for a float matrix");
        }
        return out;
    }

    /// For a mapped file: drops the tensor's pages from the process's resident set once it has been converted
    /// (MappedFile::release); reading the tensor again still works. Does nothing for a file held in memory.
    void release(std::string_view name) const { mapped_.release(raw(name)); }

    /// How the file is named in error messages.
    const std::string& source() const { return source_; }

private:
    std::string source_;
    std::vector<std::byte> file_;  // the file's bytes when loaded whole (from_bytes, load)
    MappedFile mapped_;            // or mapped (map)
    std::span<const std::byte> view_;
    std::size_t data_start_ = 0;
    std::map<std::string, TensorInfo, std::less<>> tensors_;
    std::map<std::string, std::string, std::less<>> metadata_;

    template <class... Parts>
    [[noreturn]] void error(const Parts&... parts) const {
        fail("safetensors ", source_, ": ", parts...);
    }

    void require_dtype(std::string_view name, Dtype wanted) const {
        const TensorInfo& t = info(name);
        if (t.dtype != wanted)
            error("tensor '", name, "' has dtype ", dtype_name(t.dtype), ", cannot read it as ", dtype_name(wanted));
    }
    void require_shape(std::string_view name, const std::vector<Index>& expected) const {
        const TensorInfo& t = info(name);
        if (t.shape != expected)
            error("tensor '", name, "' has shape ", shape_string(t.shape), ", expected ", shape_string(expected));
    }

    template <class Stored>
    void convert_into(std::string_view name, MatrixView<float> out) const {
        const std::byte* in = raw(name).data();
        for (Index r = 0; r < out.rows(); ++r) {
            for (Index c = 0; c < out.cols(); ++c, in += sizeof(Stored)) {
                Stored value;
                detail::load_le(&value, in, 1);
                out(r, c) = static_cast<float>(value);
            }
        }
    }

    void parse() {
        const std::size_t size = view_.size();
        if (size < 8) error("file is truncated: ", size, " bytes, too short for the 8-byte header length");
        const std::uint64_t header_length = detail::load_u64_le(view_.data());
        if (header_length > size - 8)
            error("file is truncated or corrupt: header length ", header_length, " is larger than the ", size - 8,
                  " bytes that follow it");
        if (header_length > detail::max_header_bytes)
            error("header length ", header_length, " exceeds the limit of ", detail::max_header_bytes, " bytes");
        const std::string_view header(reinterpret_cast<const char*>(view_.data()) + 8, static_cast<std::size_t>(header_length));
        if (header.empty() || header.front() != '{') error("header must be a JSON object starting with '{'");
        data_start_ = 8 + static_cast<std::size_t>(header_length);
        const std::size_t buffer_size = size - data_start_;

        json::Value root;
        try {
            root = json::parse(header);
        } catch (const Error& e) {
            error("header is not valid JSON: ", e.what());
        }
        for (json::Member& m : root.members) {
            if (m.key == detail::metadata_key) {
                parse_metadata(m.value);
            } else {
                tensors_.emplace(m.key, parse_tensor(m.key, m.value, buffer_size));
            }
        }
        check_coverage(buffer_size);
    }

    void parse_metadata(const json::Value& v) {
        if (!v.is_object()) error("\"__metadata__\" must be an object of strings");
        for (const json::Member& m : v.members) {
            if (!m.value.is_string()) error("\"__metadata__\" value of '", m.key, "' must be a string");
            metadata_.emplace(m.key, m.value.text);
        }
    }

    TensorInfo parse_tensor(const std::string& name, const json::Value& v, std::size_t buffer_size) const {
        if (!v.is_object()) error("tensor '", name, "' must be described by an object {dtype, shape, data_offsets}");
        const json::Value* dtype = nullptr;
        const json::Value* shape = nullptr;
        const json::Value* offsets = nullptr;
        for (const json::Member& m : v.members) {
            if (m.key == "dtype") dtype = &m.value;
            else if (m.key == "shape") shape = &m.value;
            else if (m.key == "data_offsets") offsets = &m.value;
            else error("tensor '", name, "' has an unknown field ", json::quote(m.key));
        }
        if (!dtype) error("tensor '", name, "' has no \"dtype\"");
        if (!shape) error("tensor '", name, "' has no \"shape\"");
        if (!offsets) error("tensor '", name, "' has no \"data_offsets\"");

        TensorInfo t;
        if (!dtype->is_string()) error("tensor '", name, "': \"dtype\" must be a string");
        const std::optional<Dtype> parsed = parse_dtype(dtype->text);
        if (!parsed) {
            std::string known;
            for (const Dtype d : all_dtypes) known += std::string(known.empty() ? "" : ", ") + dtype_name(d);
            error("tensor '", name, "' has unknown dtype ", json::quote(dtype->text), " (known: ", known, ")");
        }
        t.dtype = *parsed;

        if (!shape->is_array()) error("tensor '", name, "': \"shape\" must be an array of non-negative integers");
        for (const json::Value& d : shape->items) {
            const std::optional<std::uint64_t> n = json::as_uint64(d);
            if (!n || *n > static_cast<std::uint64_t>(std::numeric_limits<Index>::max()))
                error("tensor '", name, "': \"shape\" must be an array of non-negative integers");
            t.shape.push_back(static_cast<Index>(*n));
        }
        std::size_t numel = 1;
        for (const Index d : t.shape) {
            const auto u = static_cast<std::size_t>(d);
            if (u != 0 && numel > std::numeric_limits<std::size_t>::max() / u)
                error("tensor '", name, "': shape ", shape_string(t.shape), " overflows");
            numel *= u;
        }
        const std::size_t element = dtype_size(t.dtype);
        if (numel > std::numeric_limits<std::size_t>::max() / element)
            error("tensor '", name, "': shape ", shape_string(t.shape), " overflows");

        if (!offsets->is_array() || offsets->items.size() != 2)
            error("tensor '", name, "': \"data_offsets\" must be an array of two non-negative integers [begin, end]");
        const std::optional<std::uint64_t> begin = json::as_uint64(offsets->items[0]);
        const std::optional<std::uint64_t> end = json::as_uint64(offsets->items[1]);
        if (!begin || !end)
            error("tensor '", name, "': \"data_offsets\" must be an array of two non-negative integers [begin, end]");
        if (*begin > *end) error("tensor '", name, "': data_offsets [", *begin, ", ", *end, "] are out of order (begin after end)");
        if (*end > buffer_size)
            error("tensor '", name, "': data_offsets [", *begin, ", ", *end, "] are out of bounds of the ", buffer_size,
                  "-byte data buffer");
        t.begin = static_cast<std::size_t>(*begin);
        t.end = static_cast<std::size_t>(*end);
        if (t.bytes() != numel * element)
            error("tensor '", name, "': shape ", shape_string(t.shape), " of ", dtype_name(t.dtype), " needs ", numel * element,
                  " bytes, but data_offsets [", t.begin, ", ", t.end, "] hold ", t.bytes());
        return t;
    }

    // The tensors must tile the data buffer exactly, as the reference implementation requires: bytes that belong to no
    // tensor could hide another file inside this one, and overlapping tensors alias each other.
    void check_coverage(std::size_t buffer_size) const {
        std::vector<std::pair<const std::string*, const TensorInfo*>> order;
        for (const auto& [name, info] : tensors_) order.emplace_back(&name, &info);
        std::ranges::sort(order, [](const auto& a, const auto& b) {
            return a.second->begin != b.second->begin ? a.second->begin < b.second->begin : a.second->end < b.second->end;
        });
        std::size_t covered = 0;
        const std::string* last = nullptr;
        for (const auto& [name, t] : order) {
            if (t->begin < covered)
                error("tensors '", *last, "' and '", *name, "' overlap: '", *name, "' starts at byte ", t->begin, " before '",
                      *last, "' ends at byte ", covered);
            if (t->begin > covered)
                error("data buffer bytes [", covered, ", ", t->begin, ") belong to no tensor (holes are not allowed)");
            if (t->end > t->begin || last == nullptr) last = name;
            covered = t->end;
        }
        if (covered != buffer_size)
            error("data buffer bytes [", covered, ", ", buffer_size, ") belong to no tensor (trailing bytes are not allowed)");
    }
};

}  // namespace npft::io
