// Compile-only: the Grid concept accepts npft's grids and a user's own, and rejects a type without fit().
#include <algorithm>
#include <span>

#include <npft/npft.hpp>

namespace npft_compile_test {
using npft::Index;  // hides ::index from <strings.h>
using namespace npft;
using namespace npft::quant;

// A user-defined grid: ternary-ish 2-bit symmetric absmax, one group per row.
struct MyAbsmaxGrid {
    int bits() const { return 2; }
    Format format() const { return Format::uniform_symmetric; }
    Index group_size(Index cols) const { return cols; }
    UniformParams fit(std::span<const float> values, std::span<const float>) const {
        float absmax = 0.0f;
        for (const float v : values) absmax = std::max(absmax, v < 0 ? -v : v);
        return UniformParams{2, round_to_half(absmax / 1.5f), 2.0f};
    }
};

struct MissingFit {
    int bits() const { return 4; }
    Format format() const { return Format::lut; }
    Index group_size(Index cols) const { return cols; }
};

struct WrongParams {
    int bits() const { return 4; }
    Format format() const { return Format::lut; }
    Index group_size(Index cols) const { return cols; }
    float fit(std::span<const float>, std::span<const float>) const { return 0.0f; }
};

static_assert(Grid<UniformGrid>);
static_assert(Grid<Uniform<4, 128>>);
static_assert(Grid<Uniform<3, 0, Symmetry::symmetric>>);
static_assert(Grid<NonUniformGrid>);
static_assert(Grid<NonUniform<4>>);
static_assert(Grid<NonUniform<2, NormalFloat>>);
static_assert(Grid<MyAbsmaxGrid>);
static_assert(!Grid<MissingFit>, "a type without fit() is not a grid");
static_assert(!Grid<WrongParams>, "fit() must return UniformParams or LutParams");
static_assert(!Grid<int>);

static_assert(std::same_as<params_of<Uniform<4, 128>>, UniformParams>);
static_assert(std::same_as<params_of<NonUniform<4>>, LutParams>);
static_assert(std::same_as<params_of<MyAbsmaxGrid>, UniformParams>);
static_assert(std::same_as<Quantizer<MyAbsmaxGrid>::params_type, UniformParams>);

// Views: Eigen types and npft views are MatrixViewable; a plain float is not.
static_assert(MatrixViewable<Matrix>);
static_assert(MatrixViewable<const Matrix>);
static_assert(MatrixViewable<Eigen::Map<Matrix>>);
static_assert(MatrixViewable<Eigen::MatrixXf>);
static_assert(MatrixViewable<MatrixView<half>>);
static_assert(VectorViewable<Vector>);
static_assert(!MatrixViewable<float>);
static_assert(!MatrixViewable<Vector>);
static_assert(!VectorViewable<Matrix>);
}  // namespace npft_compile_test
