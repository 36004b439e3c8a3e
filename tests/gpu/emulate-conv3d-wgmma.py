#!/usr/bin/env python3
"""Checks the Hopper conv3d kernel (kernels/conv3d-wgmma.cu, k_conv3d_wgmma) without a GPU.

The kernel converts x (f32 NCTHW) to a channels-last bf16 copy (k_conv_to_cl), packs the weights
into 64-channel K chunks (k_conv_wpack64), copies each chunk's weight rows and input position
rows with cp.async into 128-byte-swizzled K-major shared tiles, multiplies them with wgmma
m64nNk16 through matrix descriptors, and writes y from the accumulator fragments. A wrong bit
or index shows only on an H100/H200. This script replays, thread by thread, exactly the
kernel's formulas (copied below from the .cu file: keep them in sync):
  - the pre-pass's and the packing kernel's thread mappings (every element written once),
  - every cp.async: source element (bounds, 16-byte alignment, zero fill for invalid taps and
    positions past P), swizzled destination (alignment, stage bounds), per warp: 128-byte
    global lines whole (coalesced) and the 8-lane phases free of shared-memory bank conflicts,
  - the descriptors of every k-step, decoded as the PTX ISA defines them (the definitions of
    tests/gpu/emulate-wgmma.py: 9.7.15.5.1.2 layout with the 128-byte swizzle, 9.7.15.5.1.2.2
    descriptor bits), and the wgmma product (D += A·B over the operands those addresses hold),
  - the accumulator fragment layout (9.7.15.5.1.1.1, d_pos of emulate-wgmma.py) and the epilogue
    (bias, pair stores only where 8-byte aligned, every output written exactly once),
  - the pipeline's stage/barrier order: a copy may only target a stage whose wgmmas every
    warpgroup waited for before the current barrier phase; a wgmma may only read a stage whose
    copy group every thread waited for and fenced (fence.proxy.async) before the current phase;
    and every shared element a wgmma reads was written for that very chunk,
against a direct convolution (integers: exact). Pure Python, no numpy; ~10 s.

Run: python3 tests/gpu/emulate-conv3d-wgmma.py   (exit 0 = the kernel's layouts and order agree)"""
import importlib.util
import os
import random
import sys

_here = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("wg_emu", os.path.join(_here, "emulate-wgmma.py"))
_wg = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_wg)
isa_operand_addr, isa_decode_desc, isa_d_pos = _wg.operand_addr, _wg.decode_desc, _wg.d_pos

# ---- constants and formulas of conv3d-wgmma.cu ------------------------------------------------
CW_BK = 64
OUTSIDE = -(1 << 30)


def u32(v):
    return v & 0xFFFFFFFF


def cw_desc(a):
    return ((a & 0x3FFFF) >> 4) | (1 << 16) | ((1024 >> 4) << 32) | (1 << 62)


