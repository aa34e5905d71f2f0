// The block-wise reconstruction study (issue 18): on each reference model, RTN on the per-channel grid at 2, 3 and 4 bits
// reconstructed with every objective (single block; 2 and 4 blocks jointly; one block measured 1 and 2 blocks
// downstream) and every trainable-parameter policy (scales + zero points, AdaRound rounding, LoRA), over several seeds;
// plain RTN and sequential GPTQ as references; NPFT (the study's reference preset) then RTN and then the best
// reconstruction. Every cell is kept as it finishes (resumable). Writes results/*.json, ptq_g0.png and the generated
// section of docs/ptq.md.
//
//   ptq_study --model DIR [--model DIR ...] [--out DIR] [--page FILE] [--seeds N] [--threads N] [--bits 2,3]
//             [--policies a,b] [--objectives a,b] [--steps N] [--calibration N] [--no-npft] [--quick] [--dry-run]
//             [--report-only]
#include <algorithm>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "../07_npft_study/arms.hpp"
#include "../07_npft_study/reference_dir.hpp"
#include "kjv_corpus.hpp"
#include "reconstruction.hpp"
#include "report.hpp"
#include "study/cell_store.hpp"
#include "study/text.hpp"
#include "study/ptq_grid.hpp"
#include "tiny_llama/data.hpp"

namespace ptq_study {

namespace fs = std::filesystem;
using demo::Clock;
using demo::seconds_since;
using npft_study::ReferenceDir;
using study::CellKey;
using study::duration;
using study::split_list;
using study::CellResult;

struct Settings {
    std::vector<fs::path> models;
    fs::path out = "ptq_study";
    fs::path page;  // empty: <out>/ptq.md
    int seeds = 5, threads = 2;
    std::vector<int> bits = {2, 3, 4};
    std::vector<std::string> policies = study::ptq::policies, objectives = study::ptq::objectives;
    bool npft = true, quick = false, dry_run = false, report_only = false;
    ReconstructionBudget budget;
    Index calibration = 8;   // batches of one window of `length` + 1 tokens from the train split, one per step
    Index length = 0;        // tokens per window; 0: the model's context
    Index eval_windows = 0;  // 0: the whole test split (the NPFT study's evaluation)
    npft_study::Recipe recipe;          // NPFT: the NPFT study's reference preset
    Index npft_calibration = 32;        // the NPFT study's Fisher calibration (32 single windows, its own stream)

