// Peak memory of loading a Hugging Face checkpoint into the fp32 model (docs/io.md quotes it for a TinyLlama-1.1B-shaped
// checkpoint): prints the parameter count, the fp32 weights' bytes, the largest tensor's fp32 bytes, the load time and
// the process's peak resident set (VmHWM) with its anonymous and file-backed parts at the end (VmRSS breakdown).
//
//   hf_load_memory DIR      (scripts/hf_load_memory.sh writes a synthetic 1.1 B checkpoint to /tmp and runs this)
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>

#include "tiny_llama/hf_checkpoint.hpp"

namespace {

/// The value in kB of a /proc/self/status line ("VmHWM:   123 kB"), in GiB.
double status_gib(const std::string& key) {
    std::ifstream in("/proc/self/status");
    std::string line;
    while (std::getline(in, line))
        if (line.starts_with(key + ":")) return std::stod(line.substr(key.size() + 1)) / (1024.0 * 1024.0);
    return -1.0;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s HF_CHECKPOINT_DIR\n", argv[0]);
        return 2;
    }
    try {
        const double before = status_gib("VmHWM");
        const auto start = std::chrono::steady_clock::now();
        const tiny_llama::HfCheckpoint hf = tiny_llama::load_hf_checkpoint(argv[1], tiny_llama::HfTokenizer::skip);
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        npft::Index largest = 0;
        hf.weights.for_each([&](const std::string&, const tiny_llama::Matrix& m) { largest = std::max(largest, m.size()); });
        const double gib = 1024.0 * 1024.0 * 1024.0;
        const double weights = static_cast<double>(hf.weights.parameter_count()) * 4.0 / gib;
        std::printf("%s\n", hf.config.describe().c_str());
        std::printf("parameters %td: fp32 weights %.3f GiB, largest tensor %.3f GiB fp32\n", hf.weights.parameter_count(), weights,
                    static_cast<double>(largest) * 4.0 / gib);
        std::printf("loaded in %.1f s; peak resident (VmHWM) %.3f GiB (%.3f GiB before loading); now resident %.3f GiB "
                    "(anonymous %.3f GiB, file-backed %.3f GiB)\n",
                    seconds, status_gib("VmHWM"), before, status_gib("VmRSS"), status_gib("RssAnon"), status_gib("RssFile"));
        std::printf("peak over the fp32 weights: %.3f GiB\n", status_gib("VmHWM") - weights);
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "hf_load_memory: %s\n", e.what());
        return 1;
    }
}
