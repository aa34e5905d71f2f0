#pragma once
// What a Pipeline checkpoint holds (a safetensors file, see checkpoint.hpp for the container's guarantees):
//   metadata  npft.format = "npft.pipeline/2", npft.options (the options fingerprint), npft.step, npft.draw,
//             npft.noise_scale (float bits), npft.tensors (managed tensor names, comma-separated, model order),
//             and `<prefix>.steps` of every optimizer state
//   tensors   <name>.clean [rows, cols] F32, <name>.outliers [k] I64 (flat positions), <name>.noise [k or 0] F32,
//             <name>.quant_steps [rows, cols] F32 (when the selector or noise reads steps), then the PEFT policy's own:
//             <name>.lora_a, <name>.lora_b and their <...>.optimizer.<i> moments (LoRA), or <name>.trainable [n] I64 and
//             <name>.trainable.optimizer.<i> (masked weights)
// The options fingerprint lists every option that changes the training's numbers; resuming with another value of any
// of them is refused, naming the option and both values.
#include <bit>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "../core/eigen.hpp"
#include "../core/error.hpp"
#include "checkpoint.hpp"
#include "perturbation.hpp"
#include "pipeline_options.hpp"

namespace npft::train {

inline constexpr const char* pipeline_checkpoint_format = "npft.pipeline/2";

/// (option, value) pairs of every option the training's numbers depend on, in a fixed order.
inline std::vector<std::pair<std::string, std::string>> options_fingerprint(const PipelineOptions& o) {
    const auto bits = [](float f) { return std::to_string(std::bit_cast<std::uint32_t>(f)); };
    std::vector<std::pair<std::string, std::string>> out{
        {"stages", std::to_string(o.stages)},
        {"steps_per_stage", std::to_string(o.steps_per_stage)},
        {"seed", std::to_string(o.seed)},
        {"learning_rate(bits)", bits(o.learning_rate)},
        {"warmup_fraction(bits)", bits(o.warmup_fraction)},
        {"perturbed", o.perturbed.describe()},
        {"perturb_vectors", o.perturb_vectors ? "1" : "0"},
        {"adapted", o.adapted.describe()},
        {"refresh_selection", o.refresh_selection ? "1" : "0"},
        {"adapter_across_stages", continues_adapter(o) ? "continue_training" : "restart"},
    };
    std::string stage_rates;
    for (const float lr : o.stage_learning_rates) {
        if (!stage_rates.empty()) stage_rates += ',';
        stage_rates += bits(lr);
    }
    out.emplace_back("stage_learning_rates(bits)", stage_rates);
    if (uses_lora(o)) {
        const auto& l = std::get<LoraOptions>(o.peft);
        std::string lora = "lora rank ";  // appended piece by piece: GCC 12 warns falsely (-Wrestrict) on "literal" + temporary
        lora += std::to_string(l.rank);
        lora += ", alpha(bits) ";
        lora += bits(l.alpha);
        lora += ", dropout(bits) ";
        lora += bits(l.dropout);
        out.emplace_back("peft", lora);
    } else {
        std::string masks = "masked weights";
        for (const auto& [name, mask] : std::get<MaskedWeights>(o.peft).masks)
            masks.append("; ").append(name).append(" (").append(std::to_string(mask.count())).append(" positions)");
        out.emplace_back("peft", masks);
    }
    return out;
}

inline std::string join_fingerprint(const std::vector<std::pair<std::string, std::string>>& fingerprint) {
    std::string s;
    for (const auto& [key, value] : fingerprint) s += key + "=" + value + "\n";
    return s;
}

inline std::string join_names(const std::vector<std::string>& names) {
    std::string s;
    for (const auto& n : names) {
        if (!s.empty()) s += ',';
        s += n;
    }
    return s;
}

inline void write_pipeline_header(CheckpointWriter& w, const PipelineOptions& o, Index step, std::uint64_t draw,
                                  float noise_scale, const std::vector<std::string>& names) {
    w.text("npft.format", pipeline_checkpoint_format);
    w.text("npft.options", join_fingerprint(options_fingerprint(o)));
    w.integer("npft.step", step);
    w.unsigned_integer("npft.draw", draw);
    w.exact_float("npft.noise_scale", noise_scale);
    w.text("npft.tensors", join_names(names));
}

/// Checks format, options and tensor names of a checkpoint against this run; fails naming the first difference.
inline void check_pipeline_header(const CheckpointReader& r, const PipelineOptions& o, const std::vector<std::string>& names) {
    const std::string& format = r.text("npft.format");
    require(format == pipeline_checkpoint_format, "checkpoint '", r.path(), "' has format '", format, "', expected '",
            pipeline_checkpoint_format, "' (written by npft::train::Pipeline)");
    const std::string& stored = r.text("npft.options");
    if (stored != join_fingerprint(options_fingerprint(o))) {
        std::string differences;
        std::size_t begin = 0;
        for (const auto& [key, value] : options_fingerprint(o)) {
            const std::size_t end = stored.find('\n', begin);
            const std::string line = stored.substr(begin, end == std::string::npos ? std::string::npos : end - begin);
            begin = end == std::string::npos ? stored.size() : end + 1;
            if (line != key + "=" + value)
                differences.append("; checkpoint '").append(line).append("', this run '").append(key).append("=").append(value).append("'");
        }
        fail("checkpoint '", r.path(), "' was written with other options", differences);
    }
    const std::string& stored_names = r.text("npft.tensors");
    require(stored_names == join_names(names), "checkpoint '", r.path(), "' holds the tensors [", stored_names,
            "], the model's managed tensors are [", join_names(names), "]");
}

/// The clean weights and the perturbation of one tensor.
inline void write_tensor_state(CheckpointWriter& w, const std::string& name, const Matrix& clean, const Perturbation& p) {
    w.matrix(name + ".clean", clean);
    w.indices(name + ".outliers", p.selection.positions);
    w.floats(name + ".noise", p.noise);
    if (p.quant_steps.size() > 0) w.matrix(name + ".quant_steps", p.quant_steps);
}

inline void read_tensor_state(const CheckpointReader& r, const std::string& name, Matrix& clean, Perturbation& p) {
    const Index rows = clean.rows(), cols = clean.cols();
    r.matrix_into(name + ".clean", rows, cols, clean);
    try {
        p.selection = outliers::OutlierMask(rows, cols, r.indices(name + ".outliers"));
    } catch (const Error& e) {
        fail("checkpoint '", r.path(), "': outliers of '", name, "': ", e.what());
    }
    p.noise = r.floats(name + ".noise");
    require(p.noise.empty() || p.noise.size() == p.selection.positions.size(), "checkpoint '", r.path(), "': '", name,
            "' has ", p.noise.size(), " noise values for ", p.selection.positions.size(), " outliers");
    p.saved.clear();
    if (r.contains(name + ".quant_steps")) {
        r.matrix_into(name + ".quant_steps", rows, cols, p.quant_steps);
    } else {
        p.quant_steps = Matrix();
    }
}

}  // namespace npft::train
