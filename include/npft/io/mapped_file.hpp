#pragma once
// A whole file mapped read-only into memory (POSIX mmap), so that model files of many gigabytes are read tensor by
// tensor from the page cache instead of being copied into a second buffer first. Move-only; unmapped on destruction.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <utility>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "../core/error.hpp"

namespace npft::io {

class MappedFile {
public:
    MappedFile() = default;

    /// Maps `path`; throws naming the file when it is missing, a directory, or cannot be opened or mapped.
    /// `what` names the kind of file in messages ("safetensors", "GGUF").
    explicit MappedFile(const std::filesystem::path& path, const char* what = "file") {
        const std::string name = path.string();
        const int fd = ::open(name.c_str(), O_RDONLY | O_CLOEXEC);
        require(fd >= 0, what, " file '", name, "' cannot be opened: ", std::strerror(errno));
        struct stat st {};
        if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
            ::close(fd);
            fail(what, " file '", name, "' is not a regular file");
        }
        size_ = static_cast<std::size_t>(st.st_size);
        if (size_ > 0) {
            void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
            const int error = errno;
            ::close(fd);
            require(p != MAP_FAILED, what, " file '", name, "' cannot be mapped: ", std::strerror(error));
            data_ = static_cast<const std::byte*>(p);
        } else {
            ::close(fd);
        }
    }

    MappedFile(MappedFile&& other) noexcept
        : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}
    MappedFile& operator=(MappedFile&& other) noexcept {
        if (this != &other) {
            unmap();
            data_ = std::exchange(other.data_, nullptr);
            size_ = std::exchange(other.size_, 0);
        }
        return *this;
    }
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;
    ~MappedFile() { unmap(); }

    std::span<const std::byte> bytes() const { return {data_, size_}; }
    std::size_t size() const { return size_; }

    /// Tells the kernel this process is done with `range` (a part of bytes()) for now: the whole pages inside it leave
    /// the process's resident set (they stay in the page cache, and reading them again maps them again). A loader that
    /// converts tensor by tensor calls it after each one, so that the file's pages do not add up to a second copy of
    /// the model in its resident set. Advisory: nothing changes if the kernel declines.
    void release(std::span<const std::byte> range) const {
        if (data_ == nullptr || range.empty()) return;
        require(range.data() >= data_ && range.data() + range.size() <= data_ + size_, "MappedFile::release: the range is not in the file");
        const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
        const auto begin = (reinterpret_cast<std::uintptr_t>(range.data()) + page - 1) / page * page;
        const auto end = (reinterpret_cast<std::uintptr_t>(range.data()) + range.size()) / page * page;
        if (begin < end) ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
    }

private:
    void unmap() {
        if (data_ != nullptr) ::munmap(const_cast<std::byte*>(data_), size_);
        data_ = nullptr;
        size_ = 0;
    }

    const std::byte* data_ = nullptr;
    std::size_t size_ = 0;
};

}  // namespace npft::io
