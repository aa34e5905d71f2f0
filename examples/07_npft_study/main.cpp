// The NPFT study: every arm (RTN, GPTQ, dense-and-sparse, the noise-free LoRA control, NPFT and its ablations) at 2, 3
// and 4 bits on three grids, over several fine-tuning seeds of several independently pre-trained models, each cell kept
// as it finishes so that a grid of hours can stop and resume. Writes results/*.json, docs study.md and the gap plots.
//
//   npft_study --model DIR --model DIR [--out DIR] [--docs DIR] [--seeds N] [--threads N] [--quick] [--dry-run]
//              [--arms a,b] [--bits 2,3] [--grids g0,lut] [--ablations-on-every-grid] [--steps N] [--report-only]
//
// README.md says what a cell is, how the work is shared between cells, and what the budget buys.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

#include "arms.hpp"
#include "kjv_corpus.hpp"
#include "reference_dir.hpp"
#include "report.hpp"
#include "study/cell_store.hpp"
#include "study/text.hpp"
#include "tiny_llama/data.hpp"

namespace npft_study {

namespace fs = std::filesystem;
using demo::Clock;
using demo::seconds_since;
using study::CellKey;
using study::duration;
using study::split_list;
using study::CellResult;

struct Settings {
    std::vector<fs::path> models;
    fs::path out = "study";
    fs::path docs;  // empty: --out
    int seeds = 5;
    int threads = 2;
    bool quick = false, dry_run = false, report_only = false, ablations_everywhere = false;
    std::set<std::string> arms;  // empty: all
    std::vector<int> bits = {2, 3, 4};
    std::vector<std::string> grids = all_grids;
    Recipe recipe;
    Index calibration_sequences = 32;  // one sequence per batch, from the train split (Fisher, GPTQ Hessians)
    Index trace_sequences = 4;         // validation windows of the outliers' Hessian trace
    Index trace_probes = 16;           // Rademacher probes per trace estimate (fixed, so before and after pair)
    Index eval_windows = 0;            // 0: the whole test split; N: N windows spread through it (--quick)

