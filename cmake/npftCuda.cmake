# CUDA part of the build (included by the top-level CMakeLists.txt when nvcc is found): the compiled kernel
# instantiations with their ptxas resource check, and bench_cuda. The GPU tests live in tests/cuda/.
if(NOT CMAKE_CUDA_ARCHITECTURES)
  # Ampere (A100, A10/A40/RTX 30), Ada (L4, L40, RTX 40) and Hopper (H100): cp.async and bf16 mma need sm_80+.
  set(CMAKE_CUDA_ARCHITECTURES 80 86 89 90)
endif()
enable_language(CUDA)
find_package(CUDAToolkit REQUIRED)

# Register budgets per kernel family (docs/cuda.md): above them occupancy drops below the design point
# (gemm_mma: 256 threads, 2 blocks per SM; gemv and spmv: 256 threads, 4 blocks per SM).
set(NPFT_CUDA_GEMM_REGISTER_BUDGET 128)
set(NPFT_CUDA_GEMV_REGISTER_BUDGET 64)
set(NPFT_CUDA_OTHER_REGISTER_BUDGET 64)

# CMake 3.25 does not know C++20 for nvcc 13, so the standard is passed directly. Eigen (pulled in by the reference
# QuantizedMatrix in the GPU tests) triggers nvcc notes about host/device annotations on defaulted functions: silenced.
add_library(npft_cuda_options INTERFACE)
target_compile_options(npft_cuda_options INTERFACE
  $<$<COMPILE_LANGUAGE:CUDA>:-std=c++20 --diag-suppress=20012,20013,20015 -Xcompiler=-Wall,-Wextra>)
target_link_libraries(npft_cuda_options INTERFACE npft::npft CUDA::cudart CUDA::cublas)

# The kernels, compiled once for every architecture and linked by the tests and the benchmark.
add_library(npft_cuda_kernels STATIC ${PROJECT_SOURCE_DIR}/tests/cuda/cuda_kernels.cu)
add_library(npft::cuda_kernels ALIAS npft_cuda_kernels)
target_link_libraries(npft_cuda_kernels PUBLIC npft_cuda_options)
target_compile_options(npft_cuda_kernels PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-Xptxas=-v>)
target_compile_definitions(npft_cuda_kernels INTERFACE NPFT_CUDA_PRECOMPILED_KERNELS)
set(NPFT_PTXAS_REPORT ${PROJECT_BINARY_DIR}/ptxas_report.txt)
set_target_properties(npft_cuda_kernels PROPERTIES
  POSITION_INDEPENDENT_CODE ON
  CUDA_COMPILER_LAUNCHER "${CMAKE_COMMAND};-DREPORT=${NPFT_PTXAS_REPORT};-DGEMM_BUDGET=${NPFT_CUDA_GEMM_REGISTER_BUDGET};-DGEMV_BUDGET=${NPFT_CUDA_GEMV_REGISTER_BUDGET};-DOTHER_BUDGET=${NPFT_CUDA_OTHER_REGISTER_BUDGET};-P;${PROJECT_SOURCE_DIR}/tests/cuda/check_ptxas.cmake;--")

if(NPFT_BUILD_BENCHMARKS)
  find_package(benchmark REQUIRED)
  add_executable(bench_cuda ${PROJECT_SOURCE_DIR}/benchmarks/cuda/bench_cuda.cu)
  target_link_libraries(bench_cuda PRIVATE npft_cuda_kernels benchmark::benchmark)
endif()
