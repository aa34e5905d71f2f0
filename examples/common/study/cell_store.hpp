#pragma once
// A study's resumable memory: every grid cell (model, arm, bits, grid, seed...) is computed once and kept as one small
// JSON file, written atomically, so a grid of hours can be stopped at any point (Ctrl-C, a full disk, the end of a
// sitting) and resumed without redoing a finished cell or trusting a half-written one.
//
//   study::CellStore store(out_dir / "cells", fingerprint);   // fingerprint: everything that makes results comparable
//   const auto result = store.get_or_run(key, [&] { return run_cell(...); });
//
// A cell written under another fingerprint (another checkpoint, recipe or program version) is never reused: it is
// reported and recomputed, so a changed recipe cannot mix old and new numbers in one table.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <span>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <npft/core/error.hpp>
#include <npft/io/atomic_file.hpp>
#include <npft/io/json.hpp>

namespace study {

/// One cell's identity: ordered (field, value) pairs such as {"arm", "npft_reference"}, {"bits", "3"}, {"seed", "2"}.
struct CellKey {
    std::vector<std::pair<std::string, std::string>> fields;

    /// The value of `field`; an npft::Error when the key has no such field.
    const std::string& at(const std::string& field) const {
        for (const auto& [f, v] : fields)
            if (f == field) return v;
        npft::fail("cell key ", describe(), " has no field '", field, "'");
    }

    /// "arm=rtn bits=3 seed=2": for logs.
    std::string describe() const {
        std::string out;
        for (const auto& [f, v] : fields) out += (out.empty() ? "" : " ") + f + "=" + v;
        return out;
    }

    /// A file name that is a pure function of the key: "arm-rtn_bits-3_seed-2.json". Fields and values may use letters,
    /// digits, '.', '+' and '-' only, so that two keys can never map to one file.
    std::string file_name() const {
        npft::require(!fields.empty(), "a cell key needs at least one field");
        std::string out;
        for (const auto& [f, v] : fields) {
            check_token(f);
            check_token(v);
            out += (out.empty() ? "" : "_") + f + "-" + v;
        }
        return out + ".json";
    }

    bool operator==(const CellKey&) const = default;

private:
    static void check_token(const std::string& s) {
        npft::require(!s.empty(), "cell key fields and values must not be empty");
        for (const char c : s)
            npft::require((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                              c == '+' || c == '-',
                          "cell key token '", s, "' may hold only letters, digits, '.', '+' and '-'");
    }
};

/// A cell's measured figures by name (test_ppl, gap, bits_per_byte, seconds...). NaN is kept (written as null).
using CellResult = std::map<std::string, double>;

class CellStore {
public:
    CellStore(std::filesystem::path dir, std::string fingerprint) : dir_(std::move(dir)), fingerprint_(std::move(fingerprint)) {
        std::filesystem::create_directories(dir_);
    }

    const std::filesystem::path& dir() const { return dir_; }

    /// The stored result of `key` under this store's fingerprint; nullopt when there is none (or it was made under
    /// another fingerprint). A file that does not parse is an npft::Error naming it: it was not written by this store.
    std::optional<CellResult> find(const CellKey& key) const {
        const std::filesystem::path path = dir_ / key.file_name();
        if (!std::filesystem::exists(path)) return std::nullopt;
        const auto [fingerprint, stored_key, result] = read(path);
        if (fingerprint != fingerprint_) return std::nullopt;
        npft::require(stored_key == key, "cell file ", path.string(), " holds the key '", stored_key.describe(),
                      "', expected '", key.describe(), "'");
        return result;
    }

    /// Writes `result` for `key`, atomically and durably (the previous file, if any, stays whole until the new one is).
    void save(const CellKey& key, const CellResult& result) const {
        std::string text = "{\n  \"fingerprint\": " + npft::io::json::quote(fingerprint_) + ",\n  \"key\": {";
        for (std::size_t i = 0; i < key.fields.size(); ++i)
            text += (i ? ", " : "") + npft::io::json::quote(key.fields[i].first) + ": " +
                    npft::io::json::quote(key.fields[i].second);
        text += "},\n  \"result\": {";
        bool first = true;
        for (const auto& [name, value] : result) {
            text += (first ? "\n    " : ",\n    ") + npft::io::json::quote(name) + ": " + number_text(value);
            first = false;
        }
        text += "\n  }\n}\n";
        npft::io::write_file_atomically(dir_ / key.file_name(),
                                        std::as_bytes(std::span<const char>(text.data(), text.size())));
    }