    std::string fingerprint() const {
        return "npft_study/1 " + recipe.describe() + " calibration=" + std::to_string(calibration_sequences) +
               " trace=" + std::to_string(trace_sequences) + "x" + std::to_string(trace_probes) +
               " eval=" + (eval_windows == 0 ? std::string("whole-test") : std::to_string(eval_windows) + "-windows");
    }
};

constexpr const char* usage_text =
    " --model DIR [--model DIR ...] [options]\n"
    "  --model DIR              a pre-trained model folder (reference.safetensors [+ tokenizer.model]); give 2 or more\n"
    "  --out DIR                cells/ (one JSON per cell), results/*.json, the plots' data (default ./study)\n"
    "  --docs DIR               where study.md and study_*.png go (default: --out)\n"
    "  --seeds N                fine-tuning seeds per model (default 5)\n"
    "  --threads N              threads (default 2; the results do not depend on it)\n"
    "  --arms a,b,...           only these arms (rtn gptq dense-sparse lora npft-reference npft-gptq npft-qstep\n"
    "                           npft-random npft-f0.5pct npft-f5pct npft-random-f5pct)\n"
    "  --bits 2,3,4             only these widths        --grids g0,g128,lut   only these grids\n"
    "  --ablations-on-every-grid  quantize the ablation arms on every grid (default: per-channel g0 only)\n"
    "  --steps N                fine-tuning steps per stage (default 40; 3 stages)\n"
    "  --quick                  a smoke run: the first model, 2 seeds, 3-bit, tiny budgets (figures mean nothing)\n"
    "  --dry-run                measure one of each step, print the predicted cost of what is left, and stop\n"
    "  --report-only            write the tables, statements and plots from the cells there are, run nothing\n";

Settings parse_settings(int argc, char** argv) {
    Settings s;
    demo::CommandLine cl(argc, argv, usage_text);
    while (cl.next()) {
        if (cl.is("--model")) s.models.emplace_back(cl.value());
        else if (cl.is("--out")) s.out = cl.value();
        else if (cl.is("--docs")) s.docs = cl.value();
        else if (cl.is("--seeds")) s.seeds = static_cast<int>(cl.integer());
        else if (cl.is("--threads")) s.threads = static_cast<int>(std::max<Index>(1, cl.integer()));
        else if (cl.is("--arms")) for (const auto& a : split_list(cl.value())) s.arms.insert(a);
        else if (cl.is("--bits")) {
            s.bits.clear();
            for (const auto& b : split_list(cl.value())) {
                const int bits = std::atoi(b.c_str());
                npft::require(std::to_string(bits) == b, "--bits: '", b, "' is not a whole number");
                s.bits.push_back(bits);
            }
        } else if (cl.is("--grids")) s.grids = split_list(cl.value());
        else if (cl.is("--ablations-on-every-grid")) s.ablations_everywhere = true;
        else if (cl.is("--steps")) s.recipe.npft.steps = cl.integer();
        else if (cl.is("--quick")) s.quick = true;
        else if (cl.is("--dry-run")) s.dry_run = true;
        else if (cl.is("--report-only")) s.report_only = true;
        else cl.reject();
    }
    if (s.quick) {
        if (s.models.size() > 1) s.models.resize(1);
        s.seeds = 2;
        s.bits = {3};
        s.recipe.npft.stages = 2;
        s.recipe.npft.steps = 3;
        s.recipe.npft.batch = 2;
        s.calibration_sequences = 4;
        s.trace_sequences = 1;
        s.trace_probes = 4;
        s.eval_windows = 8;
    }
    if (s.docs.empty()) s.docs = s.out;
    s.recipe.threads = s.threads;
    npft::require(!s.models.empty() || s.report_only, "give at least one --model (two or more for the study)");
    npft::require(s.seeds >= 1, "--seeds must be at least 1");
    npft::require(s.recipe.npft.steps >= 1, "--steps must be at least 1");
    std::set<std::string> known(quantization_arms.begin(), quantization_arms.end());
    known.insert(finetuning_arms.begin(), finetuning_arms.end());
    for (const auto& a : s.arms) npft::require(known.contains(a), "--arms: unknown arm '", a, "'");
    for (const int b : s.bits) npft::require(b >= 2 && b <= 8, "--bits: ", b, " is not a width from 2 to 8");
    for (const auto& g : s.grids)
        npft::require(std::find(all_grids.begin(), all_grids.end(), g) != all_grids.end(), "--grids: unknown grid '", g, "'");
    return s;
}

CellKey key(const std::string& model, const std::string& arm, const std::string& bits, const std::string& grid,
            const std::string& seed) {
    return {{{"model", model}, {"arm", arm}, {"bits", bits}, {"grid", grid}, {"seed", seed}}};
}

/// What the remaining work costs, in units measured before the run (Timings).
struct Work {
    double evals = 0, quantizations = 0, gptq = 0, fishers = 0, steps = 0, traces = 0;
    Work& operator+=(const Work& o) {
        evals += o.evals, quantizations += o.quantizations, gptq += o.gptq, fishers += o.fishers, steps += o.steps,
            traces += o.traces;
        return *this;
    }
};

struct Timings {
    double eval = 0, quantization = 0, gptq = 0, fisher = 0, step = 0, trace = 0;
    double seconds(const Work& w) const {
        return w.evals * eval + w.quantizations * quantization + w.gptq * gptq + w.fishers * fisher + w.steps * step +
               w.traces * trace;
    }
};

/// One model of the study in memory: the model, its pre-trained weights, its tokenized splits and base figures.
/// (At namespace scope: clang 14 cannot default-construct a nested class with member initializers inside its
/// enclosing class, which std::optional::emplace needs.)
struct LoadedModel {
    std::optional<tiny_llama::Model> model;
    tiny_llama::Weights base;
    std::vector<tiny_llama::Token> train, validation, test_tokens;
    std::vector<tiny_llama::Batch> test;
    double base_ppl = 0, base_bpb = 0;
};

class Study {
public:
    Study(const Settings& s) : s_(s), store_(s.out / "cells", s.fingerprint()) {}

