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

#include "safetensors_format.hpp"
#include "safetensors_writer.hpp"

namespace npft::io {

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
