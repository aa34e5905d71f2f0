#pragma once
// A small, checked binary container for training checkpoints. Layout (all little-endian, as written by this host):
//   "NPFTCKPT" (8 bytes) | format version u32 | payload length u64 | payload | FNV-1a 64 of the payload u64
// The payload is a sequence of typed records (u64, f32, strings and float/index arrays, each array prefixed by its
// length); the reader checks every length against what is left, so a truncated or corrupt file is an npft::Error, never
// a crash. What the records mean is up to the writer (Pipeline::save_checkpoint documents its own order).
#include <bit>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <span>
#include <string>
#include <vector>

#include "../core/config.hpp"
#include "../core/error.hpp"
#include "../io/atomic_file.hpp"

namespace npft::train {

inline constexpr char checkpoint_magic[8] = {'N', 'P', 'F', 'T', 'C', 'K', 'P', 'T'};
inline constexpr std::uint32_t checkpoint_version = 1;

namespace detail {
inline std::uint64_t fnv1a(std::span<const unsigned char> bytes) {
    std::uint64_t h = 0xCBF29CE484222325ull;
    for (const unsigned char b : bytes) {
        h ^= b;
        h *= 0x100000001B3ull;
    }
    return h;
}
}  // namespace detail

/// Accumulates records in memory; save() writes the file in one go.
class CheckpointWriter {
public:
    static_assert(std::endian::native == std::endian::little, "npft checkpoints are written little-endian");

    void u64(std::uint64_t v) { raw(&v, sizeof v); }
    void i64(std::int64_t v) { raw(&v, sizeof v); }
    void f32(float v) { raw(&v, sizeof v); }
    void f64(double v) { raw(&v, sizeof v); }
    void string(const std::string& s) {
        u64(s.size());
        raw(s.data(), s.size());
    }
    void floats(std::span<const float> v) {
        u64(v.size());
        raw(v.data(), v.size() * sizeof(float));
    }
    void indices(std::span<const index> v) {
        u64(v.size());
        raw(v.data(), v.size() * sizeof(index));
    }

    /// Writes header, payload and checksum to `path` durably (io/atomic_file.hpp: a unique temporary, fsync, rename,
    /// fsync of the folder), so a crash, a full disk or a concurrent writer never leaves a partial checkpoint under
    /// `path`: it holds the previous checkpoint or this one, whole. Throws npft::Error naming the path and the reason.
    void save(const std::string& path) const {
        io::AtomicFile out(path);
        out.write(checkpoint_magic, sizeof checkpoint_magic);
        const std::uint32_t version = checkpoint_version;
        out.write(&version, sizeof version);
        const std::uint64_t length = payload_.size();
        out.write(&length, sizeof length);
        out.write(payload_.data(), payload_.size());
        const std::uint64_t checksum = detail::fnv1a(payload_);
        out.write(&checksum, sizeof checksum);
        out.commit();
    }

private:
    void raw(const void* data, std::size_t bytes) {
        const auto* p = static_cast<const unsigned char*>(data);
        payload_.insert(payload_.end(), p, p + bytes);
    }
    std::vector<unsigned char> payload_;
};

/// Reads a file written by CheckpointWriter; every read checks the remaining length.
class CheckpointReader {
public:
    explicit CheckpointReader(const std::string& path) : path_(path) {
        std::ifstream in(path, std::ios::binary);
        require(in.good(), "cannot open checkpoint file '", path, "'");
        char magic[sizeof checkpoint_magic];
        std::uint32_t version = 0;
        std::uint64_t length = 0;
        in.read(magic, sizeof magic);
        require(in.good() && std::memcmp(magic, checkpoint_magic, sizeof magic) == 0, "'", path,
                "' is not an npft checkpoint (bad magic)");
        in.read(reinterpret_cast<char*>(&version), sizeof version);
        require(in.good() && version == checkpoint_version, "checkpoint '", path, "' has format version ", version,
                ", expected ", checkpoint_version);
        in.read(reinterpret_cast<char*>(&length), sizeof length);
        require(in.good(), "checkpoint '", path, "' is truncated (no payload length)");
        in.seekg(0, std::ios::end);
        const auto file_size = static_cast<std::uint64_t>(in.tellg());
        const std::uint64_t header = sizeof magic + sizeof version + sizeof length;
        require(file_size >= header + sizeof(std::uint64_t) && length == file_size - header - sizeof(std::uint64_t),
                "checkpoint '", path, "' is truncated or padded: payload length ", length, " does not match the file size ",
                file_size);
        in.seekg(static_cast<std::streamoff>(header));
        payload_.resize(length);
        in.read(reinterpret_cast<char*>(payload_.data()), static_cast<std::streamsize>(length));
        std::uint64_t checksum = 0;
        in.read(reinterpret_cast<char*>(&checksum), sizeof checksum);
        require(in.good() && checksum == detail::fnv1a(payload_), "checkpoint '", path, "' is corrupt (checksum mismatch)");
    }

    std::uint64_t u64() { return scalar<std::uint64_t>(); }
    std::int64_t i64() { return scalar<std::int64_t>(); }
    float f32() { return scalar<float>(); }
    double f64() { return scalar<double>(); }
    std::string string() {
        const std::uint64_t n = length(1);
        std::string s(n, '\0');
        take(s.data(), n);
        return s;
    }
    std::vector<float> floats() {
        const std::uint64_t n = length(sizeof(float));
        std::vector<float> v(n);
        take(v.data(), n * sizeof(float));
        return v;
    }
    /// Reads a float array into `out`, which must already have the expected size.
    void floats_into(std::span<float> out, const char* what) {
        const std::uint64_t n = length(sizeof(float));
        require(n == out.size(), "checkpoint '", path_, "': ", what, " holds ", n, " values, expected ", out.size());
        take(out.data(), n * sizeof(float));
    }
    std::vector<index> indices() {
        const std::uint64_t n = length(sizeof(index));
        std::vector<index> v(n);
        take(v.data(), n * sizeof(index));
        return v;
    }
    bool at_end() const { return offset_ == payload_.size(); }
    const std::string& path() const { return path_; }

private:
    template <class T>
    T scalar() {
        T v;
        take(&v, sizeof v);
        return v;
    }
    std::uint64_t length(std::size_t element_bytes) {
        const std::uint64_t n = u64();
        require(n <= (payload_.size() - offset_) / element_bytes, "checkpoint '", path_, "' is corrupt: an array of ", n,
                " elements runs past the end of the file");
        return n;
    }
    void take(void* out, std::size_t bytes) {
        require(bytes <= payload_.size() - offset_, "checkpoint '", path_, "' ends early (record at byte ", offset_, ")");
        if (bytes) std::memcpy(out, payload_.data() + offset_, bytes);
        offset_ += bytes;
    }

    std::string path_;
    std::vector<unsigned char> payload_;
    std::size_t offset_ = 0;
};

}  // namespace npft::train
