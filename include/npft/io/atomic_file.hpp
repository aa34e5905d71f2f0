#pragma once
// Durable, all-or-nothing file writes: the one routine every file npft writes goes through (safetensors files,
// quantized matrices inside them, training checkpoints).
//
//   npft::io::AtomicFile file("model.safetensors");   // creates a unique temporary beside it
//   file.write(header.data(), header.size());          // any number of writes
//   file.commit();                                     // write, fsync, close, rename over the target, fsync the folder
//
// Why each step: the data goes to a temporary in the target's folder (same file system, so rename is atomic) under a
// name no other writer uses (pid, a process-wide counter and a random tag; created with O_EXCL), so two processes
// saving to one path never write into the same file. Each write is checked, close() is checked (NFS and some full-disk
// cases report only there), fsync() forces the bytes to the disk before the rename publishes them, and fsync() of the
// folder makes the rename itself durable. A reader of `path` therefore sees the previous file or the new one, whole,
// even after a crash or power loss. Any failure removes the temporary and throws npft::Error naming the path and the
// system's reason; the previous file under `path` is untouched.
//
// POSIX only (open/write/fsync/rename), like the rest of npft's host code. A write that exceeds RLIMIT_FSIZE raises
// SIGXFSZ, which kills the process unless the program ignores that signal (then it is an npft::Error like ENOSPC).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <system_error>
#include <utility>

#include "../core/error.hpp"

namespace npft::io {

namespace detail {
inline std::string errno_text(int error) { return std::error_code(error, std::generic_category()).message(); }

// A per-process tag that differs between calls and between processes forked from one parent (the pid differs).
inline std::string temporary_suffix() {
    static std::atomic<std::uint64_t> counter{0};
    const std::uint64_t n = counter.fetch_add(1, std::memory_order_relaxed);
    const auto clock = static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
    std::uint64_t mix = clock ^ (n * 0x9E3779B97F4A7C15ull) ^ (static_cast<std::uint64_t>(::getpid()) << 32);
    mix ^= mix >> 31;
    mix *= 0xBF58476D1CE4E5B9ull;
    mix ^= mix >> 29;
    return ".tmp." + std::to_string(::getpid()) + '.' + std::to_string(n) + '.' + std::to_string(mix & 0xFFFFFFu);
}
}  // namespace detail

/// One durable write of one file (see the file comment). Not copyable; destroying it without commit() removes the
/// temporary and leaves `path` as it was.
class AtomicFile {
public:
    explicit AtomicFile(std::filesystem::path path) : path_(std::move(path)) {
        require(!path_.empty(), "cannot write a file with an empty path");
        for (int attempt = 0; attempt < 16 && fd_ < 0; ++attempt) {
            temporary_ = path_;
            temporary_ += detail::temporary_suffix();
            fd_ = ::open(temporary_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
            if (fd_ < 0 && errno != EEXIST) break;
        }
        if (fd_ < 0) {
            const int error = errno;
            fail("cannot write '", path_.string(), "': cannot open the temporary file '", temporary_.string(), "': ",
                 detail::errno_text(error));
        }
    }
    AtomicFile(const AtomicFile&) = delete;
    AtomicFile& operator=(const AtomicFile&) = delete;

    ~AtomicFile() { discard(); }

    /// Appends `bytes` bytes. Throws (and discards the temporary) on any error, e.g. a full disk.
    void write(const void* data, std::size_t bytes) {
        require(fd_ >= 0, "writing '", path_.string(), "': the file was already committed or discarded");
        const auto* p = static_cast<const char*>(data);
        while (bytes > 0) {
            const ::ssize_t n = ::write(fd_, p, bytes);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) failed("writing ", bytes, " more bytes", n < 0 ? errno : ENOSPC);
            p += n;
            bytes -= static_cast<std::size_t>(n);
        }
    }
    void write(std::span<const std::byte> bytes) { write(bytes.data(), bytes.size()); }

    /// Makes the file durable and publishes it under `path` (see the file comment). Throws on any failure; `path` then
    /// still holds the previous file.
    void commit() {
        require(fd_ >= 0, "writing '", path_.string(), "': the file was already committed or discarded");
        if (::fsync(fd_) != 0) failed("flushing it to disk (fsync)", errno);
        const int fd = std::exchange(fd_, -1);
        if (::close(fd) != 0) {
            const int error = errno;
            fd_ = -2;  // closed: discard() must only unlink
            failed("closing it", error);
        }
        if (std::rename(temporary_.c_str(), path_.c_str()) != 0) {
            const int error = errno;
            fd_ = -2;
            failed("renaming the temporary '" + temporary_.string() + "' over it", error);
        }
        fd_ = -3;  // published: nothing left to discard
        sync_folder();
    }

private:
    std::filesystem::path path_;
    std::filesystem::path temporary_;
    int fd_ = -1;  // >= 0 open; -2 closed but not renamed; -3 renamed (or discarded)

    void discard() noexcept {
        if (fd_ >= 0) ::close(fd_);
        if (fd_ >= 0 || fd_ == -2) ::unlink(temporary_.c_str());
        fd_ = -3;
    }

    template <class What>
    [[noreturn]] void failed(const What& what, int error) {
        discard();
        fail("cannot write '", path_.string(), "': ", what, " failed: ", detail::errno_text(error),
             " (the previous file, if any, is unchanged)");
    }
    [[noreturn]] void failed(const char* what, std::size_t bytes, const char* more, int error) {
        discard();
        fail("cannot write '", path_.string(), "': ", what, ' ', bytes, more, " failed: ", detail::errno_text(error),
             " (disk full or I/O error; the previous file, if any, is unchanged)");
    }

    // The rename is durable only once the folder's entry is on disk. Some file systems cannot fsync a folder (EINVAL):
    // there the rename is as durable as that file system makes it.
    void sync_folder() {
        std::filesystem::path folder = path_.parent_path();
        if (folder.empty()) folder = ".";
        const int fd = ::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0) fail("wrote '", path_.string(), "' but cannot open its folder to sync it: ", detail::errno_text(errno));
        const int result = ::fsync(fd);
        const int error = errno;
        ::close(fd);
        if (result != 0 && error != EINVAL && error != EROFS)
            fail("wrote '", path_.string(), "' but syncing its folder failed: ", detail::errno_text(error));
    }
};

/// Writes `bytes` to `path` durably and atomically (AtomicFile in one call).
inline void write_file_atomically(const std::filesystem::path& path, std::span<const std::byte> bytes) {
    AtomicFile file(path);
    file.write(bytes);
    file.commit();
}

}  // namespace npft::io
