#pragma once
// Training checkpoints are safetensors files (io/safetensors.hpp), written durably through its writer (a unique
// temporary, fsync, rename, fsync of the folder: io/atomic_file.hpp). Tensors hold the arrays (weights, outlier
// positions as I64, noise, adapters, optimizer moments); the scalar state (step, draw counter, options fingerprint,
// optimizer step counts) is in the `__metadata__` string map. A checksum over every tensor and metadata entry, kept in
// the metadata as "npft.checksum", makes a flipped byte anywhere in the data an npft::Error, as is a truncated file, a
// missing tensor or a shape that does not match (each error names the file and the entry). What the entries mean is up
// to the writer (Pipeline::save_checkpoint lists its own in docs/pipeline.md).
#include <bit>
#include <charconv>
#include <cstdint>
#include <filesystem>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "../core/config.hpp"
#include "../core/eigen.hpp"
#include "../core/error.hpp"
#include "../io/safetensors.hpp"

namespace npft::train {

namespace detail {
inline std::uint64_t fnv1a(std::uint64_t h, std::span<const std::byte> bytes) {
    for (const std::byte b : bytes) {
        h ^= static_cast<std::uint64_t>(b);
        h *= 0x100000001B3ull;
    }
    return h;
}
inline std::uint64_t fnv1a(std::uint64_t h, const std::string& s) {
    return fnv1a(h, std::as_bytes(std::span<const char>(s.data(), s.size())));
}
inline constexpr std::uint64_t fnv1a_basis = 0xCBF29CE484222325ull;
inline constexpr const char* checksum_key = "npft.checksum";
}  // namespace detail

/// Collects a checkpoint's tensors and scalars; save() adds the checksum and writes the file durably.
class CheckpointWriter {
public:
    static_assert(std::endian::native == std::endian::little, "npft checkpoints hash their tensors' bytes as stored (little-endian)");

    void matrix(const std::string& name, const Matrix& m) {
        floats(name, std::span<const float>(m.data(), static_cast<std::size_t>(m.size())), {m.rows(), m.cols()});
    }
    void floats(const std::string& name, std::span<const float> values) { floats(name, values, {static_cast<Index>(values.size())}); }
    void indices(const std::string& name, std::span<const Index> values) {
        file_.add(name, values, {static_cast<Index>(values.size())});
        hashes_[name] = detail::fnv1a(detail::fnv1a_basis, std::as_bytes(values));
    }
    void text(const std::string& key, std::string value) {
        file_.add_metadata(key, std::move(value));
    }
    void integer(const std::string& key, std::int64_t value) { text(key, std::to_string(value)); }
    void unsigned_integer(const std::string& key, std::uint64_t value) { text(key, std::to_string(value)); }
    /// A float kept bit for bit (its IEEE bits as an unsigned integer).
    void exact_float(const std::string& key, float value) { unsigned_integer(key, std::bit_cast<std::uint32_t>(value)); }

    /// Writes the file to `path` durably; a crash, a full disk or a concurrent writer never leaves a partial checkpoint
    /// under `path`: it holds the previous checkpoint or this one, whole. Throws npft::Error naming the path and the reason.
    void save(const std::string& path) const {
        io::SafetensorsWriter out = file_;
        out.add_metadata(detail::checksum_key, std::to_string(checksum(hashes_, out.metadata())));
        out.save(path);
    }

    /// The checksum over tensors (by name, each hashed as stored) and metadata (by key), the checksum entry excluded.
    static std::uint64_t checksum(const std::map<std::string, std::uint64_t>& tensor_hashes,
                                  const std::map<std::string, std::string, std::less<>>& metadata) {
        std::uint64_t h = detail::fnv1a_basis;
        for (const auto& [name, hash] : tensor_hashes) {
            h = detail::fnv1a(h, name);
            h = detail::fnv1a(h, std::as_bytes(std::span<const std::uint64_t>(&hash, 1)));
        }
        for (const auto& [key, value] : metadata) {
            if (key == detail::checksum_key) continue;
            h = detail::fnv1a(detail::fnv1a(h, key), value);
        }
        return h;
    }

private:
    io::SafetensorsWriter file_;
    std::map<std::string, std::uint64_t> hashes_;

