// Durable writes (io/atomic_file.hpp) as checkpoints and safetensors files use them: a full disk leaves the previous
// file intact and raises npft::Error; concurrent writers to one path always leave one complete file.
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "npft/io/atomic_file.hpp"
#include "npft/io/safetensors.hpp"
#include "npft/train/checkpoint.hpp"

namespace fs = std::filesystem;

namespace {

fs::path fresh_folder(const std::string& name) {
    const fs::path dir = fs::temp_directory_path() / ("npft_atomic_" + name + "_" + std::to_string(::getpid()));
    fs::remove_all(dir);
    fs::create_directories(dir);
    return dir;
}

std::vector<char> file_bytes(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::size_t entries_in(const fs::path& dir) {
    return static_cast<std::size_t>(std::distance(fs::directory_iterator(dir), fs::directory_iterator()));
}

// A checkpoint whose content identifies its writer: `count` floats all equal to `tag`, then the tag as metadata.
npft::train::CheckpointWriter tagged_checkpoint(float tag, std::size_t count) {
    npft::train::CheckpointWriter w;
    w.floats("values", std::vector<float>(count, tag));
    w.unsigned_integer("tag", static_cast<std::uint64_t>(tag));
    return w;
}

// Loads a tagged checkpoint and returns its tag; throws if the file is incomplete or mixes two writers.
float load_tag(const fs::path& path) {
    const npft::train::CheckpointReader r(path.string());
    const std::vector<float> values = r.floats("values");
    REQUIRE(!values.empty());
    REQUIRE(std::all_of(values.begin(), values.end(), [&](float v) { return v == values.front(); }));
    REQUIRE(r.unsigned_integer("tag") == static_cast<std::uint64_t>(values.front()));
    return values.front();
}

// Runs `child` in a forked process and returns its exit status (the child must call _exit itself).
template <class Child>
int run_in_child(Child&& child) {
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        child();
        ::_exit(99);
    }
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    REQUIRE(WIFEXITED(status));
    return WEXITSTATUS(status);
}

// In a child limited to `limit` bytes per file (SIGXFSZ ignored, so the write fails with EFBIG): `save` must throw an
// npft::Error naming `path`. Exit codes: 0 threw as expected, 1 did not throw, 2 wrong message, 3 other exception.
template <class Save>
int save_with_file_size_limit(const fs::path& path, rlim_t limit, Save&& save) {
    return run_in_child([&] {
        std::signal(SIGXFSZ, SIG_IGN);
        rlimit lim{};
        ::getrlimit(RLIMIT_FSIZE, &lim);
        lim.rlim_cur = limit;
        if (::setrlimit(RLIMIT_FSIZE, &lim) != 0) ::_exit(4);
        try {
            save();
        } catch (const npft::Error& e) {
            ::_exit(std::string(e.what()).find(path.string()) != std::string::npos ? 0 : 2);
        } catch (...) {
            ::_exit(3);
        }
        ::_exit(1);
    });
}

}  // namespace

TEST_CASE("AtomicFile publishes the bytes on commit and leaves no temporary", "[io][atomic]") {
    const fs::path dir = fresh_folder("commit");
    const fs::path path = dir / "file.bin";
    const std::string text = "first version";
    npft::io::write_file_atomically(path, std::as_bytes(std::span(text)));
    CHECK(file_bytes(path) == std::vector<char>(text.begin(), text.end()));
    {
        npft::io::AtomicFile file(path);
        file.write("second", 6);
        CHECK(entries_in(dir) == 2);  // the target and the temporary
        // destroyed without commit: the target keeps the first version
    }
    CHECK(file_bytes(path) == std::vector<char>(text.begin(), text.end()));
    CHECK(entries_in(dir) == 1);
    fs::remove_all(dir);
}

TEST_CASE("AtomicFile names the path and the reason when the folder does not exist", "[io][atomic]") {
    const fs::path path = fs::temp_directory_path() / "npft_no_such_folder_xyz" / "file.bin";
    try {
        npft::io::AtomicFile file(path);
        FAIL("opening a file in a missing folder did not throw");
    } catch (const npft::Error& e) {
        const std::string what = e.what();
        CHECK(what.find(path.string()) != std::string::npos);
        CHECK(what.find("No such file or directory") != std::string::npos);
    }
}

