#!/usr/bin/env python3
"""Checks the implicit-GEMM conv3d kernel's index math without a GPU.

kernels/conv3d.cu (k_conv3d_igemm) packs the weights into [Co][(ci-chunk, tap, 32)] bf16, gathers
input values straight from x into a padded [32][136] shared tile (zero padding, tails), copies
weight chunks into a padded [BM][40] tile, loads mma fragments with ldmatrix (.trans for the
input tile), runs mma.sync m16n8k16 and writes y with the bias. A wrong index there shows only
on a GPU. This script replays, thread by thread and lane by lane, exactly those formulas (copied
from the kernel: keep them in sync) with the PTX ISA definitions of ldmatrix and of the mma
fragments (taken from emulate-attention-fragments.py, which checks the attention kernel), runs
whole blocks on small integer-valued problems and compares every output with a direct
convolution. It also checks that every output is written exactly once, that no shared-memory
access of the pipeline leaves its stage, that ldmatrix / cp.async addresses are 16-byte aligned,
and that the ldmatrix phases and the gather's 32-bit stores are free of bank conflicts.

Run: python3 tests/gpu/emulate-conv3d.py   (exit 0 = the kernel's layout agrees; ~10 s)"""
import importlib.util
import os
import random
import sys

_here = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("attn_emu", os.path.join(_here, "emulate-attention-fragments.py"))
_attn = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_attn)
ldmatrix_x4, mma = _attn.ldmatrix_x4, _attn.mma   # PTX ISA lane definitions

BN, BK = 128, 32
LDA, LDB = BK + 8, BN + 8
OUTSIDE = -(1 << 30)


def u32(v):
    return v & 0xffffffff


