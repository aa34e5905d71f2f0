#pragma once
// Model weights as a safetensors file: one F32 (or BF16, for a checkpoint that ships in the repository) tensor per
// weight under its parameter name ("layers.0.attn.q", ...; norm gains as [1, dim]), the config in the metadata, plus a
// caller-chosen key (e.g. a hash of config, seed and data) that tells a cached checkpoint from a stale one.
#include <filesystem>
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