    /// Counting pass (run = false) or the real one. Returns the work the pass found missing.
    Work pass(bool run) {
        run_ = run;
        Work total;
        for (const fs::path& dir : s_.models) {
            ReferenceDir ref = ReferenceDir::open(dir);
            total += model_pass(ref);
        }
        return total;
    }

    void set_plan(const Timings& t, const Work& w) {
        timings_ = t;
        planned_ = t.seconds(w);
    }

private:
    const Settings& s_;
    study::CellStore store_;
    bool run_ = false;
    Timings timings_;
    double planned_ = 0, done_ = 0;
    Clock::time_point start_ = Clock::now();
    int cells_ = 0;

    // ---- per-model data, loaded when the real pass first needs it
    using Loaded = LoadedModel;
    std::optional<Loaded> loaded_;
    ReferenceDir* ref_ = nullptr;

    bool wanted(const std::string& arm) const { return s_.arms.empty() || s_.arms.contains(arm); }
    std::vector<std::string> grids_of(const std::string& arm) const {
        if (!is_ablation(arm) || s_.ablations_everywhere) return s_.grids;
        std::vector<std::string> out;
        for (const auto& g : s_.grids)
            if (g == "g0") out.push_back(g);
        return out;
    }
    bool missing(const CellKey& k) const { return !store_.find(k).has_value(); }

    void progress(const CellKey& k, const CellResult& r, const Work& w) {
        done_ += timings_.seconds(w);
        ++cells_;
        const double elapsed = seconds_since(start_);
        const double eta = done_ > 0 ? elapsed / done_ * std::max(0.0, planned_ - done_) : 0.0;
        const auto gap = r.find("gap_bpb");
        std::fprintf(stderr, "[study] %3.0f%% %d cells computed, %s: %s%s  elapsed %s, eta %s\n",
                     planned_ > 0 ? 100.0 * std::min(1.0, done_ / planned_) : 100.0, cells_, k.describe().c_str(),
                     gap != r.end() ? "gap " : "", gap != r.end() ? (report::signed_text(gap->second) + " bits/byte").c_str() : "done",
                     duration(elapsed).c_str(), duration(eta).c_str());
    }

    Loaded& load(ReferenceDir& ref) {
        if (loaded_) return *loaded_;
        ref.load_tokenizer();
        static const kjv::Corpus corpus = kjv::load_kjv(s_.out / "kjv.txt");
        Loaded& l = loaded_.emplace();
        l.base = ref.load_weights();
        l.model.emplace(ref.config, l.base);
        l.model->set_threads(s_.threads);
        l.train = ref.tokenizer->encode(corpus.train);
        l.validation = ref.tokenizer->encode(corpus.validation);
        l.test_tokens = ref.tokenizer->encode(corpus.test);
        const Index length = ref.config.context + 1;
        l.test = s_.eval_windows == 0 ? tiny_llama::whole_text_batches(l.test_tokens, length, 16)
                                      : tiny_llama::evaluation_batches(l.test_tokens, length, s_.eval_windows, 16);
        const auto e = tiny_llama::evaluate(*l.model, l.test, *ref.tokenizer);
        l.base_ppl = e.perplexity();
        l.base_bpb = e.bits_per_byte();
        std::fprintf(stderr, "[study] model %s (%s, %s vocabulary): fp32 test perplexity %.4f, %.4f bits/byte on %td predictions\n",
                     ref.id.c_str(), ref.config.describe().c_str(), ref.subword() ? "SentencePiece" : "byte", l.base_ppl,
                     l.base_bpb, e.predictions);
        return l;
    }

    std::vector<tiny_llama::Batch> calibration(const Loaded& l, std::uint64_t seed) const {
        const npft::RandomKey key{seed, npft::make_stream(0x63616c)};  // "cal"
        std::vector<tiny_llama::Batch> out;
        for (Index i = 0; i < s_.calibration_sequences; ++i)
            out.push_back(tiny_llama::random_windows(l.train, 1, ref_->config.context + 1, key, static_cast<std::uint64_t>(i)));
        return out;
    }