    std::string fingerprint() const {
        return "ptq_study/1 grid=g0 start=rtn " + budget.describe() + " calibration=" + std::to_string(calibration) + "x" +
               (length ? std::to_string(length) : std::string("context")) + " eval=" +
               (eval_windows ? std::to_string(eval_windows) + "-windows" : std::string("whole-test")) + " npft=" +
               recipe.describe() + " npft-calibration=" + std::to_string(npft_calibration);
    }
    std::string describe() const {
        return "RTN per output channel, then " + std::to_string(budget.steps) + " AdamW steps per window on " +
               std::to_string(calibration) + " calibration windows of " + (length ? std::to_string(length) : std::string("context")) +
               " tokens (one per step), LoRA rank " + std::to_string(budget.lora_rank);
    }
};

constexpr const char* usage_text =
    " --model DIR [--model DIR ...] [options]\n"
    "  --model DIR          a reference model folder (reference.safetensors [+ tokenizer.model]); one or more\n"
    "  --out DIR            cells/, results/*.json, the plot's data (default ./ptq_study)\n"
    "  --page FILE          the page whose generated section is rewritten, and ptq_g0.png beside it (default <out>/ptq.md)\n"
    "  --seeds N            seeds per model: the calibration draw, LoRA's init, NPFT's run (default 5)\n"
    "  --threads N          threads (default 2; results do not depend on it)\n"
    "  --bits 2,3,4         widths        --policies scales,rounding,lora        --objectives single,multi2,multi4,down1,down2\n"
    "  --steps N            optimiser steps per window (default 24)\n"
    "  --calibration N      calibration windows (default 8)\n"
    "  --no-npft            skip the NPFT arms\n"
    "  --quick              a smoke run: the first model, 2 seeds, 3-bit, 64-token windows, tiny budgets\n"
    "  --dry-run            time one reconstruction per policy, an evaluation, GPTQ and NPFT; print the cost of what is left\n"
    "  --report-only        write the outputs from the cells there are, run nothing\n";

Settings parse_settings(int argc, char** argv) {
    Settings s;
    demo::CommandLine cl(argc, argv, usage_text);
    while (cl.next()) {
        if (cl.is("--model")) s.models.emplace_back(cl.value());
        else if (cl.is("--out")) s.out = cl.value();
        else if (cl.is("--page")) s.page = cl.value();
        else if (cl.is("--seeds")) s.seeds = static_cast<int>(cl.integer());
        else if (cl.is("--threads")) s.threads = static_cast<int>(std::max<Index>(1, cl.integer()));
        else if (cl.is("--bits")) {
            s.bits.clear();
            for (const auto& b : split_list(cl.value())) {
                npft::require(b == "2" || b == "3" || b == "4", "--bits: '", b, "' is not 2, 3 or 4");
                s.bits.push_back(std::stoi(b));
            }
        } else if (cl.is("--policies")) s.policies = split_list(cl.value());
        else if (cl.is("--objectives")) s.objectives = split_list(cl.value());
        else if (cl.is("--steps")) s.budget.steps = cl.integer();
        else if (cl.is("--calibration")) s.calibration = cl.integer();
        else if (cl.is("--no-npft")) s.npft = false;
        else if (cl.is("--quick")) s.quick = true;
        else if (cl.is("--dry-run")) s.dry_run = true;
        else if (cl.is("--report-only")) s.report_only = true;
        else cl.reject();
    }
    if (s.quick) {
        if (s.models.size() > 1) s.models.resize(1);
        s.seeds = 2;
        s.bits = {3};
        s.budget.steps = 2;
        s.calibration = 2;
        s.length = 64;
        s.eval_windows = 8;
        s.recipe.npft.stages = 1;
        s.recipe.npft.steps = 2;
        s.recipe.npft.batch = 2;
        s.npft_calibration = 2;
    }
    if (s.page.empty()) s.page = s.out / "ptq.md";
    s.recipe.threads = s.threads;
    npft::require(!s.models.empty() || s.report_only, "give at least one --model");
    npft::require(s.seeds >= 1, "--seeds must be at least 1, got ", s.seeds);
    npft::require(s.budget.steps >= 1, "--steps must be at least 1, got ", s.budget.steps);
    npft::require(s.calibration >= 1, "--calibration must be at least 1, got ", s.calibration);
    for (const auto& p : s.policies)
        npft::require(std::find(study::ptq::policies.begin(), study::ptq::policies.end(), p) != study::ptq::policies.end(),
                      "--policies: unknown policy '", p, "' (expected scales, rounding or lora)");
    for (const auto& o : s.objectives) (void)study::ptq::window_and_depth(o);  // names the unknown one
    return s;
}

CellKey key(const std::string& model, const std::string& arm, const std::string& bits, const std::string& grid,
            const std::string& seed) {
    return {{{"model", model}, {"arm", arm}, {"bits", bits}, {"grid", grid}, {"seed", seed}}};
}

/// Work left, in units timed before the run.
struct Work {
    double evals = 0, gptq = 0, npft_runs = 0, cells = 0;
    std::map<std::string, double> block_passes;  // policy -> block-steps of reconstruction (study::ptq::block_passes)
};

struct Timings {
    double eval = 0, gptq = 0, npft_run = 0;
    std::map<std::string, double> block_pass;  // policy -> seconds per block pass of a whole reconstruction
    double seconds(const Work& w) const {
        double total = w.evals * eval + w.gptq * gptq + w.npft_runs * npft_run;
        for (const auto& [policy, passes] : w.block_passes)
            total += passes * (block_pass.contains(policy) ? block_pass.at(policy) : 0.0);
        return total;
    }
};

/// A model of the study in memory: its weights, tokenized splits and fp32 figures.
struct LoadedModel {
    std::optional<tiny_llama::Model> model;
    tiny_llama::Weights base;
    std::vector<tiny_llama::Token> train, test_tokens;
    std::vector<tiny_llama::Batch> test;
    double base_ppl = 0, base_bpb = 0;
};

class Study {
public:
    explicit Study(const Settings& s) : s_(s), store_(s.out / "cells", s.fingerprint()) {}

