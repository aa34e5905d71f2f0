#pragma once
// cuBLAS fp16 GEMM: the dense baseline every quantized kernel is measured against.
#include <cublas_v2.h>

#include <utility>

#include "../../core/config.hpp"
#include "../../core/dtype.hpp"
#include "../../core/error.hpp"

namespace npft::cuda {

inline void check_cublas(cublasStatus_t status, const char* what) {
    if (status != CUBLAS_STATUS_SUCCESS) fail(what, ": ", cublasGetStatusString(status), " (", static_cast<int>(status), ")");
}

/// An owned cuBLAS handle.
class CublasHandle {
public:
    CublasHandle() { check_cublas(cublasCreate(&handle_), "cublasCreate"); }
    ~CublasHandle() {
        if (handle_ != nullptr) (void)cublasDestroy(handle_);
    }
    CublasHandle(const CublasHandle&) = delete;
    CublasHandle& operator=(const CublasHandle&) = delete;
    CublasHandle(CublasHandle&& other) noexcept : handle_(std::exchange(other.handle_, nullptr)) {}
    CublasHandle& operator=(CublasHandle&& other) noexcept {
        std::swap(handle_, other.handle_);
        return *this;
    }

    cublasHandle_t get() const { return handle_; }
    void set_stream(cudaStream_t stream) { check_cublas(cublasSetStream(handle_, stream), "cublasSetStream"); }

private:
    cublasHandle_t handle_ = nullptr;
};

/// Y[m][n] = X[m][k] * W[n][k]^T, all row major fp16, fp32 accumulation: the layout of the quantized kernels.
/// cuBLAS is column major, so it computes Y^T (n x m) = W (as k x n, transposed) * X^T (k x m).
inline void cublas_gemm_fp16(const CublasHandle& handle, const half* x, const half* w, half* y, Index m, Index n, Index k) {
    require(m > 0 && n > 0 && k > 0, "cublas_gemm_fp16: shape must be positive, got m=", m, " n=", n, " k=", k);
    const float alpha = 1.0f, beta = 0.0f;
    check_cublas(cublasGemmEx(handle.get(), CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(n), static_cast<int>(m),
                              static_cast<int>(k), &alpha, w, CUDA_R_16F, static_cast<int>(k), x, CUDA_R_16F,
                              static_cast<int>(k), &beta, y, CUDA_R_16F, static_cast<int>(n), CUBLAS_COMPUTE_32F,
                              CUBLAS_GEMM_DEFAULT),
                 "cublasGemmEx");
}

}  // namespace npft::cuda