    /// The stored result, or run() computed, saved and returned. Says on stderr which it was.
    template <class Run>
    CellResult get_or_run(const CellKey& key, Run&& run) {
        if (auto stored = find(key)) {
            ++reused_;
            return *stored;
        }
        CellResult result = run();
        save(key, result);
        ++computed_;
        return result;
    }

    /// Every cell in the folder made under this fingerprint, in file-name order.
    std::vector<std::pair<CellKey, CellResult>> all() const {
        std::vector<std::filesystem::path> paths;
        for (const auto& entry : std::filesystem::directory_iterator(dir_))
            if (entry.is_regular_file() && entry.path().extension() == ".json") paths.push_back(entry.path());
        std::sort(paths.begin(), paths.end());
        std::vector<std::pair<CellKey, CellResult>> out;
        for (const auto& path : paths) {
            auto [fingerprint, key, result] = read(path);
            if (fingerprint == fingerprint_) out.emplace_back(std::move(key), std::move(result));
        }
        return out;
    }

    int reused() const { return reused_; }
    int computed() const { return computed_; }

private:
    struct Stored {
        std::string fingerprint;
        CellKey key;
        CellResult result;
    };

    static std::string number_text(double v) {
        if (!std::isfinite(v)) return "null";  // JSON has no NaN or infinity
        char buffer[32];
        const int n = std::snprintf(buffer, sizeof buffer, "%.17g", v);  // round-trips a double exactly
        return std::string(buffer, static_cast<std::size_t>(n));
    }

    static Stored read(const std::filesystem::path& path) {
        std::ifstream in(path, std::ios::binary);
        npft::require(static_cast<bool>(in), "cannot open cell file ", path.string());
        std::stringstream buffer;
        buffer << in.rdbuf();
        npft::io::json::Value doc;
        try {
            doc = npft::io::json::parse(buffer.str());
        } catch (const npft::Error& e) {
            npft::fail("cell file ", path.string(), " is not valid JSON: ", e.what());
        }
        const auto member = [&](const npft::io::json::Value& object, const char* name) -> const npft::io::json::Value& {
            npft::require(object.is_object(), "cell file ", path.string(), ": expected an object");
            for (const auto& m : object.members)
                if (m.key == name) return m.value;
            npft::fail("cell file ", path.string(), " has no '", name, "'");
        };
        Stored out;
        const auto& fingerprint = member(doc, "fingerprint");
        npft::require(fingerprint.is_string(), "cell file ", path.string(), ": 'fingerprint' must be a string");
        out.fingerprint = fingerprint.text;
        const auto& key = member(doc, "key");
        npft::require(key.is_object(), "cell file ", path.string(), ": 'key' must be an object");
        for (const auto& m : key.members) {
            npft::require(m.value.is_string(), "cell file ", path.string(), ": key field '", m.key, "' must be a string");
            out.key.fields.emplace_back(m.key, m.value.text);
        }
        const auto& result = member(doc, "result");
        npft::require(result.is_object(), "cell file ", path.string(), ": 'result' must be an object");
        for (const auto& m : result.members) {
            double v = std::nan("");
            if (m.value.is_number()) {
                const auto [end, error] = std::from_chars(m.value.text.data(), m.value.text.data() + m.value.text.size(), v);
                npft::require(error == std::errc() && end == m.value.text.data() + m.value.text.size(), "cell file ",
                              path.string(), ": '", m.key, "' is not a number it can read: ", m.value.text);
            } else {
                npft::require(m.value.kind == npft::io::json::Value::Kind::null, "cell file ", path.string(), ": '",
                              m.key, "' must be a number or null");
            }
            out.result.emplace(m.key, v);
        }
        return out;
    }

    std::filesystem::path dir_;
    std::string fingerprint_;
    int reused_ = 0, computed_ = 0;
};

}  // namespace study