    /// Counting pass (run = false) or the real one; returns the work it found missing.
    Work pass(bool run) {
        run_ = run;
        Work total;
        for (const fs::path& dir : s_.models) {
            ReferenceDir ref = ReferenceDir::open(dir);
            model_pass(ref, total);
        }
        return total;
    }
    void set_plan(const Timings& t, const Work& w) {
        timings_ = t;
        planned_ = t.seconds(w);
    }
    /// The model of `ref` in memory (the one loaded last is kept: the timing probe's is the first pass's).
    LoadedModel& load(ReferenceDir& ref) {
        if (!ref.tokenizer) ref.load_tokenizer();
        if (loaded_ && loaded_id_ == ref.id) return *loaded_;
        loaded_id_ = ref.id;
        static const kjv::Corpus corpus = kjv::load_kjv(s_.out / "kjv.txt");
        LoadedModel& l = loaded_.emplace();
        l.base = ref.load_weights();
        l.model.emplace(ref.config, l.base);
        l.model->set_threads(s_.threads);
        l.train = ref.tokenizer->encode(corpus.train);
        l.test_tokens = ref.tokenizer->encode(corpus.test);
        const Index length = window(ref) + 1;
        l.test = s_.eval_windows == 0 ? tiny_llama::whole_text_batches(l.test_tokens, length, 16)
                                      : tiny_llama::evaluation_batches(l.test_tokens, length, s_.eval_windows, 16);
        const auto e = tiny_llama::evaluate(*l.model, l.test, *ref.tokenizer);
        l.base_ppl = e.perplexity();
        l.base_bpb = e.bits_per_byte();
        std::fprintf(stderr, "[ptq] model %s (%s): fp32 test perplexity %.4f, %.4f bits/byte on %td predictions\n",
                     ref.id.c_str(), ref.config.describe().c_str(), l.base_ppl, l.base_bpb, e.predictions);
        return l;
    }
    Index window(const ReferenceDir& ref) const { return s_.length ? s_.length : ref.config.context; }
    /// The reconstruction's calibration of a seed: windows of the train split, apart from every other stream.
    std::vector<tiny_llama::Batch> calibration(const LoadedModel& l, const ReferenceDir& ref, std::uint64_t seed) const {
        std::vector<tiny_llama::Batch> out;
        for (Index i = 0; i < s_.calibration; ++i)
            out.push_back(tiny_llama::random_windows(l.train, 1, window(ref) + 1, npft::RandomKey{seed, npft::make_stream(0x707471)},
                                                     static_cast<std::uint64_t>(i)));  // "ptq"
        return out;
    }
    /// NPFT's and GPTQ's calibration: the NPFT study's own draw (so NPFT here is its npft-reference run of that seed).
    std::vector<tiny_llama::Batch> npft_calibration(const LoadedModel& l, const ReferenceDir& ref, std::uint64_t seed) const {
        std::vector<tiny_llama::Batch> out;
        for (Index i = 0; i < s_.npft_calibration; ++i)
            out.push_back(tiny_llama::random_windows(l.train, 1, window(ref) + 1, npft::RandomKey{seed, npft::make_stream(0x63616c)},
                                                     static_cast<std::uint64_t>(i)));  // "cal"
        return out;
    }

private:
    const Settings& s_;
    study::CellStore store_;
    bool run_ = false;
    Timings timings_;
    double planned_ = 0, done_ = 0;
    Clock::time_point start_ = Clock::now();
    int computed_ = 0;
    std::optional<LoadedModel> loaded_;
    std::string loaded_id_;

