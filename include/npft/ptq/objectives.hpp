#pragma once
// Reconstruction objectives ("Interactions Across Blocks in Post-Training Quantization", Shabanovi et al. 2024).
// Each objective says which blocks are trained together (a window) and where their error is measured:
//   SingleBlock           window = one block, error at its output (the usual block-wise PTQ baseline)
//   MultiBlock{n}         window = n consecutive blocks trained jointly, error at the output of the last one
//   Downstream{depth}     window = one block, error at the OUTPUT of the block `depth` places after it (default), the
//                         blocks in between kept in full precision: knowledge of what follows enters the objective.
//                         Readout::preactivations measures at that block's normalised q/k/v projections instead.
// A user's objective is any type with these four members.
#include <algorithm>
#include <concepts>

#include "../core/config.hpp"
#include "../core/error.hpp"

namespace npft::ptq {

/// Where a downstream error is read: the measured block's output (the residual stream, what SingleBlock measures for
/// that block) or its pre-activations (norm, then q/k/v: drops the residual path and the per-token RMSNorm scale).
enum class Readout { block_output, preactivations };

/// How many blocks a window trains, and where its error is measured.
template <class O>
concept ReconstructionObjective = requires(const O& objective) {
    { objective.window_size() } -> std::convertible_to<Index>;
    /// 0: error at the output of the window; d > 0: at the block d places after the window's last block.
    { objective.downstream_depth() } -> std::convertible_to<Index>;
    /// What of the measured block is compared (only read when downstream_depth() > 0).
    { objective.readout() } -> std::convertible_to<Readout>;
    { objective.name() } -> std::convertible_to<const char*>;
};

struct SingleBlock {
    Index window_size() const { return 1; }
    Index downstream_depth() const { return 0; }
    Readout readout() const { return Readout::block_output; }
    const char* name() const { return "single-block"; }
};

struct MultiBlock {
    Index blocks = 2;
    Index window_size() const {
        require(blocks >= 1, "MultiBlock needs at least 1 block per window, got ", blocks);
        return blocks;
    }
    Index downstream_depth() const { return 0; }
    Readout readout() const { return Readout::block_output; }
    const char* name() const { return "multi-block"; }
};

struct Downstream {
    Index depth = 1;
    Readout measured_at = Readout::block_output;
    Index window_size() const { return 1; }
    Index downstream_depth() const {
        require(depth >= 1, "Downstream depth must be at least 1, got ", depth);
        return depth;
    }
    Readout readout() const { return measured_at; }
    const char* name() const { return measured_at == Readout::block_output ? "downstream" : "downstream-qkv"; }
};

static_assert(ReconstructionObjective<SingleBlock> && ReconstructionObjective<MultiBlock> &&
              ReconstructionObjective<Downstream>);

}  // namespace npft::ptq
