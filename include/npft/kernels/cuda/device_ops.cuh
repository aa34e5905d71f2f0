#pragma once
// Device-side building blocks: activation-type conversions, cp.async and mma.sync through inline PTX (sm_80+).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <concepts>
#include <cstdint>

#include "../../core/dtype.hpp"

namespace npft::cuda {

/// The activation types of the kernels: npft::half (fp16) and npft::bfloat16, 16-bit storage structs.
template <class T>
concept ActivationType = std::same_as<T, half> || std::same_as<T, bfloat16>;

/// Fast device conversions and the mma type suffix of an activation type.
template <ActivationType T>
struct Activation;

template <>
struct Activation<half> {
    static constexpr const char* name = "f16";
    __device__ static float to_float(std::uint16_t bits) { return __half2float(__ushort_as_half(bits)); }
    __device__ static std::uint16_t from_float(float value) { return __half_as_ushort(__float2half_rn(value)); }
};

template <>
struct Activation<bfloat16> {
    static constexpr const char* name = "bf16";
    __device__ static float to_float(std::uint16_t bits) { return __uint_as_float(static_cast<std::uint32_t>(bits) << 16); }
    __device__ static std::uint16_t from_float(float value) { return __bfloat16_as_ushort(__float2bfloat16_rn(value)); }
};

/// Asynchronous 16-byte global-to-shared copy; src_bytes = 0 zero-fills the destination (out-of-range rows).
__device__ inline void cp_async_16(void* shared, const void* global, int src_bytes) {
    const unsigned address = static_cast<unsigned>(__cvta_generic_to_shared(shared));
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(address), "l"(global), "r"(src_bytes));
}

__device__ inline void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }

/// Waits until at most `Pending` committed groups are still in flight.
template <int Pending>
__device__ inline void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(Pending));
}

/// D += A * B for one m16n8k16 tile: A 4 registers of f16x2/bf16x2, B 2 registers, D 4 fp32 (mma_*_coord give the layout).
template <ActivationType T>
__device__ inline void mma_m16n8k16(float (&d)[4], const std::uint32_t (&a)[4], const std::uint32_t (&b)[2]) {
    if constexpr (std::same_as<T, half>) {
        asm volatile(
            "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
    } else {
        asm volatile(
            "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
    }
}

}  // namespace npft::cuda