    bool missing(const CellKey& k) const { return !store_.find(k).has_value(); }

    void save(const CellKey& k, const CellResult& r, double planned_seconds) {
        store_.save(k, r);
        done_ += planned_seconds;
        ++computed_;
        const double elapsed = seconds_since(start_);
        const double eta = done_ > 0 ? elapsed / done_ * std::max(0.0, planned_ - done_) : 0.0;
        std::fprintf(stderr, "[ptq] %3.0f%% %d cells, %s: gap %s bits/byte  elapsed %s, eta %s\n",
                     planned_ > 0 ? 100.0 * std::min(1.0, done_ / planned_) : 100.0, computed_, k.describe().c_str(),
                     r.contains("gap_bpb") ? npft_study::report::signed_text(r.at("gap_bpb")).c_str() : "n/a",
                     duration(elapsed).c_str(), duration(eta).c_str());
    }

    /// The figures of a quantized model whose fp32 source scored source_bpb / source_ppl.
    CellResult evaluated(const LoadedModel& l, const ReferenceDir& ref, const tiny_llama::QuantizedModel& q, double source_ppl,
                         double source_bpb) const {
        const auto e = tiny_llama::evaluate(q, l.test, *ref.tokenizer);
        return {{"test_ppl", e.perplexity()},
                {"test_bpb", e.bits_per_byte()},
                {"source_bpb", source_bpb},
                {"base_bpb", l.base_bpb},
                {"gap_bpb", e.bits_per_byte() - source_bpb},
                {"gap_ppl_pct", 100.0 * (e.perplexity() / source_ppl - 1.0)},
                {"vs_base_bpb", e.bits_per_byte() - l.base_bpb}};
    }

    /// A reconstruction cell of the model now in l.model (whose fp32 figures are source_*).
    CellResult reconstruction_cell(LoadedModel& l, const ReferenceDir& ref, int bits, const std::string& policy,
                                   const std::string& objective, const std::vector<tiny_llama::Batch>& cal, std::uint64_t seed,
                                   double source_ppl, double source_bpb) {
        const tiny_llama::Weights source = l.model->weights();
        const auto r = reconstruct(*l.model, window(ref), bits, policy, objective, cal, s_.budget, seed, s_.threads);
        CellResult out = evaluated(l, ref, packed_model(*l.model, r.packed, s_.threads), source_ppl, source_bpb);
        l.model->weights() = source;
        out["reconstruction_seconds"] = r.report.seconds;
        out["seconds_per_block"] = r.report.seconds / static_cast<double>(ref.config.layers);
        out["peak_activation_bytes"] = static_cast<double>(r.report.peak_activation_bytes);
        out["calibration_mse_before"] = r.loss_before;
        out["calibration_mse_after"] = r.loss_after;
        return out;
    }

    double passes(const ReferenceDir& ref, const std::string& objective) const {
        return static_cast<double>(study::ptq::block_passes(objective, ref.config.layers));
    }
    void add_reconstruction(Work& w, const ReferenceDir& ref, const std::string& policy, const std::string& objective) const {
        w.block_passes[policy] += passes(ref, objective);
        w.evals += 1;
        w.cells += 1;
    }

    /// The reconstruction arm NPFT is followed by at `bits`: the pick from this store's non-NPFT cells so far.
    std::optional<std::string> npft_pick(const ReferenceDir& ref, const std::string& bits) const {
        study::Cells reference;
        for (auto& c : study::expand_seedless(store_.all(), "any"))
            if (c.first.at("arm").rfind("npft", 0) != 0) reference.push_back(std::move(c));
        std::vector<std::string> candidates;
        for (const auto& p : s_.policies)
            for (const auto& o : s_.objectives) candidates.push_back(study::ptq::arm(p, o));
        for (const auto& p : study::ptq::picks(reference, candidates, {}, "gap_bpb", ref.config.layers))
            if (p.bits == bits) return p.best;
        return std::nullopt;
    }

