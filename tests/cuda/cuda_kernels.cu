// The compiled instantiations of npft's CUDA kernels (library npft::cuda_kernels): built once for every target
// architecture with the ptxas resource report checked, then linked by the GPU tests and bench_cuda.
#include <npft/kernels/cuda/quantized_gemm.cuh>

namespace npft::cuda {
template void gemm<half>(const GemmArguments<half>&, cudaStream_t);
template void gemm<bfloat16>(const GemmArguments<bfloat16>&, cudaStream_t);
template void gemm<half>(const GemmArguments<half>&, DeviceBuffer<float>&, cudaStream_t);
template void gemm<bfloat16>(const GemmArguments<bfloat16>&, DeviceBuffer<float>&, cudaStream_t);
template void dense_sparse_gemm<half>(const GemmArguments<half>&, const DeviceSparseOutliers&, DeviceBuffer<float>&,
                                      cudaStream_t);
template void dense_sparse_gemm<bfloat16>(const GemmArguments<bfloat16>&, const DeviceSparseOutliers&, DeviceBuffer<float>&,
                                          cudaStream_t);
template void spmv_add<half>(const SparseView&, const half*, Index, Index, float*, cudaStream_t);
template void spmv_add<bfloat16>(const SparseView&, const bfloat16*, Index, Index, float*, cudaStream_t);
}  // namespace npft::cuda
