#pragma once
// Model weights as a safetensors file: one F32 (or BF16, for a checkpoint that ships in the repository) tensor per
// weight under its parameter name ("layers.0.attn.q", ...; norm gains as [1, dim]), the config in the metadata, plus a
// caller-chosen key (e.g. a hash of config, seed and data) that tells a cached checkpoint from a stale one.
#include <algorithm>
#include <filesystem>
#include <charconv>
#include <system_error>
#include <optional>
#include <string>
#include <vector>

#include <npft/io/safetensors.hpp>

#include "config.hpp"
#include "weights.hpp"

namespace tiny_llama {

enum class WeightStorage { f32, bf16 };

/// Writes `weights` to `path` atomically. bf16 halves the file (what a shipped checkpoint uses); the loader converts
/// back to fp32, so a bf16 checkpoint is the fp32 model rounded to bf16, which is then the model every figure is of.
inline void save_weights(const std::filesystem::path& path, const Config& config, const Weights& weights,
                         const std::string& key, WeightStorage storage = WeightStorage::f32) {
    npft::io::SafetensorsWriter writer;
    writer.add_metadata("format", "tiny_llama");
    writer.add_metadata("config", config.describe());
    writer.add_metadata("key", key);
    weights.for_each([&](const std::string& name, const Matrix& m) {
        if (storage == WeightStorage::f32) return writer.add(name, m);
        std::vector<npft::bfloat16> rounded;
        rounded.reserve(static_cast<std::size_t>(m.size()));
        for (Index r = 0; r < m.rows(); ++r)
            for (Index c = 0; c < m.cols(); ++c) rounded.emplace_back(m(r, c));
        writer.add(name, rounded, {m.rows(), m.cols()});
    });
    // Written under a temporary name and renamed, so an interrupted run never leaves a half-written checkpoint.
    const std::filesystem::path partial = path.string() + ".partial";
    writer.save(partial);
    std::filesystem::rename(partial, path);
}

/// The model config a checkpoint was written for (the inverse of Config::describe); an npft::Error naming the file and
/// the field for a malformed description.
inline Config stored_config(const std::filesystem::path& path) {
    const auto file = npft::io::SafetensorsFile::load(path);
    npft::require(file.metadata().contains("config"), "checkpoint '", path.string(), "' has no model config in its metadata");
    const std::string text = file.metadata("config");
    Config c;
    std::size_t at = 0;
    while (at < text.size()) {
        const std::size_t end = std::min(text.find(' ', at), text.size());
        const std::string field = text.substr(at, end - at);
        at = end + 1;
        const std::size_t eq = field.find('=');
        npft::require(eq != std::string::npos && eq > 0 && eq + 1 < field.size(), "checkpoint '", path.string(),
                      "': malformed config field '", field, "' in '", text, "'");
        const std::string key = field.substr(0, eq), value = field.substr(eq + 1);
        const auto number = [&](auto& out) {
            const auto [ptr, error] = std::from_chars(value.data(), value.data() + value.size(), out);
            npft::require(error == std::errc() && ptr == value.data() + value.size(), "checkpoint '", path.string(),
                          "': config field '", field, "' is not a number");
        };
        if (key == "vocab") number(c.vocab);
        else if (key == "layers") number(c.layers);
        else if (key == "dim") number(c.dim);
        else if (key == "heads") number(c.heads);
        else if (key == "kv_heads") number(c.kv_heads);
        else if (key == "hidden") number(c.hidden);
        else if (key == "context") number(c.context);
        else if (key == "rope_theta") number(c.rope_theta);
        else if (key == "norm_eps") number(c.norm_eps);
        else npft::fail("checkpoint '", path.string(), "': unknown config field '", key, "' in '", text, "'");
    }
    c.validate();
    npft::require(c.describe() == text, "checkpoint '", path.string(), "': config '", text, "' does not round-trip (read as '",
                  c.describe(), "')");
    return c;
}

/// The weights in `path` for `config`; throws (naming the file and the problem) on a corrupt file, another config, or
/// a missing or misshapen tensor. F32, F16 and BF16 tensors are read (as fp32).
inline Weights load_weights(const std::filesystem::path& path, const Config& config) {
    const auto file = npft::io::SafetensorsFile::load(path);
    npft::require(file.metadata("config") == config.describe(), "checkpoint '", path.string(), "' is for the model '",
                  file.metadata("config"), "', expected '", config.describe(), "'");
    Weights w = Weights::zeros(config);
    w.for_each([&](const std::string& name, Matrix& m) {
        Matrix stored = file.read_matrix(name);
        npft::require(stored.rows() == m.rows() && stored.cols() == m.cols(), "checkpoint '", path.string(), "': tensor '",
                      name, "' is ", stored.rows(), "x", stored.cols(), ", expected ", m.rows(), "x", m.cols());
        m = std::move(stored);
    });
    return w;
}

/// The weights of a cached checkpoint when it exists and carries `key`; nothing when it is absent, stale or unreadable
/// (a cache is never worth failing a run for).
inline std::optional<Weights> load_cached_weights(const std::filesystem::path& path, const Config& config,
                                                  const std::string& key) {
    if (!std::filesystem::exists(path)) return std::nullopt;
    try {
        const auto file = npft::io::SafetensorsFile::load(path);
        if (!file.metadata().contains("key") || file.metadata("key") != key) return std::nullopt;
        return load_weights(path, config);
    } catch (const npft::Error&) {
        return std::nullopt;
    }
}

}  // namespace tiny_llama