    void model_pass(ReferenceDir& ref, Work& work) {
        for (const int b : s_.bits) {  // RTN: no seed changes it
            const CellKey k = key(ref.id, "rtn", std::to_string(b), "g0", "any");
            if (!missing(k)) continue;
            work.evals += 1, work.cells += 1;
            if (!run_) continue;
            LoadedModel& l = load(ref);
            save(k, evaluated(l, ref, packed_model(*l.model, rtn_per_channel(*l.model, b), s_.threads), l.base_ppl, l.base_bpb),
                 timings_.eval);
        }
        for (int seed = 1; seed <= s_.seeds; ++seed) {
            const std::string sd = std::to_string(seed);
            std::optional<std::vector<tiny_llama::Batch>> cal, gptq_cal;
            for (const int b : s_.bits) {
                const std::string bits = std::to_string(b);
                const CellKey g = key(ref.id, "gptq", bits, "g0", sd);
                if (missing(g)) {
                    work.evals += 1, work.gptq += 1, work.cells += 1;
                    if (run_) {
                        LoadedModel& l = load(ref);
                        if (!gptq_cal) gptq_cal = npft_calibration(l, ref, static_cast<std::uint64_t>(seed));
                        auto q = npft_study::quantize_model(*l.model, "gptq", b, "g0", {}, *gptq_cal);
                        q.set_multiply_options({.threads = s_.threads, .activations = npft::kernels::cpu::Activations::fp32});
                        save(g, evaluated(l, ref, q, l.base_ppl, l.base_bpb), timings_.eval + timings_.gptq);
                    }
                }
                for (const auto& policy : s_.policies)
                    for (const auto& objective : s_.objectives) {
                        const CellKey k = key(ref.id, study::ptq::arm(policy, objective), bits, "g0", sd);
                        if (!missing(k)) continue;
                        Work one;
                        add_reconstruction(one, ref, policy, objective);
                        add_reconstruction(work, ref, policy, objective);
                        if (!run_) continue;
                        LoadedModel& l = load(ref);
                        if (!cal) cal = calibration(l, ref, static_cast<std::uint64_t>(seed));
                        save(k, reconstruction_cell(l, ref, b, policy, objective, *cal, static_cast<std::uint64_t>(seed), l.base_ppl,
                                                    l.base_bpb),
                             timings_.seconds(one));
                    }
            }
        }
        if (s_.npft)
            for (int seed = 1; seed <= s_.seeds; ++seed) npft_pass(ref, static_cast<std::uint64_t>(seed), work);
    }

