/* wgmma.cuh — Hopper (sm_90a) building blocks shared by the warpgroup-MMA kernels
 * (attention-wgmma.cu, attention-wgmma-ws.cu, conv3d-wgmma.cu): shared-memory matrix
 * descriptors, wgmma issue/fence/commit/wait, cp.async on 32-bit shared addresses.
 *
 * Everything here exists only in the sm_90a device pass: an sm_80 pass of the same files
 * compiles their kernels to a trap. The layouts these encode are replayed against the PTX ISA
 * definitions by tests/gpu/emulate-wgmma.py (descriptor, 128-byte swizzle, fragment layouts). */
#pragma once
#include "cuda-common.cuh"

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
namespace hv_wg {

/* Matrix descriptor of a K-major operand with 128-byte swizzle at shared address a (PTX ISA,
 * "Matrix Descriptor Format"): start >> 4 in bits 0-13, LBO 1 (unused for swizzled K-major
 * layouts, as CUTLASS sets it), SBO = 1024 bytes between 8-row groups (>> 4, bits 32-45), base
 * offset 0 (every 8-row atom starts on a 1024-byte boundary), swizzle mode 1 = 128 B (62-63). */
__device__ __forceinline__ uint64_t
desc_sw128 (uint32_t a)
{
  return (uint64_t) ((a & 0x3FFFFu) >> 4) | ((uint64_t) 1 << 16) | ((uint64_t) (1024 >> 4) << 32)
       | ((uint64_t) 1 << 62);
}

__device__ __forceinline__ float
ex2 (float x)
{
  float y;
  asm ("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

/* Ordinary (or cp.async) shared-memory writes become visible to the async proxy (wgmma, TMA):
 * each writing thread fences, then the barrier. */
__device__ __forceinline__ void
fence_proxy_async ()
{
  asm volatile ("fence.proxy.async.shared::cta;\n" ::: "memory");
}

/* 16-byte cp.async to a 32-bit shared address; src_bytes 0 zero-fills. .cg bypasses L1,
 * .ca keeps the line in L1 (for data re-read by the next copies). */
__device__ __forceinline__ void
cp_async16_s (uint32_t saddr, const void *gmem, int src_bytes)
{
  asm volatile ("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" :: "r"(saddr), "l"(gmem), "r"(src_bytes));
}

__device__ __forceinline__ void
cp_async16_ca (uint32_t saddr, const void *gmem, int src_bytes)
{
  asm volatile ("cp.async.ca.shared.global [%0], [%1], 16, %2;\n" :: "r"(saddr), "l"(gmem), "r"(src_bytes));
}

__device__ __forceinline__ void
cp_commit ()
{
  asm volatile ("cp.async.commit_group;\n" ::: "memory");
}

template <int N>
__device__ __forceinline__ void
cp_wait ()
{
  asm volatile ("cp.async.wait_group %0;\n" :: "n"(N) : "memory");
}

__device__ __forceinline__ void
wg_fence ()
{
  asm volatile ("wgmma.fence.sync.aligned;\n" ::: "memory");
}

__device__ __forceinline__ void
wg_commit ()
{
  asm volatile ("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}

template <int N>
__device__ __forceinline__ void
wg_wait ()
{
  asm volatile ("wgmma.wait_group.sync.aligned %0;\n" :: "n"(N) : "memory");
}

/* Tells the compiler the registers are (re)defined here, so that no access to them moves
 * across the wgmma wait before it (the tensor core writes them asynchronously). */
template <int N>
__device__ __forceinline__ void
fence_regs (float (&d)[N])
{
#pragma unroll
  for (int i = 0; i < N; i++)
    asm volatile ("" : "+f"(d[i]) :: "memory");
}

__device__ __forceinline__ void
fence_regs (uint32_t (&a)[8][4])
{
#pragma unroll
  for (int i = 0; i < 8; i++)
#pragma unroll
    for (int e = 0; e < 4; e++)
      asm volatile ("" : "+r"(a[i][e]) :: "memory");
}

#define HV_WG_F8(d, o) "+f"(d[o]), "+f"(d[o + 1]), "+f"(d[o + 2]), "+f"(d[o + 3]), \
    "+f"(d[o + 4]), "+f"(d[o + 5]), "+f"(d[o + 6]), "+f"(d[o + 7])
#define HV_WG_ACC64(d, o) HV_WG_F8 (d, o), HV_WG_F8 (d, o + 8), HV_WG_F8 (d, o + 16), \
    HV_WG_F8 (d, o + 24), HV_WG_F8 (d, o + 32), HV_WG_F8 (d, o + 40), HV_WG_F8 (d, o + 48), \
    HV_WG_F8 (d, o + 56)

/* d (64×128 f32) = (scale_d ? d : 0) + A (64×16 bf16, descriptor) · B (16×128 bf16,
 * descriptor), both K-major (no transposes). */
__device__ __forceinline__ void
wgmma_ss (float (&d)[64], uint64_t da, uint64_t db, int scale_d)
{
  asm volatile ("{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
                "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
                "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, %64, %65, p, 1, 1, 0, 0;\n}\n"
                : HV_WG_ACC64 (d, 0)
                : "l"(da), "l"(db), "r"(scale_d));
}

/* d (64×128 f32) += A (64×16 bf16 in registers, 4 × bf16x2 per thread: the mma.sync A-fragment
 * layout per warp) · B (16×128 bf16, descriptor). */
__device__ __forceinline__ void
wgmma_rs (float (&d)[64], const uint32_t (&a)[4], uint64_t db)
{
  asm volatile ("{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
                "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
                "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, {%64, %65, %66, %67}, %68, p, 1, 1, 0;\n}\n"
                : HV_WG_ACC64 (d, 0)
                : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(1));
}

/* d (64×256 f32) += A (64×16 bf16, descriptor) · B (16×256 bf16, descriptor), both K-major. */
__device__ __forceinline__ void
wgmma_ss256 (float (&d)[128], uint64_t da, uint64_t db)
{
  asm volatile ("{\n.reg .pred p;\nsetp.ne.b32 p, %130, 0;\n"
                "wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16 {"
                "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
                "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
                "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
                "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, "
                "%64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, "
                "%80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, "
                "%96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, "
                "%112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127"
                "}, %128, %129, p, 1, 1, 0, 0;\n}\n"
                : HV_WG_ACC64 (d, 0), HV_WG_ACC64 (d, 64)
                : "l"(da), "l"(db), "r"(1));
}

/* d += A · B for a 64×128 (d[64]) or 64×256 (d[128]) accumulator. */
__device__ __forceinline__ void
wgmma_acc (float (&d)[64], uint64_t da, uint64_t db)
{
  wgmma_ss (d, da, db, 1);
}

__device__ __forceinline__ void
wgmma_acc (float (&d)[128], uint64_t da, uint64_t db)
{
  wgmma_ss256 (d, da, db);
}

} /* namespace hv_wg */
#endif
