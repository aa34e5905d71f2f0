#pragma once
// Small text helpers the study programs share: comma lists on the command line, durations in progress lines, and
// writing a generated page or data file.
#include <cstddef>
#include <cstdio>
#include <filesystem>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include <npft/io/atomic_file.hpp>

namespace study {

/// Writes `text` to `path` atomically (a reader never sees half a page), creating its folder.
inline void write_text(const std::filesystem::path& path, const std::string& text) {
    std::filesystem::create_directories(path.parent_path().empty() ? std::filesystem::path(".") : path.parent_path());
    npft::io::write_file_atomically(path, std::as_bytes(std::span<const char>(text.data(), text.size())));
}

/// "a,b,,c" -> {"a", "b", "c"} (empty items dropped).
inline std::vector<std::string> split_list(const std::string& text) {
    std::vector<std::string> out;
    std::stringstream in(text);
    for (std::string item; std::getline(in, item, ',');)
        if (!item.empty()) out.push_back(item);
    return out;
}

/// Seconds as "1h02m03s", rounded to the nearest second.
inline std::string duration(double seconds) {
    char b[32];
    const auto s = static_cast<long long>(seconds + 0.5);
    std::snprintf(b, sizeof b, "%lldh%02lldm%02llds", s / 3600, s / 60 % 60, s % 60);
    return b;
}

}  // namespace study
