// Tensor views: strides, layouts, sub-views, Eigen interop without copies, foreign types via view_traits, errors.
#include <catch2/catch.hpp>

#include <numeric>
#include <vector>

#include <npft/npft.hpp>

// A user's own tensor type, opting in to npft through view_traits (outside namespace npft, as a user would).
namespace user {
struct Tensor2D {
    std::vector<float> storage;
    long rows = 0, cols = 0;
};
}  // namespace user

template <>
struct npft::view_traits<user::Tensor2D> {
    static npft::MatrixView<float> view(user::Tensor2D& t) {
        return npft::make_matrix_view(t.storage.data(), t.rows, t.cols);
    }
    static npft::MatrixView<const float> view(const user::Tensor2D& t) {
        return npft::make_matrix_view(t.storage.data(), t.rows, t.cols);
    }
};

namespace npft_test {
using npft::Index;  // hides ::index from <strings.h>
using namespace npft;

namespace {
std::vector<float> iota(std::size_t n) {
    std::vector<float> v(n);
    std::iota(v.begin(), v.end(), 0.0f);
    return v;
}
}  // namespace

TEST_CASE("dense row- and column-major views address the right elements", "[core][views]") {
    std::vector<float> data = iota(12);
    const auto rm = MatrixView<float>::dense(data.data(), 3, 4);
    const auto cm = MatrixView<float>::dense(data.data(), 3, 4, Layout::col_major);
    CHECK(rm(1, 2) == 6.0f);  // 1 * 4 + 2
    CHECK(cm(1, 2) == 7.0f);  // 2 * 3 + 1
    CHECK(rm.row_stride() == 4);
    CHECK(rm.col_stride() == 1);
    CHECK(cm.row_stride() == 1);
    CHECK(cm.col_stride() == 3);
    CHECK(rm.is_row_major_contiguous());
    CHECK_FALSE(cm.is_row_major_contiguous());
    CHECK(rm.size() == 12);
    rm(2, 3) = -1.0f;
    CHECK(data[11] == -1.0f);
}

TEST_CASE("strided views, transposes, blocks, rows and columns share memory", "[core][views]") {
    std::vector<float> data = iota(40);
    // A 4 x 3 matrix living in a 4 x 10 buffer, every other column.
    const MatrixView<float> v(data.data(), 4, 3, 10, 2);
    CHECK(v(3, 2) == 34.0f);
    CHECK(&v(3, 2) == &data[34]);

    const auto t = v.transposed();
    CHECK(t.rows() == 3);
    CHECK(t.cols() == 4);
    for (Index r = 0; r < 4; ++r)
        for (Index c = 0; c < 3; ++c) CHECK(&t(c, r) == &v(r, c));
    CHECK(&t.transposed()(1, 2) == &v(1, 2));

    const auto b = v.block(1, 1, 2, 2);
    CHECK(b.rows() == 2);
    CHECK(&b(0, 0) == &v(1, 1));
    CHECK(&b(1, 1) == &v(2, 2));

    const auto row = v.row(2);
    const auto col = v.col(1);
    CHECK(row.size() == 3);
    CHECK(&row[2] == &v(2, 2));
    CHECK(col.size() == 4);
    CHECK(col.stride() == 10);
    CHECK(&col[3] == &v(3, 1));

    const MatrixView<const float> read_only = v;  // mutable -> const converts implicitly
    CHECK(read_only.data() == v.data());
    CHECK(read_only.row_stride() == 10);
    STATIC_REQUIRE_FALSE(std::is_convertible_v<MatrixView<const float>, MatrixView<float>>);
}

TEST_CASE("half and bfloat16 views", "[core][views]") {
    std::vector<half> h = {half(1.0f), half(2.0f), half(3.0f), half(4.0f)};
    const auto v = make_matrix_view(h.data(), 2, 2);
    CHECK(to_float(v(1, 0)) == 3.0f);
    v(0, 1) = half(-0.5f);
    CHECK(static_cast<float>(h[1]) == -0.5f);
    std::vector<bfloat16> b = {bfloat16(1.0f), bfloat16(2.0f)};
    const VectorView<const bfloat16> bv(b.data(), 2);
    CHECK(to_float(bv[1]) == 2.0f);
}

TEST_CASE("Eigen matrices, Maps and Refs are seen without copies", "[core][views][eigen]") {
    Matrix m = Matrix::Random(5, 7);
    const auto v = as_matrix_view(m);
    CHECK(v.data() == m.data());
    CHECK(v.rows() == 5);
    CHECK(v.cols() == 7);
    CHECK(v.row_stride() == 7);
    CHECK(v.col_stride() == 1);
    CHECK(&v(3, 4) == &m(3, 4));
    v(0, 0) = 42.0f;
    CHECK(m(0, 0) == 42.0f);

    const Matrix& cm = m;
    const auto cv = as_matrix_view(cm);
    STATIC_REQUIRE(std::is_same_v<decltype(cv), const MatrixView<const float>>);
    CHECK(&cv(4, 6) == &m(4, 6));

    Eigen::MatrixXf col_major = Eigen::MatrixXf::Random(4, 6);
    const auto colv = as_matrix_view(col_major);
    CHECK(colv.row_stride() == 1);
    CHECK(colv.col_stride() == 4);
    CHECK(&colv(2, 5) == &col_major(2, 5));

    std::vector<float> buffer = iota(50);
    Eigen::Map<Matrix, Eigen::Unaligned, Eigen::OuterStride<>> mapped(buffer.data(), 4, 6, Eigen::OuterStride<>(10));
    const auto mv = as_matrix_view(mapped);
    CHECK(mv.data() == buffer.data());
    CHECK(mv.row_stride() == 10);
    CHECK(&mv(3, 5) == &buffer[35]);

    Eigen::Ref<Matrix> ref = m.block(1, 2, 3, 4);
    const auto rv = as_matrix_view(ref);
    CHECK(&rv(0, 0) == &m(1, 2));
    CHECK(&rv(2, 3) == &m(3, 5));
    const Eigen::Ref<const Matrix> cref = m;
    CHECK(as_matrix_view(cref).data() == m.data());

    Vector x = Vector::Random(9);
    const auto xv = as_vector_view(x);
    CHECK(xv.data() == x.data());
    CHECK(xv.size() == 9);
}

TEST_CASE("Eigen blocks of matrices are seen without copies, const-correct", "[core][views][eigen]") {
    Matrix m = Matrix::Random(8, 16);
    auto block = m.block(2, 3, 4, 5);
    const auto view = as_matrix_view(block);
    STATIC_REQUIRE(std::is_same_v<decltype(view), const MatrixView<float>>);
    CHECK(view.data() == &m(2, 3));
    CHECK(view.rows() == 4);
    CHECK(view.cols() == 5);
    CHECK(view.row_stride() == 16);
    CHECK(view(1, 1) == m(3, 4));

    const Matrix& constant = m;
    auto top = constant.topRows(3);
    const auto const_view = as_matrix_view(top);
    STATIC_REQUIRE(std::is_same_v<decltype(const_view), const MatrixView<const float>>);
    CHECK(const_view.data() == m.data());

    Eigen::MatrixXf column_major = Eigen::MatrixXf::Random(6, 7);
    auto inner = column_major.block(1, 1, 3, 3);
    const auto column_view = as_matrix_view(inner);
    CHECK(column_view(2, 1) == column_major(3, 2));
    CHECK(column_view.col_stride() == 6);

    // A block quantizes directly, to the same result as a copy of it.
    const quant::Quantizer<quant::Uniform<4>> quantizer;
    const Matrix copy = m.topRows(4);
    CHECK(quantizer.quantize(m.topRows(4)).dequantize() == quantizer.quantize(copy).dequantize());
}

TEST_CASE("to_eigen maps a view (strides included) without copying", "[core][views][eigen]") {
    std::vector<float> data = iota(40);
    const MatrixView<float> v(data.data(), 4, 3, 10, 2);
    auto e = to_eigen(v);
    CHECK(e.data() == data.data());
    CHECK(e(3, 2) == 34.0f);
    e(1, 1) = -7.0f;
    CHECK(data[12] == -7.0f);
    const auto et = to_eigen(v.transposed());
    CHECK(&et(2, 3) == &data[34]);
    CHECK(et.sum() == e.sum());
    // Linear algebra on the map equals the same on a copy.
    const Matrix copy = e;
    CHECK((to_eigen(MatrixView<const float>(v)) * Eigen::Vector3f(1, 2, 3)).isApprox(copy * Eigen::Vector3f(1, 2, 3)));
    const VectorView<float> column = v.col(2);
    auto ec = to_eigen(column);
    CHECK(&ec(3) == &data[34]);
}

TEST_CASE("raw pointer + shape, and its errors", "[core][views]") {
    std::vector<float> data = iota(6);
    const auto v = make_matrix_view(data.data(), 2, 3);
    CHECK(&v(1, 2) == &data[5]);
    const auto c = make_matrix_view(data.data(), 2, 3, Layout::col_major);
    CHECK(&c(1, 2) == &data[5]);
    CHECK(&c(0, 1) == &data[2]);
    float* null = nullptr;
    CHECK_THROWS_AS(make_matrix_view(null, 2, 3), Error);
    CHECK_THROWS_WITH(make_matrix_view(null, 2, 3), Catch::Contains("matrix data pointer is null for a 2 x 3 matrix"));
    CHECK_THROWS_WITH(make_matrix_view(data.data(), -1, 3), Catch::Contains("matrix shape must be non-negative, got -1 x 3"));
    CHECK(make_matrix_view(null, 0, 3).empty());
}

TEST_CASE("a user's tensor type opts in through view_traits and quantizes directly", "[core][views]") {
    user::Tensor2D t{iota(64), 2, 32};
    STATIC_REQUIRE(MatrixViewable<user::Tensor2D>);
    const auto v = as_matrix_view(t);
    CHECK(v.data() == t.storage.data());
    CHECK(v(1, 0) == 32.0f);
    const quant::QuantizedMatrix q = quant::Quantizer<quant::Uniform<8>>().quantize(t);
    const Matrix same = Eigen::Map<const Matrix>(t.storage.data(), 2, 32);
    CHECK(q.dequantize() == quant::Quantizer<quant::Uniform<8>>().quantize(same).dequantize());
}

TEST_CASE("shape and content checks name the argument", "[core][views]") {
    std::vector<float> data = iota(6);
    const auto v = make_matrix_view<const float>(data.data(), 2, 3);
    CHECK_NOTHROW(require_shape(v, 2, 3, "bias"));
    CHECK_THROWS_WITH(require_shape(v, 3, 2, "bias"), Catch::Contains("bias must be 3 x 2, got 2 x 3"));
    CHECK_THROWS_WITH(require_non_empty(MatrixView<const float>(), "activations"), Catch::Contains("activations is empty (0 x 0)"));
    data[4] = std::numeric_limits<float>::infinity();
    CHECK_THROWS_WITH(require_finite(v, "x"), Catch::Contains("x holds a non-finite value (inf) at (1, 1)"));
}

}  // namespace npft_test