    Fisher fisher(tiny_llama::Model& model, const std::vector<tiny_llama::Batch>& calibration) const {
        return npft::hessian::DiagonalFisher::compute(model, calibration, model.linear_names());
    }

    /// One quantized cell of the model now in l.model (whose fp32 figures are source_*).
    CellResult quantized_cell(Loaded& l, const std::string& arm, int bits, const std::string& grid, const Fisher& f,
                              const std::vector<tiny_llama::Batch>& cal, double source_ppl, double source_bpb,
                              std::optional<double> finetune_cost) {
        const auto start = Clock::now();
        tiny_llama::QuantizedModel q = quantize_model(*l.model, arm, bits, grid, f, cal);
        q.set_multiply_options({.threads = s_.threads, .activations = npft::kernels::cpu::Activations::fp32});
        const auto e = tiny_llama::evaluate(q, l.test, *ref_->tokenizer);
        CellResult r{{"test_ppl", e.perplexity()},
                     {"test_bpb", e.bits_per_byte()},
                     {"source_ppl", source_ppl},
                     {"source_bpb", source_bpb},
                     {"base_ppl", l.base_ppl},
                     {"base_bpb", l.base_bpb},
                     {"gap_bpb", e.bits_per_byte() - source_bpb},
                     {"gap_ppl_pct", 100.0 * (e.perplexity() / source_ppl - 1.0)},
                     {"vs_base_bpb", e.bits_per_byte() - l.base_bpb},
                     {"bits_per_weight", q.bits_per_weight()},
                     {"seconds", seconds_since(start)}};
        if (finetune_cost) r["finetune_cost_bpb"] = *finetune_cost;
        return r;
    }

    Work quantized_work(const std::string& arm) const {
        return uses_gptq(arm) ? Work{.evals = 1, .gptq = 1} : Work{.evals = 1, .quantizations = 1};
    }

    Work model_pass(ReferenceDir& ref) {
        loaded_.reset();
        ref_ = &ref;
        Work work;
        std::optional<Fisher> rtn_fisher;
        // rtn: once per model (its LUT's Fisher from the seed-0 calibration draw), paired with every seed later.
        if (wanted("rtn")) {
            std::vector<CellKey> todo;
            for (const int b : s_.bits)
                for (const auto& g : s_.grids)
                    if (missing(key(ref.id, "rtn", std::to_string(b), g, "any"))) todo.push_back(key(ref.id, "rtn", std::to_string(b), g, "any"));
            if (!todo.empty()) work.fishers += 1;
            for (const auto& k : todo) {
                const Work w = quantized_work("rtn");
                work += w;
                if (!run_) continue;
                Loaded& l = load(ref);
                const auto cal = calibration(l, 0);
                if (!rtn_fisher) rtn_fisher = fisher(*l.model, cal);
                const auto r = quantized_cell(l, "rtn", std::stoi(k.at("bits")), k.at("grid"), *rtn_fisher, cal, l.base_ppl,
                                              l.base_bpb, std::nullopt);
                store_.save(k, r);
                progress(k, r, w);
            }
        }
        for (int seed = 1; seed <= s_.seeds; ++seed) work += seed_pass(ref, static_cast<std::uint64_t>(seed));
        return work;
    }

    struct Unit {
        std::string arm;  // the fine-tuning arm
        std::string bits;  // "0", or the width of npft-qstep's noise
        std::vector<std::pair<std::string, CellKey>> cells;  // (quantizing arm, key) of its quantized cells
        CellKey finetune_cell;
    };

