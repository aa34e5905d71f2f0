#pragma once
// The int8-activation path (the default of MultiplyOptions; Activations::fp32 opts out; as llama.cpp does): activations are quantized once per call to int8 in blocks of
// 32 with one fp32 scale per block, and the weight dot products run in integers (vpmaddubsw: 32 products per
// instruction instead of 8 FMAs). This is what reaches the memory-bandwidth limit at batch 1 on AVX2: the fp32 path
// spends about 13 instructions per 8 weights on decoding and converting, which makes it compute-bound.
//
// Formats: uniform 2, 3 and 4 bit (symmetric or asymmetric) with group sizes that are multiples of 32, and LUT 3 and
// 4 bit; uniform 8 bit too from int8_gemm_min_batch tokens on (the GEMMs only: int8_gemm_covers; smaller batches of
// 8-bit weights run the fp32 kernels). Every other matrix runs the fp32 kernels. The kernel computes W x_hat exactly up to fp32 rounding, where
// x_hat is the dequantized int8 activation: the only accuracy cost is that of x_hat (each activation moves by up to
// half its block's step, max|x| / 254; docs/benchmarks.md gives the measured error) and, for LUT rows, the table held
// in 12-bit fixed point (each level moves by at most max|level| / 4094, about fp16's own rounding of the largest level).
//
// Layout. The kernel works on chunks of 64 codes (two blocks of 32). A chunk's codes are decoded into two vectors of 32
// unsigned bytes without any cross-lane shuffle, in an order that depends on the bit width; the activations are
// stored in that same order (int8_stored_at), so the products pair up with no shuffling at all. The low 128-bit lane
// of both vectors always holds the first block and the high lane the second, so the int32 partial sums keep the two
// blocks apart (each has its own activation scale and possibly its own weight group).
//
// The path is split by job: int8_activation_quantization.hpp (activations to int8), int8_weight_decoding.hpp (codes to
// bytes), int8_dot_products.hpp (integer dot products and their accumulation), int8_dispatch.hpp (rows and formats).
//
// Kernels, by CPU and batch (multiply.hpp picks): batches of 8+ take a GEMM (int8_gemm.hpp on AVX-512 VNNI, else
// int8_gemm_256.hpp with AVX-VNNI or AVX2; every format above, the LUT rows with the same 12-bit tables); smaller
// batches of uniform 3 and 4-bit formats on AVX-512 VBMI + VNNI take int8_vbmi.hpp (vpermb + vpmultishiftqb decode 64
// codes in three instructions, vpdpbusd multiplies; the same bits as the AVX2 kernel); everything else covered here takes the
// AVX2 kernel, whose 3-bit decoder reads the plane layout of bit_planes.hpp when the matrix is a PreparedMatrix (the
// storage layout puts 3-bit codes across byte boundaries; the planes give the same bits, decoded with shifts only).
#include "int8_activation_quantization.hpp"
#include "int8_dispatch.hpp"
#include "int8_dot_products.hpp"
#include "int8_weight_decoding.hpp"