    /// NPFT (the NPFT study's npft-reference run of this seed), then RTN, then the pick of each width.
    void npft_pass(ReferenceDir& ref, std::uint64_t seed, Work& work) {
        const std::string sd = std::to_string(seed);
        const CellKey fp32 = key(ref.id, "npft", "0", "fp32", sd);
        std::vector<std::pair<CellKey, std::string>> todo;  // (key, reconstruction arm or "rtn")
        for (const int b : s_.bits) {
            const std::string bits = std::to_string(b);
            if (missing(key(ref.id, "npft+rtn", bits, "g0", sd))) todo.emplace_back(key(ref.id, "npft+rtn", bits, "g0", sd), "rtn");
            const auto pick = npft_pick(ref, bits);
            if (!pick) {  // not known before the grid has run: counted at the mean objective's cost
                work.evals += 1, work.cells += 1;
                for (const auto& o : s_.objectives)
                    work.block_passes[s_.policies.front()] += passes(ref, o) / static_cast<double>(s_.objectives.size());
                continue;
            }
            const CellKey k = key(ref.id, "npft+" + *pick, bits, "g0", sd);
            if (missing(k)) todo.emplace_back(k, *pick);
        }
        if (todo.empty() && !missing(fp32)) return;
        work.npft_runs += 1, work.evals += 1, work.cells += 1;
        for (const auto& [k, arm] : todo) {
            work.evals += 1, work.cells += 1;
            if (const auto parts = study::ptq::parse_arm(arm)) work.block_passes[parts->policy] += passes(ref, parts->objective);
        }
        if (!run_) return;
        LoadedModel& l = load(ref);
        tiny_llama::Model& model = *l.model;
        model.weights() = l.base;
        const auto ncal = npft_calibration(l, ref, seed);
        const auto batches = demo::npft_batches(l.train, s_.recipe.npft, window(ref) + 1, seed);
        const auto start = Clock::now();
        npft_study::finetune("npft-reference", 0, model, s_.recipe, seed, batches, ncal);
        const double seconds = seconds_since(start);
        const auto e = tiny_llama::evaluate(model, l.test, *ref.tokenizer);
        const double ppl = e.perplexity(), bpb = e.bits_per_byte();
        save(fp32, {{"fp32_ppl", ppl}, {"fp32_bpb", bpb}, {"finetune_cost_bpb", bpb - l.base_bpb}, {"finetune_seconds", seconds}},
             timings_.npft_run + timings_.eval);
        const auto cal = calibration(l, ref, seed);
        for (const auto& [k, arm] : todo) {
            const int b = std::stoi(k.at("bits"));
            CellResult r;
            Work one;
            one.evals = 1;
            if (arm == "rtn") {
                r = evaluated(l, ref, packed_model(model, rtn_per_channel(model, b), s_.threads), ppl, bpb);
            } else {
                const auto parts = study::ptq::parse_arm(arm);
                one.block_passes[parts->policy] = passes(ref, parts->objective);
                r = reconstruction_cell(l, ref, b, parts->policy, parts->objective, cal, seed, ppl, bpb);
            }
            r["finetune_cost_bpb"] = bpb - l.base_bpb;
            save(k, r, timings_.seconds(one));
        }
        model.weights() = l.base;
    }
};

/// Wall and process CPU time since construction. On a machine shared with other work the wall time of a probe says
/// more about the neighbours than about the study: the CPU time over the threads is the idle machine's estimate.
struct Stopwatch {
    Clock::time_point wall = Clock::now();
    std::clock_t cpu = std::clock();
    double wall_seconds() const { return seconds_since(wall); }
    double cpu_seconds() const { return static_cast<double>(std::clock() - cpu) / CLOCKS_PER_SEC; }
};

/// Times, on the first model: one whole-split evaluation, one sequential GPTQ, one single-block reconstruction per
/// policy (3 bits, seed 1: the grid's first cells without their evaluation), and NPFT's cost from 2 steps of one stage.
std::pair<Timings, Timings> measure(const Settings& s, Study& probe) {
    ReferenceDir ref = ReferenceDir::open(s.models.front());
    LoadedModel& l = probe.load(ref);
    Timings wall, cpu;  // cpu: process CPU seconds / threads
    const double threads = static_cast<double>(s.threads);
    const auto cal = probe.calibration(l, ref, 1);
    const double single = static_cast<double>(study::ptq::block_passes("single", ref.config.layers));
    for (const auto& policy : s.policies) {
        const Stopwatch watch;
        const auto r = reconstruct(*l.model, probe.window(ref), 3, policy, "single", cal, s.budget, 1, s.threads);
        wall.block_pass[policy] = watch.wall_seconds() / single;
        cpu.block_pass[policy] = watch.cpu_seconds() / threads / single;
        l.model->weights() = l.base;
        std::printf("timed: %s single-block reconstruction of %td blocks, %td steps per window: %.1f s wall, %.1f s CPU (peak "
                    "activations %.2f MB)\n",
                    policy.c_str(), ref.config.layers, s.budget.steps, watch.wall_seconds(), watch.cpu_seconds(),
                    static_cast<double>(r.report.peak_activation_bytes) / 1e6);
        std::fflush(stdout);
    }
    {
        const Stopwatch watch;
        (void)tiny_llama::evaluate(packed_model(*l.model, rtn_per_channel(*l.model, 3), s.threads), l.test, *ref.tokenizer);
        wall.eval = watch.wall_seconds();
        cpu.eval = watch.cpu_seconds() / threads;
    }
    const auto ncal = probe.npft_calibration(l, ref, 1);
    {
        const Stopwatch watch;
        (void)npft_study::quantize_model(*l.model, "gptq", 3, "g0", {}, ncal);
        wall.gptq = watch.wall_seconds();
        cpu.gptq = watch.cpu_seconds() / threads;
    }
    npft_study::Recipe short_run = s.recipe;
    short_run.npft.stages = 1;
    short_run.npft.steps = 2;
    const auto batches = demo::npft_batches(l.train, short_run.npft, probe.window(ref) + 1, 1);
    const Stopwatch stage;
    npft_study::finetune("npft-reference", 0, *l.model, short_run, 1, batches, ncal);  // one Fisher pass + 2 steps
    const double stage_wall = stage.wall_seconds(), stage_cpu = stage.cpu_seconds();
    const Stopwatch fisher;
    (void)npft::hessian::DiagonalFisher::compute(*l.model, ncal, l.model->linear_names());
    const double fisher_wall = fisher.wall_seconds(), fisher_cpu = fisher.cpu_seconds();
    const auto npft_run = [&](double stage_seconds, double fisher_seconds) {
        const double step = std::max(0.0, stage_seconds - fisher_seconds) / 2.0;
        return static_cast<double>(s.recipe.npft.stages) * (fisher_seconds + static_cast<double>(s.recipe.npft.steps) * step);
    };
    wall.npft_run = npft_run(stage_wall, fisher_wall);
    cpu.npft_run = npft_run(stage_cpu, fisher_cpu) / threads;
    l.model->weights() = l.base;
    std::printf("timed (wall / CPU over %d threads): evaluation %.1f / %.1f s, sequential GPTQ %.1f / %.1f s, NPFT run %.0f / "
                "%.0f s\n",
                s.threads, wall.eval, cpu.eval, wall.gptq, cpu.gptq, wall.npft_run, cpu.npft_run);
    return {wall, cpu};
}

int run(int argc, char** argv) {
    try {
        const Settings s = parse_settings(argc, argv);
        fs::create_directories(s.out);
        Index blocks = 6;
        if (!s.models.empty()) blocks = ReferenceDir::open(s.models.front()).config.layers;
        if (!s.report_only) {
            Study study(s);
            const Work work = study.pass(false);
            std::printf("ptq_study: %zu model(s), %d seed(s); %s\n", s.models.size(), s.seeds, s.describe().c_str());
            if (work.cells > 0) {
                const auto [t, cpu] = measure(s, study);
                double passes = 0;
                for (const auto& [p, n] : work.block_passes) passes += n;
                std::printf("left to do: %.0f cells (%.0f evaluations, %.0f block passes of reconstruction, %.0f GPTQ, %.0f NPFT "
                            "runs); predicted %s at the measured wall times, %s at CPU time / %d threads (an idle machine)\n",
                            work.cells, work.evals, passes, work.gptq, work.npft_runs, duration(t.seconds(work)).c_str(),
                            duration(cpu.seconds(work)).c_str(), s.threads);
                Work reconstructions;
                reconstructions.block_passes = work.block_passes;
                std::printf("of which evaluations %s, reconstructions %s (CPU / threads)\n", duration(work.evals * cpu.eval).c_str(),
                            duration(cpu.seconds(reconstructions)).c_str());
                std::fflush(stdout);
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
            std::fprintf(stderr, "warning: no cells in %s were made with these settings (pass the options the study ran with)\n",
                         (s.out / "cells").string().c_str());
        report::write(cells, s.out, s.page, blocks, s.describe());
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "\nerror: %s\n", e.what());
        return 1;
    }
}

}  // namespace ptq_study

int main(int argc, char** argv) { return ptq_study::run(argc, argv); }
