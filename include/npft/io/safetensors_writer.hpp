#pragma once
// Writing safetensors files (the format and the checks it shares with the reader: safetensors_format.hpp).
#include <algorithm>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <map>
#include <ranges>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "atomic_file.hpp"
#include "safetensors_format.hpp"

namespace npft::io {

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

}  // namespace npft::io