    Work seed_pass(ReferenceDir& ref, std::uint64_t seed) {
        const std::string sd = std::to_string(seed);
        Work work;
        // ---- arms on the pre-trained model
        std::vector<std::pair<std::string, CellKey>> base_cells;
        for (const auto& arm : {std::string("gptq"), std::string("dense-sparse")})
            if (wanted(arm))
                for (const int b : s_.bits)
                    for (const auto& g : s_.grids)
                        if (missing(key(ref.id, arm, std::to_string(b), g, sd))) base_cells.emplace_back(arm, key(ref.id, arm, std::to_string(b), g, sd));
        // ---- fine-tuning units
        std::vector<Unit> units;
        for (const auto& arm : finetuning_arms) {
            if (arm == "npft-gptq") continue;  // served by npft-reference's unit
            const bool with_gptq = arm == "npft-reference" && wanted("npft-gptq");
            if (!wanted(arm) && !with_gptq) continue;
            std::vector<std::string> widths = {"0"};
            if (arm == "npft-qstep") {
                widths.clear();
                for (const int b : s_.bits) widths.push_back(std::to_string(b));
            }
            for (const auto& width : widths) {
                Unit u{arm, width, {}, key(ref.id, arm, width, "fp32", sd)};
                for (const int b : s_.bits) {
                    if (width != "0" && std::to_string(b) != width) continue;
                    for (const std::string& quantizing : {arm, std::string("npft-gptq")}) {
                        if (quantizing == "npft-gptq" && !with_gptq) continue;
                        if (quantizing == arm && !wanted(arm)) continue;
                        for (const auto& g : grids_of(quantizing))
                            if (missing(key(ref.id, quantizing, std::to_string(b), g, sd)))
                                u.cells.emplace_back(quantizing, key(ref.id, quantizing, std::to_string(b), g, sd));
                    }
                }
                const bool ft_cell = wanted(arm) && missing(u.finetune_cell);
                if (!ft_cell) u.finetune_cell.fields.clear();
                if (ft_cell || !u.cells.empty()) units.push_back(std::move(u));
            }
        }
        if (base_cells.empty() && units.empty()) return work;

        // ---- count
        bool needs_base_fisher = false;
        for (const auto& [arm, k] : base_cells) {
            work += quantized_work(arm);
            needs_base_fisher = needs_base_fisher || arm == "dense-sparse" || k.at("grid") == "lut";
        }
        if (needs_base_fisher) work.fishers += 1;
        bool needs_trace_before = false;
        for (const auto& u : units) {
            work.steps += static_cast<double>(s_.recipe.npft.stages * s_.recipe.npft.steps);
            work.fishers += static_cast<double>(s_.recipe.npft.stages);  // the pipeline's selection at every stage
            if (!u.finetune_cell.fields.empty()) {
                work.evals += 1;
                work.traces += 1;
                needs_trace_before = true;
            }
            bool lut = false;
            for (const auto& [arm, k] : u.cells) {
                work += quantized_work(arm);
                lut = lut || k.at("grid") == "lut";
            }
            if (lut) work.fishers += 1;
        }
        if (needs_trace_before) work.traces += 1;
        if (!run_) return work;

        // ---- run
        Loaded& l = load(ref);
        tiny_llama::Model& model = *l.model;
        model.weights() = l.base;
        const auto cal = calibration(l, seed);
        std::optional<Fisher> base_fisher;
        for (const auto& [arm, k] : base_cells) {
            Work w = quantized_work(arm);
            if (!base_fisher && needs_base_fisher) {
                base_fisher = fisher(model, cal);
                w.fishers += 1;
            }
            const Fisher none;
            const auto r = quantized_cell(l, arm, std::stoi(k.at("bits")), k.at("grid"), base_fisher ? *base_fisher : none, cal,
                                          l.base_ppl, l.base_bpb, std::nullopt);
            store_.save(k, r);
            progress(k, r, w);
        }
        // The outliers whose trace every fine-tuning reports: the reference selection (top 0.05% by Fisher) of the
        // pre-trained model, on held-out validation windows, the same probes before and after.
        const auto trace_batch = tiny_llama::random_windows(l.validation, s_.trace_sequences, ref.config.context + 1,
                                                            npft::RandomKey{seed, npft::make_stream(0x7472616365)}, 0);  // "trace"
        const npft::hessian::HutchinsonOptions probes{.min_probes = s_.trace_probes, .max_probes = s_.trace_probes,
                                                      .target_relative_standard_error = 0.0, .seed = seed};
        demo::Masks masks;
        std::optional<npft::hessian::TraceEstimate> before;
        if (needs_trace_before) {
            if (!base_fisher) base_fisher = fisher(model, cal);
            for (const auto& name : model.linear_names())
                masks.emplace(name, npft::outliers::TopFisher{npft::presets::reference_outlier_fraction}.select(
                                        {view(linear_weight(model.weights(), name)), view(base_fisher->at(name)), {}}));
            before = demo::outlier_trace(model, trace_batch, masks, probes);
        }
        const auto batches = demo::npft_batches(l.train, s_.recipe.npft, ref.config.context + 1, seed);
        for (const Unit& u : units) {
            model.weights() = l.base;
            const auto start = Clock::now();
            finetune(u.arm, std::stoi(u.bits), model, s_.recipe, seed, batches, cal);
            const double finetune_seconds = seconds_since(start);
            const auto e = tiny_llama::evaluate(model, l.test, *ref.tokenizer);
            const double ppl = e.perplexity(), bpb = e.bits_per_byte();
            Work w{.fishers = static_cast<double>(s_.recipe.npft.stages), .steps = static_cast<double>(s_.recipe.npft.stages * s_.recipe.npft.steps)};
            if (!u.finetune_cell.fields.empty()) {
                const auto after = demo::outlier_trace(model, trace_batch, masks, probes);
                const auto change = npft::train::paired_difference(*before, after);
                const CellResult r{{"fp32_ppl", ppl},
                                   {"fp32_bpb", bpb},
                                   {"base_bpb", l.base_bpb},
                                   {"finetune_cost_bpb", bpb - l.base_bpb},
                                   {"finetune_cost_ppl_pct", 100.0 * (ppl / l.base_ppl - 1.0)},
                                   {"trace_before", before->value},
                                   {"trace_before_se", before->standard_error},
                                   {"trace_after", after.value},
                                   {"trace_after_se", after.standard_error},
                                   {"trace_change", change.mean},
                                   {"trace_change_se", change.standard_error},
                                   {"trace_change_ci_low", change.ci_low},
                                   {"trace_change_ci_high", change.ci_high},
                                   {"trace_fell", static_cast<double>(change.wins)},
                                   {"trace_probes", static_cast<double>(change.pairs)},
                                   {"finetune_seconds", finetune_seconds}};
                store_.save(u.finetune_cell, r);
                w.evals += 1;
                w.traces += 1;
                progress(u.finetune_cell, r, w);
                w = Work{};
            }
            std::optional<Fisher> tuned_fisher;
            for (const auto& [arm, k] : u.cells) {
                w += quantized_work(arm);
                if (k.at("grid") == "lut" && !tuned_fisher) {
                    tuned_fisher = fisher(model, cal);
                    w.fishers += 1;
                }
                const Fisher none;
                const auto r = quantized_cell(l, arm, std::stoi(k.at("bits")), k.at("grid"), tuned_fisher ? *tuned_fisher : none,
                                              cal, ppl, bpb, bpb - l.base_bpb);
                store_.save(k, r);
                progress(k, r, w);
                w = Work{};
            }
        }
        model.weights() = l.base;
        return work;
    }
};

/// Times one of each kind of work on the first model, for the prediction.
Timings measure(const Settings& s) {
    ReferenceDir ref = ReferenceDir::open(s.models.front());
    ref.load_tokenizer();
    const kjv::Corpus corpus = kjv::load_kjv(s.out / "kjv.txt");
    tiny_llama::Model model(ref.config, ref.load_weights());
    model.set_threads(s.threads);
    const auto train = ref.tokenizer->encode(corpus.train);
    const auto test_tokens = ref.tokenizer->encode(corpus.test);
    const Index length = ref.config.context + 1;
    const auto test = s.eval_windows == 0 ? tiny_llama::whole_text_batches(test_tokens, length, 16)
                                          : tiny_llama::evaluation_batches(test_tokens, length, s.eval_windows, 16);
    std::vector<tiny_llama::Batch> cal;
    for (Index i = 0; i < s.calibration_sequences; ++i)
        cal.push_back(tiny_llama::random_windows(train, 1, length, npft::RandomKey{0, 1}, static_cast<std::uint64_t>(i)));
    Timings t;
    auto start = Clock::now();
    const Fisher f = npft::hessian::DiagonalFisher::compute(model, cal, model.linear_names());
    t.fisher = seconds_since(start);
    start = Clock::now();
    tiny_llama::QuantizedModel q = quantize_model(model, "rtn", 4, "g0", f, cal);
    t.quantization = seconds_since(start);
    q.set_multiply_options({.threads = s.threads, .activations = npft::kernels::cpu::Activations::fp32});
    start = Clock::now();
    (void)tiny_llama::evaluate(q, test, *ref.tokenizer);
    t.eval = seconds_since(start);
    start = Clock::now();
    (void)quantize_model(model, "gptq", 4, "g0", f, cal);
    t.gptq = seconds_since(start);
    Recipe probe = s.recipe;
    probe.npft.stages = 1;
    probe.npft.steps = 4;
    const auto batches = demo::npft_batches(train, probe.npft, length, 0);
    start = Clock::now();
    finetune("npft-reference", 4, model, probe, 0, batches, cal);
    t.step = std::max(0.0, seconds_since(start) - t.fisher) / 4.0;
    demo::Masks masks;
    for (const auto& name : model.linear_names())
        masks.emplace(name, npft::outliers::TopFisher{0.0005}.select({view(linear_weight(model.weights(), name)), view(f.at(name)), {}}));
    start = Clock::now();
    (void)demo::outlier_trace(model, tiny_llama::random_windows(train, s.trace_sequences, length, npft::RandomKey{0, 2}, 0), masks,
                              {.min_probes = s.trace_probes, .max_probes = s.trace_probes, .target_relative_standard_error = 0.0});
    t.trace = seconds_since(start);
    return t;
}

void print_prediction(const Timings& t, const Work& w) {
    std::printf("measured on the first model: evaluation %.2f s, RTN quantization %.2f s, sequential GPTQ %.2f s, Fisher "
                "%.2f s, fine-tuning step %.3f s, trace estimate %.2f s\n",
                t.eval, t.quantization, t.gptq, t.fisher, t.step, t.trace);
    std::printf("left to do: %.0f evaluations, %.0f RTN and %.0f GPTQ quantizations, %.0f Fisher passes, %.0f fine-tuning "
                "steps, %.0f trace estimates\n",
                w.evals, w.quantizations, w.gptq, w.fishers, w.steps, w.traces);
    std::printf("predicted: %s (evaluations %s, fine-tuning %s, GPTQ %s, the rest %s)\n", duration(t.seconds(w)).c_str(),
                duration(w.evals * t.eval).c_str(), duration(w.steps * t.step + w.fishers * t.fisher).c_str(),
                duration(w.gptq * t.gptq).c_str(), duration(w.quantizations * t.quantization + w.traces * t.trace).c_str());
    std::fflush(stdout);
}

int run(int argc, char** argv) {
    try {
        const Settings s = parse_settings(argc, argv);
        fs::create_directories(s.out);
        if (!s.report_only) {
            Study study(s);
            const Work work = study.pass(false);
            std::printf("npft_study: %zu model(s), %d seed(s), recipe %s\n", s.models.size(), s.seeds, s.recipe.describe().c_str());
            if (work.evals > 0 || work.steps > 0) {
                const Timings t = measure(s);
                print_prediction(t, work);
                if (s.dry_run) return 0;
                study.set_plan(t, work);
                study.pass(true);
            } else {
                std::printf("every cell is already computed\n");
                if (s.dry_run) return 0;
            }
        }
        const auto cells = study::CellStore(s.out / "cells", s.fingerprint()).all();
        if (cells.empty())
            std::fprintf(stderr, "warning: no cells in %s were made with these settings (cells of other settings are ignored: "
                                 "pass the options the study ran with, e.g. --quick or --steps)\n",
                         (s.out / "cells").string().c_str());
        report::write(cells, s.out, s.docs);
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "\nerror: %s\n", e.what());
        return 1;
    }
}

}  // namespace npft_study

int main(int argc, char** argv) { return npft_study::run(argc, argv); }