    void floats(const std::string& name, std::span<const float> values, std::vector<Index> shape) {
        file_.add(name, values, std::move(shape));
        hashes_[name] = detail::fnv1a(detail::fnv1a_basis, std::as_bytes(values));
    }
};

/// Opens a checkpoint, checks that it is whole (safetensors structure, checksum) and reads its entries with checked
/// shapes. Every failure is an npft::Error that names the file and the entry.
class CheckpointReader {
public:
    explicit CheckpointReader(const std::string& path) : path_(path) {
        std::error_code ec;
        require(std::filesystem::is_regular_file(path, ec), "cannot open checkpoint file '", path, "': no such file");
        try {
            file_ = io::SafetensorsFile::load(path);
        } catch (const Error& e) {
            fail("checkpoint '", path, "' is not a readable safetensors file (truncated or corrupt): ", e.what());
        }
        const auto& metadata = file_.metadata();
        const auto stored = metadata.find(detail::checksum_key);
        require(stored != metadata.end(), "checkpoint '", path, "' has no \"", detail::checksum_key,
                "\" entry: it was not written by npft::train::CheckpointWriter");
        std::map<std::string, std::uint64_t> hashes;
        for (const std::string& name : file_.names()) hashes[name] = detail::fnv1a(detail::fnv1a_basis, file_.raw(name));
        require(stored->second == std::to_string(CheckpointWriter::checksum(hashes, metadata)), "checkpoint '", path,
                "' is corrupt (checksum mismatch): a tensor or metadata value changed after it was written");
    }

    const std::string& path() const { return path_; }
    bool contains(const std::string& name) const { return file_.contains(name); }

    /// A [rows, cols] F32 tensor into `out` (resized).
    void matrix_into(const std::string& name, Index rows, Index cols, Matrix& out) const {
        out.resize(rows, cols);
        const auto values = checked([&] { return file_.read<float>(name, {rows, cols}); }, name);
        std::copy(values.begin(), values.end(), out.data());
    }
    /// A [n] F32 tensor into `out`, whose size must be n.
    void floats_into(const std::string& name, std::span<float> out) const {
        const auto values = checked([&] { return file_.read<float>(name, {static_cast<Index>(out.size())}); }, name);
        std::copy(values.begin(), values.end(), out.begin());
    }
    std::vector<float> floats(const std::string& name) const {
        return checked([&] { return file_.read<float>(name); }, name);
    }
    std::vector<Index> indices(const std::string& name) const {
        return checked([&] { return file_.read<Index>(name); }, name);
    }
    const std::string& text(const std::string& key) const {
        return checked([&]() -> const std::string& { return file_.metadata(key); }, key);
    }
    std::int64_t integer(const std::string& key) const { return parse<std::int64_t>(key); }
    std::uint64_t unsigned_integer(const std::string& key) const { return parse<std::uint64_t>(key); }
    float exact_float(const std::string& key) const {
        const std::uint64_t bits = unsigned_integer(key);
        require(bits <= 0xFFFFFFFFull, "checkpoint '", path_, "': metadata \"", key, "\" = ", bits, " is not a float's bits");
        return std::bit_cast<float>(static_cast<std::uint32_t>(bits));
    }

private:
    std::string path_;
    io::SafetensorsFile file_;

    template <class F>
    auto checked(F&& read, const std::string& entry) const -> decltype(read()) {
        try {
            return read();
        } catch (const Error& e) {
            fail("checkpoint '", path_, "', entry '", entry, "': ", e.what());
        }
    }
    template <class T>
    T parse(const std::string& key) const {
        const std::string& s = text(key);
        T value{};
        const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
        require(ec == std::errc() && end == s.data() + s.size(), "checkpoint '", path_, "': metadata \"", key, "\" = '", s,
                "' is not an integer");
        return value;
    }
};

/// An optimizer state as tensors `<prefix>.0`, `<prefix>.1`, ... and its step count as metadata `<prefix>.steps`.
template <class State>
void save_optimizer_state(CheckpointWriter& w, const std::string& prefix, const State& state) {
    auto& s = const_cast<State&>(state);  // buffers() hands out mutable spans; they are only read here
    w.integer(prefix + ".steps", static_cast<std::int64_t>(s.steps));
    const auto buffers = s.buffers();
    for (std::size_t i = 0; i < buffers.size(); ++i) w.floats(prefix + "." + std::to_string(i), buffers[i]);
}

/// A fresh state of `size` elements from `optimizer`, filled from what save_optimizer_state wrote under `prefix`.
template <class Opt>
typename Opt::State load_optimizer_state(const CheckpointReader& r, const std::string& prefix, const Opt& optimizer, Index size) {
    typename Opt::State state = optimizer.make_state(size);
    state.steps = r.integer(prefix + ".steps");
    auto buffers = state.buffers();
    for (std::size_t i = 0; i < buffers.size(); ++i) r.floats_into(prefix + "." + std::to_string(i), buffers[i]);
    require(!r.contains(prefix + "." + std::to_string(buffers.size())), "checkpoint '", r.path(), "': optimizer state '",
            prefix, "' has more than the ", buffers.size(), " buffers this optimizer keeps");
    return state;
}

}  // namespace npft::train