TEST_CASE("a checkpoint save that hits a full disk throws and keeps the previous checkpoint", "[io][atomic][checkpoint]") {
    const fs::path dir = fresh_folder("full_checkpoint");
    const fs::path path = dir / "run.ckpt";
    tagged_checkpoint(1.0f, 1000).save(path.string());
    const std::vector<char> before = file_bytes(path);
    REQUIRE(before.size() > 4000);

    // The limit lets the small previous checkpoint fit but not the new 4 MB one.
    const int status = save_with_file_size_limit(path, 64 * 1024, [&] { tagged_checkpoint(2.0f, 1u << 20).save(path.string()); });
    CHECK(status == 0);
    CHECK(file_bytes(path) == before);
    CHECK(load_tag(path) == 1.0f);
    CHECK(entries_in(dir) == 1);  // the temporary was removed
    fs::remove_all(dir);
}

TEST_CASE("a safetensors save that hits a full disk throws and keeps the previous file", "[io][atomic][safetensors]") {
    const fs::path dir = fresh_folder("full_safetensors");
    const fs::path path = dir / "model.safetensors";
    npft::io::SafetensorsWriter small;
    small.add("w", std::vector<float>{1.0f, 2.0f, 3.0f}, {3});
    small.save(path);
    const std::vector<char> before = file_bytes(path);

    npft::io::SafetensorsWriter big;
    big.add("w", std::vector<float>(1u << 20, 5.0f), {1 << 20});
    const int status = save_with_file_size_limit(path, 64 * 1024, [&] { big.save(path); });
    CHECK(status == 0);
    CHECK(file_bytes(path) == before);
    CHECK(npft::io::SafetensorsFile::load(path).read<float>("w") == std::vector<float>{1.0f, 2.0f, 3.0f});
    CHECK(entries_in(dir) == 1);
    fs::remove_all(dir);
}

TEST_CASE("a checkpoint save fails cleanly on a really full file system (NPFT_TEST_FULL_DISK_DIR)", "[io][atomic][checkpoint]") {
    // Set NPFT_TEST_FULL_DISK_DIR to an empty folder on a small file system (e.g. `mount -t tmpfs -o size=1m tmpfs d`).
    const char* folder = std::getenv("NPFT_TEST_FULL_DISK_DIR");
    if (folder == nullptr) {
        WARN("NPFT_TEST_FULL_DISK_DIR not set: the real full-disk case is skipped (the RLIMIT_FSIZE cases still run)");
        return;
    }
    const fs::path path = fs::path(folder) / "run.ckpt";
    tagged_checkpoint(3.0f, 1000).save(path.string());
    const std::vector<char> before = file_bytes(path);
    const fs::space_info space = fs::space(folder);
    const auto too_many = static_cast<std::size_t>(space.available / sizeof(float) + (1u << 16));
    try {
        tagged_checkpoint(4.0f, too_many).save(path.string());
        FAIL("saving more than the free space did not throw");
    } catch (const npft::Error& e) {
        CHECK(std::string(e.what()).find(path.string()) != std::string::npos);
    }
    CHECK(file_bytes(path) == before);
    CHECK(load_tag(path) == 3.0f);
    CHECK(entries_in(folder) == 1);
    fs::remove(path);
}

TEST_CASE("two processes saving checkpoints to one path always leave one complete file", "[io][atomic][checkpoint]") {
    const fs::path dir = fresh_folder("concurrent");
    const fs::path path = dir / "run.ckpt";
    constexpr int trials = 40;
    constexpr int saves_per_writer = 5;
    for (int trial = 0; trial < trials; ++trial) {
        pid_t writers[2];
        for (int w = 0; w < 2; ++w) {
            writers[w] = ::fork();
            REQUIRE(writers[w] >= 0);
            if (writers[w] == 0) {
                int code = 0;
                try {
                    const auto checkpoint = tagged_checkpoint(static_cast<float>(10 + w), 1u << 18);  // 1 MB each
                    for (int s = 0; s < saves_per_writer; ++s) checkpoint.save(path.string());
                } catch (...) {
                    code = 1;
                }
                ::_exit(code);
            }
        }
        // Meanwhile the parent reads whatever is there: never a partial file.
        for (int i = 0; i < 20; ++i) {
            if (!fs::exists(path)) continue;
            const float tag = load_tag(path);
            CHECK((tag == 10.0f || tag == 11.0f));
        }
        for (const pid_t pid : writers) {
            int status = 0;
            REQUIRE(::waitpid(pid, &status, 0) == pid);
            REQUIRE(WIFEXITED(status));
            CHECK(WEXITSTATUS(status) == 0);
        }
        const float tag = load_tag(path);
        CHECK((tag == 10.0f || tag == 11.0f));
        REQUIRE(entries_in(dir) == 1);  // no temporary left behind
        if (trial + 1 < trials) fs::remove(path);
    }
    fs::remove_all(dir);
}
