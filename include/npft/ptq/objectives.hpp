#pragma once
// Reconstruction objectives ("Interactions Across Blocks in Post-Training Quantization", Shabanovi et al. 2024).
// Each objective says which blocks are trained together (a window) and where their error is measured:
//   SingleBlock           window = one block, error at its output (the usual block-wise PTQ baseline)
//   MultiBlock{n}         window = n consecutive blocks trained jointly, error at the output of the last one
//   Downstream{depth}     window = one block, error at the pre-activations of the block `depth` places after it, the
//                         blocks in between kept in full precision: knowledge of what follows enters the objective
// A user's objective is any type with these three members.
#include <algorithm>
#include <concepts>

#include "../core/config.hpp"
#include "../core/error.hpp"

namespace npft::ptq {

/// How many blocks a window trains, and where its error is measured.
template <class O>
concept ReconstructionObjective = requires(const O& objective, Index blocks) {
    { objective.window_size() } -> std::convertible_to<Index>;
    /// 0: error at the output of the window; d > 0: at the pre-activations of the d-th block after the window.
    { objective.downstream_depth() } -> std::convertible_to<Index>;
    { objective.name() } -> std::convertible_to<const char*>;
};

struct SingleBlock {
    Index window_size() const { return 1; }
    Index downstream_depth() const { return 0; }
    const char* name() const { return "single-block"; }
};

struct MultiBlock {
    Index blocks = 2;
    Index window_size() const {
        require(blocks >= 1, "MultiBlock needs at least 1 block per window, got ", blocks);
        return blocks;
    }
    Index downstream_depth() const { return 0; }
    const char* name() const { return "multi-block"; }
};

struct Downstream {
    Index depth = 1;
    Index window_size() const { return 1; }
    Index downstream_depth() const {
        require(depth >= 1, "Downstream depth must be at least 1, got ", depth);
        return depth;
    }
    const char* name() const { return "downstream"; }
};

static_assert(ReconstructionObjective<SingleBlock> && ReconstructionObjective<MultiBlock> &&
              ReconstructionObjective<Downstream>);

}  // namespace npft::ptq
