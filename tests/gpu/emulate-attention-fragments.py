#!/usr/bin/env python3
"""Checks the tensor-core attention kernel's data layout without a GPU.

kernels/attention.cu (k_flash_mma) moves data with cp.async into XOR-swizzled shared memory,
loads mma fragments with ldmatrix (.trans for V) and feeds the S accumulators back as the A
operand of P·V. A wrong index there gives wrong results only on a GPU. This script emulates,
lane by lane, exactly those address formulas (copied from the kernel) with the PTX ISA's
definitions of ldmatrix and of the m16n8k16 A/B/C fragments, and checks S = Q·Kᵀ and
O = P·V for one warp's 16 rows against plain matrix products. Integer-valued data, so any
misplaced element shows.

Run: python3 tests/gpu/emulate-attention-fragments.py   (exit 0 = layouts agree)
Keep the formulas below in sync with attention.cu when the kernel changes."""
import random
import sys


def swz(D, row, chunk):
    nch = D // 8
    mask = (nch if nch < 8 else 8) - 1
    return row * D + ((chunk ^ (row & mask)) << 3)


def ldmatrix_x4(smem, addr, trans):
    """addr[lane] = element offset of the 8-element row that lane provides (lanes 8i..8i+7:
    rows 0..7 of matrix i). Returns regs[lane][i] = (lo, hi) per the PTX ISA."""
    regs = [[None] * 4 for _ in range(32)]
    for lane in range(32):
        g, t = lane // 4, lane % 4
        for i in range(4):
            if not trans:   # row g, cols 2t, 2t+1
                base = addr[8 * i + g]
                regs[lane][i] = (smem[base + 2 * t], smem[base + 2 * t + 1])
            else:           # rows 2t, 2t+1 at col g
                regs[lane][i] = (smem[addr[8 * i + 2 * t] + g], smem[addr[8 * i + 2 * t + 1] + g])
    return regs


def mma(c, a, b0, b1):
    """c[lane] 4 floats, a[lane] 4 pairs, b0/b1[lane] pairs: m16n8k16 row.col (PTX layouts)."""
    A = [[0] * 16 for _ in range(16)]
    B = [[0] * 8 for _ in range(16)]
    for lane in range(32):
        g, t = lane // 4, lane % 4
        for r, (row, col) in enumerate([(g, 2 * t), (g + 8, 2 * t), (g, 2 * t + 8), (g + 8, 2 * t + 8)]):
            A[row][col], A[row][col + 1] = a[lane][r]
        B[2 * t][g], B[2 * t + 1][g] = b0[lane]
        B[2 * t + 8][g], B[2 * t + 9][g] = b1[lane]
    for lane in range(32):
        g, t = lane // 4, lane % 4
        for e, (row, col) in enumerate([(g, 2 * t), (g, 2 * t + 1), (g + 8, 2 * t), (g + 8, 2 * t + 1)]):
            c[lane][e] += sum(A[row][k] * B[k][col] for k in range(16))


def check(D, BR=64, BC=64, warp=1):
    rnd = random.Random(D)
    Q = [[rnd.randint(-3, 3) for _ in range(D)] for _ in range(BR)]
    K = [[rnd.randint(-3, 3) for _ in range(D)] for _ in range(BC)]
    V = [[rnd.randint(-3, 3) for _ in range(D)] for _ in range(BC)]
    nch = D // 8
    Qs, Ks, Vs = [None] * (BR * D), [None] * (BC * D), [None] * (BC * D)
    for r in range(BR):           # cp.async: 16-byte chunk c of row r -> swz(r, c)
        for c in range(nch):
            for e in range(8):
                Qs[swz(D, r, c) + e] = Q[r][c * 8 + e]
    for r in range(BC):
        for c in range(nch):
            for e in range(8):
                Ks[swz(D, r, c) + e] = K[r][c * 8 + e]
                Vs[swz(D, r, c) + e] = V[r][c * 8 + e]

    # Q fragments: ldmatrix_x4 (qf[kc], &Qs[swz (warp*16 + (lane & 15), kc*2 + (lane >> 4))])
    qf = [ldmatrix_x4(Qs, [swz(D, warp * 16 + (l & 15), kc * 2 + (l >> 4)) for l in range(32)], False)
          for kc in range(D // 16)]
    s = [[[0] * 4 for _ in range(32)] for _ in range(BC // 8)]
    for kc in range(D // 16):
        for pp in range(BC // 16):
            kb = ldmatrix_x4(Ks, [swz(D, pp * 16 + (l & 7) + ((l >> 4) << 3), kc * 2 + ((l >> 3) & 1))
                                  for l in range(32)], False)
            mma(s[2 * pp], qf[kc], [kb[l][0] for l in range(32)], [kb[l][1] for l in range(32)])
            mma(s[2 * pp + 1], qf[kc], [kb[l][2] for l in range(32)], [kb[l][3] for l in range(32)])
    errors = 0
    for lane in range(32):
        g, t = lane // 4, lane % 4
        for j in range(BC // 8):
            for e, (row, col) in enumerate([(g, 2 * t), (g, 2 * t + 1), (g + 8, 2 * t), (g + 8, 2 * t + 1)]):
                want = sum(Q[warp * 16 + row][d] * K[j * 8 + col][d] for d in range(D))
                if s[j][lane][e] != want:
                    errors += 1
    # P = S (any values do for a layout check); O += P·V with P from the accumulators
    o = [[[0] * 4 for _ in range(32)] for _ in range(D // 8)]
    for kk in range(BC // 16):
        pa = [[(s[2 * kk][l][0], s[2 * kk][l][1]), (s[2 * kk][l][2], s[2 * kk][l][3]),
               (s[2 * kk + 1][l][0], s[2 * kk + 1][l][1]), (s[2 * kk + 1][l][2], s[2 * kk + 1][l][3])]
              for l in range(32)]
        for dp in range(D // 16):
            vb = ldmatrix_x4(Vs, [swz(D, kk * 16 + (l & 7) + (((l >> 3) & 1) << 3), dp * 2 + (l >> 4))
                                  for l in range(32)], True)
            mma(o[2 * dp], pa, [vb[l][0] for l in range(32)], [vb[l][1] for l in range(32)])
            mma(o[2 * dp + 1], pa, [vb[l][2] for l in range(32)], [vb[l][3] for l in range(32)])
    S = [[sum(Q[warp * 16 + r][d] * K[c][d] for d in range(D)) for c in range(BC)] for r in range(16)]
    for lane in range(32):
        g, t = lane // 4, lane % 4
        for j in range(D // 8):   # stored at d = j*8 + 2t (+1), rows g and g+8
            for e, (row, col) in enumerate([(g, 2 * t), (g, 2 * t + 1), (g + 8, 2 * t), (g + 8, 2 * t + 1)]):
                want = sum(S[row][c] * V[c][j * 8 + col] for c in range(BC))
                if o[j][lane][e] != want:
                    errors += 1
    # swizzle is a bijection within each row (no two chunks collide)
    for r in range(max(BR, BC)):
        if sorted(swz(D, r, c) for c in range(nch)) != [r * D + 8 * c for c in range(nch)]:
            errors += 1
    print(f"D={D}: {'ok' if errors == 0 else f'{errors} mismatches'}")
    return errors


if __name__ == "__main__":
    bad = sum(check(D) for D in (32, 64, 128))
    sys.exit(1 if bad else 0)