# ---- the hardware ------------------------------------------------------------------------------
def operand_rows(desc, nrows):
    """addr[row][k] of a K-major bf16 operand (row < nrows, k < 16) per 9.7.15.5.1.2: the
    same function as emulate-wgmma.py's operand_addr (checked against it below), decoded once
    per descriptor for speed."""
    start, lbo, sbo, base_off, swz = isa_decode_desc(desc)
    assert swz == 1 and base_off == 0 and sbo == 1024
    assert (start % 128) + 2 * 15 < 128, "k-step crosses the 128-byte swizzle row"
    out = []
    for row in range(nrows):
        r0 = start + (row // 8) * sbo + (row % 8) * 128
        out.append([(lin ^ (((lin >> 7) & 7) << 4)) for lin in (r0 + 2 * k for k in range(16))])
    return out


SLOT = 48   # bits per packed accumulator column (|values| << 2^47)


def pack_cols(vals):
    v = 0
    for n in reversed(range(len(vals))):
        v = (v << SLOT) + vals[n]
    return v


def unpack_cols(v, n):
    out = []
    half, mask = 1 << (SLOT - 1), (1 << SLOT) - 1
    for _ in range(n):
        x = v & mask
        if x >= half:
            x -= 1 << SLOT
        out.append(x)
        v = (v - x) >> SLOT
    assert v == 0
    return out


class Smem:
    """bf16 elements of shared memory: value and the chunk it was copied for (None = never)."""

    def __init__(self, nbytes):
        self.val = [None] * (nbytes // 2)
        self.tag = [None] * (nbytes // 2)
        self.nbytes = nbytes


# ---- one problem ---------------------------------------------------------------------------------
def run(name, B, Ci, T, H, W, Co, ks, st, pd, stages, bias=True, seed=1, raw=0x50):
    rnd = random.Random(seed)
    kt, kh, kw = ks
    To = (T + 2 * pd[0] - kt) // st[0] + 1
    Ho = (H + 2 * pd[1] - kh) // st[1] + 1
    Wo = (W + 2 * pd[2] - kw) // st[2] + 1
    P, THW, taps = To * Ho * Wo, T * H * W, kt * kh * kw
    x = [rnd.randint(-3, 3) for _ in range(B * Ci * THW)]
    w = [rnd.randint(-2, 2) for _ in range(Co * Ci * taps)]
    bvec = [rnd.randint(-5, 5) for _ in range(Co)] if bias else None
    errors = 0

    # host side (wgmma_conv3d)
    nwg = 1 if Co <= 64 else 2
    bm = 64 * nwg
    Cp = (Ci + CW_BK - 1) // CW_BK * CW_BK
    nco = (Co + bm - 1) // bm
    Cop = nco * bm
    nk, Kp = Cp // CW_BK * taps, Cp * taps
    assert all(k <= 10 for k in ks)

    # k_conv_wpack64
    n = Cop * Kp
    wp = [None] * n
    for i in range(n):
        co, k = i // Kp, i % Kp
        chunk, r = k // CW_BK, k % CW_BK
        cc, tap = chunk // taps, chunk % taps
        ci = cc * CW_BK + r
        wp[i] = w[(co * Ci + ci) * taps + tap] if ci < Ci and co < Co else 0

    # kernel constants
    NTHR, BM, BN = 128 * nwg, 64 * nwg, 128 * nwg
    NA = BN // 2
    A_BYTES, B_BYTES = BM * 128, BN * 128
    STAGE_BYTES = A_BYTES + B_BYTES
    RSTEP = NTHR // 8
    BROWS, AROWS = BN // RSTEP, BM // RSTEP
    assert RSTEP % 8 == 0
    smem_bytes = stages * STAGE_BYTES + 1024   # cw_smem_bytes
    npt = (P + BN - 1) // BN
    y = [None] * (B * Co * P)
    writes = [0] * (B * Co * P)
    bad_bank = bad_coal = 0

    for b in range(B):
        # k_conv_to_cl: grid ((THW + 63) / 64, Cp / 64), 256 threads, tile[64][65]
        xc = [None] * (THW * Cp)
        xb = b * Ci * THW
        for bx in range((THW + 63) // 64):
            for by in range(Cp // 64):
                pos0, c0 = bx * 64, by * 64
                tile = [[None] * 65 for _ in range(64)]
                for t in range(256):
                    tx, ty = t & 63, t >> 6
                    for r in range(ty, 64, 4):
                        ci, pos = c0 + r, pos0 + tx
                        tile[r][tx] = x[xb + ci * THW + pos] if ci < Ci and pos < THW else 0
                for t in range(256):
                    for i in range(t, 64 * 32, 256):
                        pp, cp = i >> 5, i & 31
                        pos = pos0 + pp
                        if pos < THW:
                            k = pos * Cp + c0 + 2 * cp
                            assert k % 2 == 0 and xc[k] is None and xc[k + 1] is None, "pre-pass writes twice"
                            xc[k], xc[k + 1] = tile[2 * cp][pp], tile[2 * cp + 1][pp]
        assert None not in xc, "pre-pass left an element unwritten"

        yb = b * Co * P   # p.y = y + b·Co·P
        for blk in range(npt * nco):
            sm = Smem(raw + smem_bytes)
            base = (raw + 1023) & ~1023
            assert base + stages * STAGE_BYTES <= raw + smem_bytes
            co0 = (blk % nco) * BM
            p0 = (blk // nco) * BN

            # per-thread copy roles
            th = []
            for tid in range(NTHR):
                q, r0 = tid & 7, tid >> 3
                dst0 = r0 * 128 + ((q ^ (r0 & 7)) << 4)
                vmask, vbase = [], []
                for j in range(BROWS):
                    pos = p0 + r0 + j * RSTEP
                    bt = bh = bw = OUTSIDE
                    if pos < P:
                        ow = pos % Wo
                        r = pos // Wo
                        bt = (r // Ho) * st[0] - pd[0]
                        bh = (r % Ho) * st[1] - pd[1]
                        bw = ow * st[2] - pd[2]
                    m = 0
                    for d in range(kt):
                        m |= (1 if u32(bt + d) < T else 0) << d
                    for d in range(kh):
                        m |= (1 if u32(bh + d) < H else 0) << (10 + d)
                    for d in range(kw):
                        m |= (1 if u32(bw + d) < W else 0) << (20 + d)
                    vmask.append(m)
                    vbase.append(u32((u32(u32(bt) * u32(H)) + u32(bh)) * u32(W) + u32(bw)))
                th.append(dict(dst0=dst0, vmask=vmask, vbase=vbase,
                               wrow=(co0 + r0) * Kp + q * 8, xq=q * 8))

            # ---- pipeline bookkeeping (all threads run the same sequence: one state) ----
            st_ = dict(phase=0, committed=0, open=[], group_of={}, completed={}, fenced={},
                       wg_groups=[[] for _ in range(nwg)])
            stage_writes = {}    # stage -> set of copy group ids that wrote it
            stage_reads = {}     # stage -> list of (wg, wgmma group index)

            def cp_async(tid, dst, arr, src, nbytes, chunk, stage, kind):
                assert nbytes in (0, 16)
                assert dst % 16 == 0, "cp.async destination not 16-byte aligned"
                lo = base + stage * STAGE_BYTES + (0 if kind == "A" else A_BYTES)
                hi = lo + (A_BYTES if kind == "A" else B_BYTES)
                assert lo <= dst and dst + 16 <= hi, "cp.async leaves its stage tile"
                if nbytes:
                    assert src % 8 == 0, "cp.async source not 16-byte aligned"
                    assert 0 <= src and src + 8 <= len(arr), "cp.async reads outside its array"
                # hazard: no wgmma that may read this stage is still unfinished
                for (wgi, gi) in stage_reads.get(stage, []):
                    done = st_["wg_groups"][wgi][gi][1]
                    assert done is not None and done < st_["phase"], \
                        "copy into stage %d while warpgroup %d may still read it" % (stage, wgi)
                e = dst // 2
                for i in range(8):
                    sm.val[e + i] = arr[src + i] if nbytes else 0
                    sm.tag[e + i] = chunk
                stage_writes.setdefault(stage, set()).add(st_["committed"])

            def warp_checks(addrs):
                """addrs[lane] = (dst, global byte address or None) of one cp.async of a warp"""
                nonlocal bad_bank, bad_coal
                for ph in range(4):   # 16-byte accesses: 4 phases of 8 lanes
                    if len({(addrs[8 * ph + l][0] >> 4) & 7 for l in range(8)}) != 8:
                        bad_bank += 1
                    g = [addrs[8 * ph + l][1] for l in range(8)]
                    if None not in g and len({a // 128 for a in g}) != 1:
                        bad_coal += 1

            tapst = dict(lchunk=0, lc=0, ldt=0, ldh=0, ldw=0)

            def load_next():
                L = tapst
                if L["lchunk"] < nk:
                    stage = L["lchunk"] % stages
                    per_warp_a = [[None] * 32 for _ in range(NTHR // 32 * AROWS)]
                    per_warp_b = [[None] * 32 for _ in range(NTHR // 32 * BROWS)]
                    for tid in range(NTHR):
                        t = th[tid]
                        sa = base + stage * STAGE_BYTES + t["dst0"]
                        sb = sa + A_BYTES
                        for j in range(AROWS):
                            src = t["wrow"] + j * RSTEP * Kp + L["lchunk"] * CW_BK
                            cp_async(tid, sa + j * RSTEP * 128, wp, src, 16, L["lchunk"], stage, "A")
                            per_warp_a[(tid >> 5) * AROWS + j][tid & 31] = (sa + j * RSTEP * 128, 2 * src)
                        toff = u32(u32(u32(L["ldt"] * H) + L["ldh"]) * W + L["ldw"])
                        sh_t, sh_h, sh_w = L["ldt"], 10 + L["ldh"], 20 + L["ldw"]
                        xch = t["xq"] + L["lc"] * CW_BK
                        for j in range(BROWS):
                            m = t["vmask"][j]
                            ok = ((m >> sh_t) & (m >> sh_h) & (m >> sh_w) & 1) != 0
                            src = xch + u32(t["vbase"][j] + toff) * Cp if ok else 0
                            cp_async(tid, sb + j * RSTEP * 128, xc, src, 16 if ok else 0, L["lchunk"], stage, "B")
                            per_warp_b[(tid >> 5) * BROWS + j][tid & 31] = (sb + j * RSTEP * 128, 2 * src if ok else None)
                    for a in per_warp_a + per_warp_b:
                        warp_checks(a)
                    L["lchunk"] += 1
                    L["ldw"] += 1
                    if L["ldw"] == kw:
                        L["ldw"] = 0
                        L["ldh"] += 1
                        if L["ldh"] == kh:
                            L["ldh"] = 0
                            L["ldt"] += 1
                            if L["ldt"] == kt:
                                L["ldt"] = 0
                                L["lc"] += 1
                st_["committed"] += 1   # cw_commit: one group per call

            def cp_wait(nmax):
                for gi in range(st_["committed"] - nmax):
                    st_["completed"].setdefault(gi, st_["phase"])

            def fence_proxy():
                for gi in st_["completed"]:
                    st_["fenced"].setdefault(gi, st_["phase"])

            def barrier():
                st_["phase"] += 1

            def wg_commit(wgi, stage):
                st_["wg_groups"][wgi].append([stage, None])
                stage_reads.setdefault(stage, []).append((wgi, len(st_["wg_groups"][wgi]) - 1))

            def wg_wait(wgi, nmax):
                gl = st_["wg_groups"][wgi]
                for gi in range(len(gl) - nmax):
                    if gl[gi][1] is None:
                        gl[gi][1] = st_["phase"]

            # D accumulators per warpgroup: 64 rows, each a packed big integer over BN columns
            D = [[0] * 64 for _ in range(nwg)]
            bcache = {}

            def wgmma(wgi, da, db, chunk, stage):
                # the stage's copies: waited and fenced by every thread before this phase
                for gi in stage_writes.get(stage, ()):
                    f = st_["fenced"].get(gi)
                    assert f is not None and f < st_["phase"], "wgmma reads stage %d before its copies are fenced" % stage
                arows = operand_rows(da, 64)
                key = (db, chunk)
                if key not in bcache:
                    brows = operand_rows(db, BN)
                    cols = []
                    for k in range(16):
                        vals = []
                        for nn in range(BN):
                            a = brows[nn][k]
                            assert sm.tag[a // 2] == chunk, "wgmma B reads an element not copied for chunk %d" % chunk
                            vals.append(sm.val[a // 2])
                        cols.append(pack_cols(vals))
                    bcache.clear()
                    bcache[key] = cols
                cols = bcache[key]
                for mm in range(64):
                    acc = D[wgi][mm]
                    for k in range(16):
                        a = arows[mm][k]
                        assert sm.tag[a // 2] == chunk, "wgmma A reads an element not copied for chunk %d" % chunk
                        v = sm.val[a // 2]
                        if v:
                            acc += v * cols[k]
                    D[wgi][mm] = acc

            # ---- the kernel's sequence ----
            for _ in range(stages - 2):
                load_next()
            for c in range(nk):
                so = (c % stages) * STAGE_BYTES
                cp_wait(stages - 3)
                fence_proxy()
                barrier()
                for wgi in range(nwg):
                    a_wg = base + wgi * 64 * 128
                    for kk in range(CW_BK // 16):
                        wgmma(wgi, cw_desc(a_wg + so + kk * 32), cw_desc(base + so + A_BYTES + kk * 32), c, c % stages)
                    wg_commit(wgi, c % stages)
                load_next()
                for wgi in range(nwg):
                    wg_wait(wgi, 1)
            for wgi in range(nwg):
                wg_wait(wgi, 0)

            # accumulators as fragments (the ISA's layout), then the kernel's epilogue
            Dm = [[unpack_cols(D[wgi][mm], BN) for mm in range(64)] for wgi in range(nwg)]
            for tid in range(NTHR):
                wgi, warp, lane = tid >> 7, (tid >> 5) & 3, tid & 31
                acc = [None] * NA
                for i in range(NA):
                    mrow, ncol = isa_d_pos(tid & 127, i)
                    acc[i] = Dm[wgi][mrow][ncol]
                g, t4 = lane >> 2, lane & 3
                pair_ok = (P & 1) == 0
                for h in range(2):
                    co = co0 + wgi * 64 + warp * 16 + g + 8 * h
                    if co >= Co:
                        continue
                    bv = bvec[co] if bias else 0
                    yr = yb + co * P
                    for j in range(BN // 8):
                        pos = p0 + j * 8 + 2 * t4
                        v0, v1 = acc[4 * j + 2 * h] + bv, acc[4 * j + 2 * h + 1] + bv
                        if pair_ok and pos + 1 < P:
                            assert (yr + pos) % 2 == 0, "float2 store not 8-byte aligned"
                            outs = ((pos, v0), (pos + 1, v1))
                        else:
                            outs = tuple(o for o in ((pos, v0), (pos + 1, v1)) if o[0] < P)
                        for pp, v in outs:
                            y[yr + pp] = v
                            writes[yr + pp] += 1

    # reference: direct convolution, zero padding (columns over output positions packed in big
    # integers: Y[co] = bias + Σ_{ci, tap} w · shifted input)
    for b in range(B):
        G = {}
        for ci in range(Ci):
            for dt in range(kt):
                for dh in range(kh):
                    for dw in range(kw):
                        vals = []
                        for pp in range(P):
                            ow, r = pp % Wo, pp // Wo
                            oh, ot = r % Ho, r // Ho
                            t_, h_, w_ = ot * st[0] - pd[0] + dt, oh * st[1] - pd[1] + dh, ow * st[2] - pd[2] + dw
                            ok = 0 <= t_ < T and 0 <= h_ < H and 0 <= w_ < W
                            vals.append(x[((b * Ci + ci) * T + t_) * H * W + h_ * W + w_] if ok else 0)
                        G[(ci, (dt * kh + dh) * kw + dw)] = pack_cols(vals)
        for co in range(Co):
            accv = pack_cols([bvec[co] if bias else 0] * P)
            for ci in range(Ci):
                for tap in range(taps):
                    wv = w[(co * Ci + ci) * taps + tap]
                    if wv:
                        accv += wv * G[(ci, tap)]
            ref = unpack_cols(accv, P)
            for pp in range(P):
                k = (b * Co + co) * P + pp
                if y[k] != ref[pp] or writes[k] != 1:
                    errors += 1
    print(f"{name}: NWG={nwg} STAGES={stages} blocks={npt * nco}x{B} chunks={nk}: "
          f"{'ok' if errors == 0 else f'{errors} wrong outputs'}, "
          f"{bad_bank} bank-conflicted / {bad_coal} uncoalesced copy phases")
    return errors + bad_bank + bad_coal


def self_check():
    """operand_rows == emulate-wgmma.py's operand_addr for every k-step start used here"""
    for start in (1024, 4096 + 32, 8192 + 64, 24576 + 96):
        d = cw_desc(start)
        rows = operand_rows(d, 256)
        for r in range(256):
            for k in range(16):
                assert rows[r][k] == isa_operand_addr(d, r, k)
    # the swizzled copy destination = the ISA address of (row, 8·chunk) at k-step 0
    for r in range(16):
        for q in range(8):
            lin = 2048 + r * 128 + q * 16
            assert 2048 + r * 128 + ((q ^ (r & 7)) << 4) == lin ^ (((lin >> 7) & 7) << 4)


if __name__ == "__main__":
    self_check()
    bad = 0
    # 3x3x3 pad 1, odd T/H/W, Ci tail (40 of 64), Co tail (80 of 128), 2 position tiles (273)
    bad += run("3x3x3 s1 p1 Ci40 Co80 [1,40,3,7,13]", 1, 40, 3, 7, 13, 80, (3, 3, 3), (1, 1, 1), (1, 1, 1), 4)
    # 1x1x1, Co = 130 (two 128-row tiles, the second nearly empty), two Ci chunks (70), B = 2,
    # P = 600 (3 position tiles, even: pair stores), 3 stages
    bad += run("1x1x1 Ci70 Co130 B2 [2,70,2,10,30]", 2, 70, 2, 10, 30, 130, (1, 1, 1), (1, 1, 1), (0, 0, 0), 3)
    # stride 2, pad 0, Ci = 33, Co = 72, odd P (24 → even; 2·3·4)
    bad += run("3x3x3 s2 p0 Ci33 Co72 [1,33,5,7,9]", 1, 33, 5, 7, 9, 72, (3, 3, 3), (2, 2, 2), (0, 0, 0), 4, seed=3)
    # one warpgroup (Co <= 64, 64x128 tiles), stride (1,2,2), pad (0,1,1), B = 2, no bias, odd P
    bad += run("3x3x3 s(1,2,2) p(0,1,1) Ci36 Co48 B2 [2,36,4,10,11]", 2, 36, 4, 10, 11, 48, (3, 3, 3), (1, 2, 2),
               (0, 1, 1), 3, bias=False, seed=4)
    # several channel blocks with taps (ncc = 2, kt = 3): chunk order (ci outer, tap inner)
    bad += run("3x1x1 s(2,1,1) p(1,0,0) Ci100 Co64 [1,100,7,3,45]", 1, 100, 7, 3, 45, 64, (3, 1, 1), (2, 1, 1),
               (1, 0, 0), 4, seed=5)
    sys.exit(1 if bad else 0)