class Smem:
    """Byte-addressed shared memory holding bf16 elements (None = never written)."""

    def __init__(self, nbytes):
        self.el = [None] * (nbytes // 2)
        self.nbytes = nbytes

    def idx(self, addr):
        assert addr % 2 == 0 and 0 <= addr < self.nbytes, addr
        return addr // 2


def run(name, B, Ci, T, H, W, Co, ks, st, pd, bias=True, seed=1, wide=False):
    rnd = random.Random(seed)
    kt, kh, kw = ks
    To = (T + 2 * pd[0] - kt) // st[0] + 1
    Ho = (H + 2 * pd[1] - kh) // st[1] + 1
    Wo = (W + 2 * pd[2] - kw) // st[2] + 1
    P, THW, taps = To * Ho * Wo, T * H * W, kt * kh * kw
    x = [rnd.randint(-3, 3) for _ in range(B * Ci * THW)]
    w = [rnd.randint(-2, 2) for _ in range(Co * Ci * taps)]
    bvec = [rnd.randint(-5, 5) for _ in range(Co)] if bias else None

    # host side (conv3d_igemm / launch_igemm)
    ncc = (Ci + BK - 1) // BK
    nk, Kp = ncc * taps, ncc * taps * BK
    MT = 1 if Co <= 32 else 2 if Co <= 64 else 4
    WN = 2 if wide and MT == 4 else 4
    THREADS, NT, GR = 64 * WN, BN // 8 // WN, BK // WN
    BM = 32 * MT
    nco = (Co + BM - 1) // BM
    npt = (P + BN - 1) // BN

    # k_conv_wpack
    wp = [0] * (Co * Kp)
    for i in range(Co * Kp):
        co, k = i // Kp, i % Kp
        chunk, r = k // BK, k % BK
        cc, tap = chunk // taps, chunk % taps
        ci = cc * BK + r
        wp[i] = w[(co * Ci + ci) * taps + tap] if ci < Ci else 0

    A_STAGE, B_STAGE = BM * LDA * 2, BK * LDB * 2
    A_LOADS = (BM * 4 + THREADS - 1) // THREADS
    NWARPS = THREADS // 32
    y = [None] * (B * Co * P)
    writes = [0] * (B * Co * P)
    errors = 0
    conflicts = 0

    for by in range(B):
        for bx in range(npt * nco):
            sm = Smem(2 * A_STAGE + 2 * B_STAGE)
            sA, sB = 0, 2 * A_STAGE
            co0 = (bx % nco) * BM
            p0 = (bx // nco) * BN
            b = by
            xb = b * Ci * THW
            th = []   # per-thread gather state
            for tid in range(THREADS):
                gn, kq = 2 * (tid & 63), tid >> 6
                bt, bh, bw = [0, 0], [0, 0], [0, 0]
                for e in range(2):
                    pos = p0 + gn + e
                    if pos < P:
                        ow = pos % Wo
                        r = pos // Wo
                        oh, ot = r % Ho, r // Ho
                        bt[e], bh[e], bw[e] = ot * st[0] - pd[0], oh * st[1] - pd[1], ow * st[2] - pd[2]
                    else:
                        bt[e] = bh[e] = bw[e] = OUTSIDE
                th.append(dict(gn=gn, kq=kq, bt=bt, bh=bh, bw=bw, sts=sB + (kq * LDB + gn) * 2, v=None))
            s4 = WN * THW

            def gather(t, ci0, dt, dh, dw):
                nci = Ci - ci0 - t["kq"]
                v = [[0] * GR, [0] * GR]
                for e in range(2):
                    it, ih, iw = t["bt"][e] + dt, t["bh"][e] + dh, t["bw"][e] + dw
                    ok = u32(it) < T and u32(ih) < H and u32(iw) < W
                    src = xb + (ci0 + t["kq"]) * THW + ((it * H + ih) * W + iw if ok else 0)
                    for j in range(GR):
                        if ok and WN * j < nci:
                            assert 0 <= src < len(x), "gather reads outside x"
                            v[e][j] = x[src]
                        src += s4
                t["v"] = v

            def store_b(stage):
                # one 32-bit store per j: low half v[0][j] (position gn), high half v[1][j] (gn+1)
                nonlocal conflicts
                for j in range(GR):
                    for w0 in range(0, THREADS, 32):
                        banks = set()
                        for tid in range(w0, w0 + 32):
                            t = th[tid]
                            a = t["sts"] + stage + j * WN * LDB * 2
                            assert a % 4 == 0 and sB + stage <= a < sB + stage + B_STAGE
                            sm.el[sm.idx(a)] = t["v"][0][j]
                            sm.el[sm.idx(a + 2)] = t["v"][1][j]
                            banks.add((a // 4) % 32)
                        conflicts += len(banks) != 32

            def load_a(stage, c):
                for tid in range(THREADS):
                    for l in range(A_LOADS):
                        i = tid + l * THREADS
                        r, ch = i >> 2, i & 3
                        co = co0 + r
                        if (BM * 4) % THREADS == 0 or i < BM * 4:
                            ok = co < Co
                            dst = sA + stage + (r * LDA + ch * 8) * 2
                            assert dst % 16 == 0 and sA + stage <= dst < sA + stage + A_STAGE
                            src = (co if ok else 0) * Kp + c * BK + ch * 8
                            for e in range(8):
                                sm.el[sm.idx(dst) + e] = wp[src + e] if ok else 0

            acc = {wp_: [[[0] * 4 for _ in range(32)] for _ in range(MT * NT)] for wp_ in range(NWARPS)}

            def ldm(addr_lanes, trans, lo, hi):
                nonlocal conflicts
                for a in addr_lanes:
                    assert a % 16 == 0 and lo <= a and a + 16 <= hi, (a, lo, hi)
                for i in range(4):   # one phase per 8x8 matrix
                    if len({(addr_lanes[8 * i + k] // 16) % 8 for k in range(8)}) != 8:
                        conflicts += 1
                return ldmatrix_x4(sm.el, [sm.idx(a) for a in addr_lanes], trans)

            gc = gdt = gdh = gdw = 0
            load_a(0, 0)
            for t in th:
                gather(t, 0, 0, 0, 0)
            store_b(0)
            for c in range(nk):
                s = c & 1
                more = c + 1 < nk
                if more:
                    gdw += 1
                    if gdw == kw:
                        gdw = 0
                        gdh += 1
                        if gdh == kh:
                            gdh = 0
                            gdt += 1
                            if gdt == kt:
                                gdt = 0
                                gc += 1
                    load_a((s ^ 1) * A_STAGE, c + 1)
                    for t in th:
                        gather(t, gc * BK, gdt, gdh, gdw)
                for warp in range(NWARPS):
                    wm, wn = warp // WN, warp % WN
                    lda = [sA + ((wm * 16 * MT + (l & 15)) * LDA + (l >> 4) * 8) * 2 for l in range(32)]
                    ldb = [sB + (((l & 7) + ((l >> 3) & 1) * 8) * LDB + wn * 8 * NT + (l >> 4) * 8) * 2 for l in range(32)]
                    la = [a + s * A_STAGE for a in lda]
                    lb = [a + s * B_STAGE for a in ldb]
                    for ks in range(BK // 16):
                        af = [ldm([a + (mt * 16 * LDA + ks * 16) * 2 for a in la], False,
                                  sA + s * A_STAGE, sA + (s + 1) * A_STAGE) for mt in range(MT)]
                        bf = [ldm([a + (ks * 16 * LDB + np_ * 16) * 2 for a in lb], True,
                                  sB + s * B_STAGE, sB + (s + 1) * B_STAGE) for np_ in range(NT // 2)]
                        for mt in range(MT):
                            for nt in range(NT):
                                mma(acc[warp][mt * NT + nt], af[mt],
                                    [bf[nt >> 1][l][(nt & 1) * 2] for l in range(32)],
                                    [bf[nt >> 1][l][(nt & 1) * 2 + 1] for l in range(32)])
                if more:
                    store_b((s ^ 1) * B_STAGE)

            # epilogue
            for warp in range(NWARPS):
                wm, wn = warp // WN, warp % WN
                for lane in range(32):
                    g, t4 = lane >> 2, lane & 3
                    for mt in range(MT):
                        for half in range(2):
                            co = co0 + wm * 16 * MT + mt * 16 + g + half * 8
                            if co >= Co:
                                continue
                            bv = bvec[co] if bias else 0
                            for nt in range(NT):
                                pos = p0 + wn * 8 * NT + nt * 8 + 2 * t4
                                a = acc[warp][mt * NT + nt][lane]
                                for e, pp in ((0, pos), (1, pos + 1)):
                                    if pp < P:
                                        k = (b * Co + co) * P + pp
                                        y[k] = a[half * 2 + e] + bv
                                        writes[k] += 1

    # reference: direct convolution with zero padding
    for b in range(B):
        for co in range(Co):
            for pp in range(P):
                ow, r = pp % Wo, pp // Wo
                oh, ot = r % Ho, r // Ho
                sacc = bvec[co] if bias else 0
                for ci in range(Ci):
                    for dt in range(kt):
                        for dh in range(kh):
                            for dw in range(kw):
                                t_, h_, w_ = ot * st[0] - pd[0] + dt, oh * st[1] - pd[1] + dh, ow * st[2] - pd[2] + dw
                                if 0 <= t_ < T and 0 <= h_ < H and 0 <= w_ < W:
                                    sacc += (w[((co * Ci + ci) * kt + dt) * kh * kw + dh * kw + dw] *
                                             x[((b * Ci + ci) * T + t_) * H * W + h_ * W + w_])
                k = (b * Co + co) * P + pp
                if y[k] != sacc or writes[k] != 1:
                    errors += 1
    print(f"{name}: MT={MT} WN={WN} blocks={npt * nco}x{B} chunks={nk}: "
          f"{'ok' if errors == 0 else f'{errors} wrong outputs'}, {conflicts} bank-conflicted accesses")
    return errors + conflicts


if __name__ == "__main__":
    bad = 0
    # 3x3x3 pad 1, odd T/H/W, Ci not a multiple of 32, Co tail (MT=2), P tail (165 = 128 + 37)
    bad += run("3x3x3 s1 p1 Ci40 Co40 [1,40,3,5,11]", 1, 40, 3, 5, 11, 40, (3, 3, 3), (1, 1, 1), (1, 1, 1))
    # 1x1x1, two co tiles with a tail (MT=4), B=2, P tail
    bad += run("1x1x1 Ci32 Co130 B2 [2,32,1,3,50]", 2, 32, 1, 3, 50, 130, (1, 1, 1), (1, 1, 1), (0, 0, 0))
    # stride (1,2,2), pad (0,1,1), tiny Ci (forced path), MT=1, no bias
    bad += run("3x3x3 s(1,2,2) p(0,1,1) Ci6 Co8", 1, 6, 4, 10, 12, 8, (3, 3, 3), (1, 2, 2), (0, 1, 1), bias=False)
    # stride 2 everywhere, pad 0 (the engine pads itself), MT=4 with a partial second warp row
    bad += run("3x3x3 s2 p0 Ci33 Co72", 1, 33, 5, 7, 9, 72, (3, 3, 3), (2, 2, 2), (0, 0, 0))
    # the wide variant (HV_CUDA_CONV=igemm-wide: 4 warps, 64-position warp tiles)
    bad += run("wide 3x3x3 s2 p0 Ci33 Co72", 1, 33, 5, 7, 9, 72, (3, 3, 3), (2, 2, 2), (0, 0, 0), wide=True)
    bad += run("wide 1x1x1 Ci32 Co130 B2", 2, 32, 1, 3, 50, 130, (1, 1, 1), (1, 1, 1), (0, 0, 0), wide=True)
    sys.exit(1 if bad else 0)
