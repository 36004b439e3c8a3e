#!/usr/bin/env python3
"""Checks the warp-specialised Hopper attention kernel (kernels/attention-wgmma-ws.cu, k_flash_ws)
without a GPU.

What the kernel adds to k_flash_wgmma (whose wgmma descriptors, swizzle and fragment layouts
tests/gpu/emulate-wgmma.py checks; this script imports those definitions) is a protocol: one
producer thread issues TMA box copies into a 3-stage ring of K and Vᵀ tiles, counted in bytes on
"full" mbarriers; two consumer warpgroups wait on them, take turns issuing their wgmmas through
two named barriers (ping-pong), and give stages back through "empty" mbarriers (one arrival per
consumer warp). A wrong parity or a missing arrival hangs or races only on a GPU. This script
replays, for one block, the producer and both consumers as separate processes interleaved at
random (many seeds, plus schedules biased towards a slow or fast producer / consumer), with:
  - mbarriers as the PTX ISA defines them (9.7.13.15: a phase completes when its pending
    arrival count and its transaction count both reach 0; arrive.expect_tx raises the tx count
    then arrives; the copy engine's complete_tx lowers it; try_wait.parity(x) is true iff the
    phase with parity x has completed, i.e. the current phase's parity differs from x),
  - named barriers (9.7.13.4: bar.sync / bar.arrive with a thread count; a generation completes
    when 256 threads arrived; a warpgroup never arrives twice in one generation),
  - the TMA tile copy with CU_TENSOR_MAP_SWIZZLE_128B (box of 64 bf16 × 128 rows written as
    128-byte rows, 16-byte chunk index XORed with address bits 7-9, 1024-byte aligned
    destination; out-of-bound elements zero; the barrier is signalled with the full box size),
    landing at a random later time,
  - wgmma reads of shared memory open from issue to the wgmma.wait_group that retires them,
and checks: no deadlock; every stage a consumer reads holds the tile it expects, completely
landed; no TMA writes a stage while a wgmma may still read it, nor before BOTH consumers have
finished reading its previous tile; the consumers' issue rounds strictly alternate 0, 1, 0, 1;
every named-barrier generation completes; and (numeric cases) the block's output equals a
float64 softmax attention (masks, GQA, tails, SKIPped tiles, a row that sees nothing, a block
with no active tile) within 1e-9 — the kernel's formulas, placement by TMA and reads through
the wgmma descriptors included.

Run: python3 tests/gpu/emulate-wgmma-ws.py   (exit 0 = protocol and numerics agree), ~10 s."""
import importlib.util
import math
import os
import random
import sys

_here = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("emulate_wgmma", os.path.join(_here, "emulate-wgmma.py"))
ew = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ew)

# ---- constants of attention-wgmma-ws.cu -------------------------------------------------------
WS_D, WG_BR, WG_BC = 128, 128, 128
WS_TILE, CB_BYTES = 128 * 128 * 2, 128 * 128
NST = 3
NBAR = 1 + 4 * NST
WS_SMEM = (1 + 2 * NST) * WS_TILE + 1024 + 8 * NBAR
CONSUMER_WARPS = 8
PRODUCER_REGS, CONSUMER_REGS = 24, 240
TILE_SKIP, TILE_FULL, TILE_MASKED = ew.TILE_SKIP, ew.TILE_FULL, ew.TILE_MASKED


class ProtocolError(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise ProtocolError(msg)


# ---- hardware models ---------------------------------------------------------------------------
class MBar:
    def __init__(self, name, count):
        self.name, self.count = name, count
        self.phase = 0            # completed phases
        self.pending = count
        self.tx = 0

    def _maybe_complete(self):
        if self.pending == 0 and self.tx == 0:
            self.phase += 1
            self.pending = self.count

    def arrive(self):
        check(self.pending > 0, "%s: more arrivals than its count in one phase" % self.name)
        self.pending -= 1
        self._maybe_complete()

    def expect_tx_arrive(self, nbytes):
        self.tx += nbytes
        self.arrive()

    def complete_tx(self, nbytes):
        self.tx -= nbytes
        check(self.tx >= 0 or self.pending > 0, "%s: more bytes than announced" % self.name)
        self._maybe_complete()

    def try_wait(self, parity):
        return (self.phase & 1) != parity


class NamedBar:
    def __init__(self, bid):
        self.bid, self.count, self.gen, self.who = bid, 0, 0, set()

    def add(self, wg):
        check(wg not in self.who, "named barrier %d: warpgroup %d arrived twice in one generation" % (self.bid, wg))
        self.who.add(wg)
        self.count += 128
        if self.count == 256:
            self.count, self.who = 0, set()
            self.gen += 1


def tma_place(dst, r, e):
    """Shared-memory byte address of element e (0..63) of box row r: rows of 128 bytes, then the
    128-byte swizzle on the address (chunk bits 4-6 ^= bits 7-9), per CU_TENSOR_MAP_SWIZZLE_128B."""
    lin = dst + r * 128 + 2 * e
    return lin ^ (((lin >> 7) & 7) << 4)


class TensorMap:
    """cuTensorMapEncodeTiled as wgmma_ws_launch fills it: dims / byte strides innermost first."""

    def __init__(self, data, dims, strides, box):
        check(len(strides) == len(dims) - 1 and len(box) == len(dims), "tensor map rank")
        check(all(s % 16 == 0 and s < 2 ** 40 for s in strides), "tensor map strides")
        check(all(0 < b <= 256 for b in box) and box[0] * 2 <= 128, "box exceeds the 128-byte swizzle span")
        check(all(0 < d < 2 ** 32 for d in dims), "tensor map dims")
        self.data, self.dims, self.strides, self.box = data, dims, [2] + strides, box

    def fetch(self, coords):
        """bf16 elements of the box at coords, as rows [box[2 or 1]] of 64 values (OOB -> 0)."""
        nrow_dim = 2 if len(self.dims) == 4 else 1
        rows = []
        for r in range(self.box[nrow_dim]):
            c = list(coords)
            c[nrow_dim] += r
            row = []
            for e in range(self.box[0]):
                cc = list(c)
                cc[0] += e
                if any(x >= d or x < 0 for x, d in zip(cc, self.dims)):
                    row.append(0)
                else:
                    off = sum(x * s for x, s in zip(cc, self.strides))
                    row.append(self.data[off // 2])
            rows.append(row)
        return rows


def gemm(smem, descs_a, descs_b, a_regs=None):
    """One wgmma chain of 8 k-steps (m64n128k16 each) as D[m][n] over K = 128: A from shared
    memory through descs_a (or from the register fragments a_regs[th][kk][r] = (lo, hi)), B
    through descs_b; reads go through emulate-wgmma.py's operand_addr (the PTX ISA layout)."""
    if a_regs is None:
        A = [[smem.read(ew.operand_addr(descs_a[kk], m, k)) for kk in range(8) for k in range(16)] for m in range(64)]
    else:
        A = [[None] * 128 for _ in range(64)]
        for th in range(128):
            w, lane = th // 32, th % 32
            g, t = lane // 4, lane % 4
            for kk in range(8):
                for r in range(4):
                    for e in range(2):
                        row, col = 16 * w + g + 8 * (r & 1), 2 * t + 8 * (r >> 1) + e
                        check(A[row][16 * kk + col] is None, "register A element written twice")
                        A[row][16 * kk + col] = a_regs[th][kk][r][e]
    Bt = [[smem.read(ew.operand_addr(descs_b[kk], n, k)) for kk in range(8) for k in range(16)] for n in range(128)]
    return [[sum(x * y for x, y in zip(A[m], Bt[n])) for n in range(128)] for m in range(64)]


def to_frag(D):
    return [[D[m][n] for m, n in (ew.d_pos(th, i) for i in range(64))] for th in range(128)]


# ---- one block of k_flash_ws --------------------------------------------------------------------
class BlockSim:
    def __init__(self, P, bx, h, b, rnd, numeric=True, bias=None, raw=0x30):
        self.P, self.bx, self.h, self.b, self.rnd, self.numeric = P, bx, h, b, rnd, numeric
        self.bias = bias or {}
        # shared-memory layout of the kernel
        self.sQ = (raw + 1023) & ~1023
        self.sK = self.sQ + WS_TILE
        self.sV = self.sK + NST * WS_TILE
        self.bar_q = self.sV + NST * WS_TILE
        check(self.bar_q + 8 * NBAR - raw <= WS_SMEM, "shared memory layout exceeds WS_SMEM")
        self.smem = ew.Smem(self.bar_q) if numeric else None
        self.q_mb = MBar("bar_q", 1)
        self.full = {k: [MBar("full_%s[%d]" % (k, s), 1) for s in range(NST)] for k in "kv"}
        self.empty = {k: [MBar("empty_%s[%d]" % (k, s), CONSUMER_WARPS) for s in range(NST)] for k in "kv"}
        self.nbar = {1: NamedBar(1), 2: NamedBar(2)}
        # stage bookkeeping for the race checks
        self.tag = {k: [None] * NST for k in "kv"}
        self.landed = {k: [0] * NST for k in "kv"}
        self.readers_done = {k: [set() for _ in range(NST)] for k in "kv"}
        self.open_reads = {k: [set() for _ in range(NST)] for k in "kv"}
        self.inflight = []        # TMA boxes not yet landed
        self.rounds = []          # consumer id of each wgmma issue round, in order
        self.groups = {0: [], 1: []}   # per consumer: committed wgmma groups (list of reads)
        # problem geometry
        self.hk = h // (P.H // P.Hkv)
        self.q0 = bx * WG_BR
        self.q_last = min(self.q0 + WG_BR, P.Lq) - 1
        B = P.B
        # the host's tensor maps (wgmma_ws_launch)
        self.tm_q = TensorMap(P.q, [WS_D, P.H, P.Lq, B], [WS_D * 2, P.H * WS_D * 2, P.Lq * P.H * WS_D * 2], [64, 1, 128, 1])
        self.tm_k = TensorMap(P.k, [WS_D, P.Hkv, P.Lk, B], [WS_D * 2, P.Hkv * WS_D * 2, P.Lk * P.Hkv * WS_D * 2], [64, 1, 128, 1])
        self.tm_v = TensorMap(P.vt, [P.Lkp, B * P.Hkv * WS_D], [P.Lkp * 2], [64, 128])
        rows = [self.q0 + r for r in range(WG_BR) if self.q0 + r < P.Lq]
        if P.seg:
            qs = [P.seg[0][b * P.Lq + qi] for qi in rows]
            self.qmin, self.qmax = min(qs), max(qs)
        else:
            self.qmin, self.qmax = 2 ** 31 - 1, -2 ** 31
        kt_end = (P.Lk + WG_BC - 1) // WG_BC
        if P.causal:
            kt_end = min(kt_end, self.q_last // WG_BC + 1)
        self.kt_end = kt_end
        self.consumed = {0: [], 1: []}

    def mode(self, kt):
        return self.P.tile_mode(self.b, kt, self.q0, self.q_last, self.qmin, self.qmax)

    def next_active(self, kt):
        while kt < self.kt_end and self.mode(kt) == TILE_SKIP:
            kt += 1
        return kt

    # -- primitives used by the processes (generators yield a readiness predicate) --
    def wait_mbar(self, bar, parity):
        while not bar.try_wait(parity):
            yield lambda: bar.try_wait(parity)

    def named_sync(self, bid, wg):
        nb = self.nbar[bid]
        g = nb.gen
        nb.add(wg)
        if nb.gen == g:
            yield lambda: nb.gen != g

    def named_arrive(self, bid, wg):
        self.nbar[bid].add(wg)

    def tma(self, kind, stage, dst, tmap, coords, bar, kt):
        if kind in "kv":
            check(not self.open_reads[kind][stage],
                  "TMA into %s stage %d while consumer(s) %s may still read it" % (kind, stage, self.open_reads[kind][stage]))
            if self.tag[kind][stage] != kt:
                # first box of a new tile in this stage: the old tile must be read by both consumers
                if self.tag[kind][stage] is not None:
                    check(self.readers_done[kind][stage] == {0, 1},
                          "%s stage %d refilled with tile %d before both consumers released tile %d (done: %s)"
                          % (kind, stage, kt, self.tag[kind][stage], self.readers_done[kind][stage]))
                self.tag[kind][stage] = kt
                self.landed[kind][stage] = 0
                self.readers_done[kind][stage] = set()
        check(dst % 1024 == 0, "TMA destination not 1024-byte aligned (128-byte swizzle)")
        self.inflight.append((kind, stage, dst, tmap, coords, bar))

    def land(self, i):
        kind, stage, dst, tmap, coords, bar = self.inflight.pop(i)
        if self.numeric:
            rows = tmap.fetch(coords)
            for r, row in enumerate(rows):
                for e, x in enumerate(row):
                    a = tma_place(dst, r, e)
                    self.smem.v[a // 2] = x
        if kind in "kv":
            self.landed[kind][stage] += 1
        bar.complete_tx(CB_BYTES)

    def open_read(self, c, kind, stage, kt):
        check(self.tag[kind][stage] == kt and self.landed[kind][stage] == 2,
              "consumer %d reads %s stage %d expecting tile %d, holds %s (%d/2 boxes landed)"
              % (c, kind, stage, kt, self.tag[kind][stage], self.landed[kind][stage]))
        check(not any(x[0] == kind and x[1] == stage for x in self.inflight), "read of a stage being written")
        self.open_reads[kind][stage].add(c)
        return (kind, stage)

    def wg_wait(self, c, n):
        while len(self.groups[c]) > n:
            for kind, stage in self.groups[c].pop(0):
                self.open_reads[kind][stage].discard(c)
                self.readers_done[kind][stage].add(c)

    def release(self, kind, stage):
        for _ in range(4):   # lane 0 of each of the warpgroup's 4 warps
            self.empty[kind][stage].arrive()

    # -- the producer (thread 0 of warpgroup 0) --
    def producer(self):
        P, b, h, hk = self.P, self.b, self.h, self.hk
        self.q_mb.expect_tx_arrive(WS_TILE)
        self.tma("q", 0, self.sQ, self.tm_q, [0, h, self.q0, b], self.q_mb, None)
        self.tma("q", 0, self.sQ + CB_BYTES, self.tm_q, [64, h, self.q0, b], self.q_mb, None)
        vrow = (b * P.Hkv + hk) * WS_D
        s = u = 0
        kt = self.next_active(0)
        while kt < self.kt_end:
            if u > 0:
                yield from self.wait_mbar(self.empty["k"][s], (u - 1) & 1)
            self.full["k"][s].expect_tx_arrive(WS_TILE)
            self.tma("k", s, self.sK + s * WS_TILE, self.tm_k, [0, hk, kt * WG_BC, b], self.full["k"][s], kt)
            self.tma("k", s, self.sK + s * WS_TILE + CB_BYTES, self.tm_k, [64, hk, kt * WG_BC, b], self.full["k"][s], kt)
            yield None
            if u > 0:
                yield from self.wait_mbar(self.empty["v"][s], (u - 1) & 1)
            self.full["v"][s].expect_tx_arrive(WS_TILE)
            self.tma("v", s, self.sV + s * WS_TILE, self.tm_v, [kt * WG_BC, vrow], self.full["v"][s], kt)
            self.tma("v", s, self.sV + s * WS_TILE + CB_BYTES, self.tm_v, [kt * WG_BC + 64, vrow], self.full["v"][s], kt)
            s += 1
            if s == NST:
                s, u = 0, u + 1
            kt = self.next_active(kt + 1)
            yield None

    # -- a consumer warpgroup (c = 0, 1), the kernel's `consume` --
    def consumer(self, c):
        st = self.state[c] if self.numeric else None
        wg = c + 1
        my_bar, other_bar = 1 + c, 2 - c
        sQw = self.sQ + c * 64 * 128

        def issue_s(stage, kt):
            self.groups[c].append([self.open_read(c, "k", stage, kt)])
            self.rounds_cur.append("S%d" % kt)
            if self.numeric:
                kb = self.sK + stage * WS_TILE
                da = [ew.desc_sw128(sQw + ew.kstep_off(kk)) for kk in range(8)]
                db = [ew.desc_sw128(kb + ew.kstep_off(kk)) for kk in range(8)]
                st["s"] = to_frag(gemm(self.smem, da, db))

        def issue_pv(stage, kt):
            # its own commit group, as in the kernel (wait_group 1 then retires S only)
            self.groups[c].append([self.open_read(c, "v", stage, kt)])
            self.rounds_cur.append("PV%d" % kt)
            if self.numeric:
                vb = self.sV + stage * WS_TILE
                db = [ew.desc_sw128(vb + ew.kstep_off(kk)) for kk in range(8)]
                D = gemm(self.smem, None, db, a_regs=st["pf"])
                old = st["o"]
                st["o"] = [[old[th][i] + D[m][n] for i, (m, n) in enumerate(ew.d_pos(th, i) for i in range(64))]
                           for th in range(128)]

        def round_begin():
            self.rounds.append(c)
            self.rounds_cur = []

        yield from self.wait_mbar(self.q_mb, 0)
        kt = self.next_active(0)
        if kt < self.kt_end:
            if c == 1:
                self.named_arrive(1, wg)
            sc = pc = 0
            yield from self.wait_mbar(self.full["k"][0], 0)
            yield from self.named_sync(my_bar, wg)
            round_begin()
            issue_s(0, kt)
            self.named_arrive(other_bar, wg)
            yield None
            self.wg_wait(c, 0)
            self.release("k", 0)
            self.consumed[c].append(kt)
            if self.numeric:
                self.softmax(c, kt)
                self.rescale_pack(c)
            ktn = self.next_active(kt + 1)
            while ktn < self.kt_end:
                sn = 0 if sc + 1 == NST else sc + 1
                pn = pc ^ 1 if sc + 1 == NST else pc
                yield from self.wait_mbar(self.full["k"][sn], pn)
                yield from self.wait_mbar(self.full["v"][sc], pc)
                yield from self.named_sync(my_bar, wg)
                round_begin()
                issue_s(sn, ktn)
                issue_pv(sc, kt)
                self.named_arrive(other_bar, wg)
                yield None
                self.wg_wait(c, 1)
                self.release("k", sn)
                if self.numeric:
                    self.softmax(c, ktn)
                yield None
                self.wg_wait(c, 0)
                self.release("v", sc)
                self.consumed[c].append(ktn)
                if self.numeric:
                    self.rescale_pack(c)
                sc, pc = sn, pn
                kt, ktn = ktn, self.next_active(ktn + 1)
            yield from self.wait_mbar(self.full["v"][sc], pc)
            yield from self.named_sync(my_bar, wg)
            round_begin()
            issue_pv(sc, kt)
            if c == 0:
                self.named_arrive(other_bar, wg)
            yield None
            self.wg_wait(c, 0)
            self.release("v", sc)

    # -- the consumers' register math (as k_flash_wgmma; the kernel's formulas) --
    def init_state(self):
        self.state = {}
        for c in range(2):
            self.state[c] = dict(s=[[0.0] * 64 for _ in range(128)], o=[[0.0] * 64 for _ in range(128)],
                                 pf=[[[(0, 0)] * 4 for _ in range(8)] for _ in range(128)],
                                 m0=[-math.inf] * 128, m1=[-math.inf] * 128, l0=[0.0] * 128, l1=[0.0] * 128,
                                 a0=[0.0] * 128, a1=[0.0] * 128)

    def rows_of(self, c, th):
        w, lane = th // 32, th % 32
        qa = self.q0 + c * 64 + w * 16 + lane // 4
        return qa, qa + 8, lane % 4

    def softmax(self, c, kt):
        P, S, b = self.P, self.state[c], self.b
        mode = self.mode(kt)
        k0 = kt * WG_BC
        mx = [[0.0] * 128, [0.0] * 128]
        for th in range(128):
            qa, qb, t4 = self.rows_of(c, th)
            s = S["s"][th]
            a = cc_ = -math.inf
            for cc in range(16):
                for e in range(4):
                    s[4 * cc + e] *= self.scale_log2
                if mode == TILE_MASKED:
                    kj = k0 + cc * 8 + 2 * t4
                    if not P.allowed(b, qa, kj): s[4 * cc] = -math.inf
                    if not P.allowed(b, qa, kj + 1): s[4 * cc + 1] = -math.inf
                    if not P.allowed(b, qb, kj): s[4 * cc + 2] = -math.inf
                    if not P.allowed(b, qb, kj + 1): s[4 * cc + 3] = -math.inf
                a = max(a, s[4 * cc], s[4 * cc + 1])
                cc_ = max(cc_, s[4 * cc + 2], s[4 * cc + 3])
            mx[0][th], mx[1][th] = a, cc_
        for arr in mx:   # __shfl_xor_sync 1, 2 inside each warp
            for x in (1, 2):
                arr[:] = [max(arr[th], arr[(th & ~31) | ((th & 31) ^ x)]) for th in range(128)]
        for th in range(128):
            s = S["s"][th]
            mn0, mn1 = max(S["m0"][th], mx[0][th]), max(S["m1"][th], mx[1][th])
            mu0 = 0.0 if mn0 == -math.inf else mn0
            mu1 = 0.0 if mn1 == -math.inf else mn1
            S["a0"][th], S["a1"][th] = ew.ex2(S["m0"][th] - mu0), ew.ex2(S["m1"][th] - mu1)
            S["m0"][th], S["m1"][th] = mn0, mn1
            rs0 = rs1 = 0.0
            for cc in range(16):
                s[4 * cc] = ew.ex2(s[4 * cc] - mu0)
                s[4 * cc + 1] = ew.ex2(s[4 * cc + 1] - mu0)
                s[4 * cc + 2] = ew.ex2(s[4 * cc + 2] - mu1)
                s[4 * cc + 3] = ew.ex2(s[4 * cc + 3] - mu1)
                rs0 += s[4 * cc] + s[4 * cc + 1]
                rs1 += s[4 * cc + 2] + s[4 * cc + 3]
            S["l0"][th] = S["l0"][th] * S["a0"][th] + rs0
            S["l1"][th] = S["l1"][th] * S["a1"][th] + rs1

    def rescale_pack(self, c):
        S = self.state[c]
        for th in range(128):
            o, s = S["o"][th], S["s"][th]
            for cc in range(16):
                o[4 * cc] *= S["a0"][th]
                o[4 * cc + 1] *= S["a0"][th]
                o[4 * cc + 2] *= S["a1"][th]
                o[4 * cc + 3] *= S["a1"][th]
            S["pf"][th] = [ew.pack(s, kk) for kk in range(8)]

    def epilogue(self):
        out = {}
        for c in range(2):
            S = self.state[c]
            l0, l1 = S["l0"][:], S["l1"][:]
            for arr in (l0, l1):
                for x in (1, 2):
                    arr[:] = [arr[th] + arr[(th & ~31) | ((th & 31) ^ x)] for th in range(128)]
            for th in range(128):
                qa, qb, t4 = self.rows_of(c, th)
                inv0 = 1.0 / l0[th] if l0[th] > 0 else 0.0
                inv1 = 1.0 / l1[th] if l1[th] > 0 else 0.0
                o = S["o"][th]
                for cc in range(16):
                    if qa < self.P.Lq:
                        out[(qa, cc * 8 + 2 * t4)] = o[4 * cc] * inv0
                        out[(qa, cc * 8 + 2 * t4 + 1)] = o[4 * cc + 1] * inv0
                    if qb < self.P.Lq:
                        out[(qb, cc * 8 + 2 * t4)] = o[4 * cc + 2] * inv1
                        out[(qb, cc * 8 + 2 * t4 + 1)] = o[4 * cc + 3] * inv1
        return out

    # -- the scheduler: random interleaving of the three processes and the copy engine --
    def run(self, scale):
        self.scale_log2 = scale * 1.4426950408889634
        if self.numeric:
            self.init_state()
        procs = {"producer": self.producer(), "c0": self.consumer(0), "c1": self.consumer(1)}
        waiting = {name: None for name in procs}   # None = runnable
        done = set()
        steps = 0
        while len(done) < 3 or self.inflight:
            steps += 1
            check(steps < 100000, "runaway schedule")
            acts = [n for n in procs if n not in done and (waiting[n] is None or waiting[n]())]
            acts += ["tma%d" % i for i in range(len(self.inflight))]
            check(acts, "deadlock: producer/consumers all blocked, nothing in flight (%s)"
                  % {n: ("done" if n in done else "blocked") for n in procs})
            weights = [self.bias.get(a if not a.startswith("tma") else "tma", 1.0) for a in acts]
            a = self.rnd.choices(acts, weights)[0]
            if a.startswith("tma"):
                self.land(int(a[3:]))
                continue
            try:
                waiting[a] = next(procs[a])
            except StopIteration:
                done.add(a)
        for nb in self.nbar.values():
            check(nb.count == 0, "named barrier %d left with %d threads arrived" % (nb.bid, nb.count))
        check(all(r == i % 2 for i, r in enumerate(self.rounds)), "issue rounds do not alternate: %s" % self.rounds)
        n = len(self.consumed[0])
        check(self.consumed[0] == self.consumed[1], "consumers saw different tiles")
        check(len(self.rounds) == (2 * (n + 1) if n else 0), "rounds %d for %d tiles" % (len(self.rounds), n))
        return self.epilogue() if self.numeric else None


# ---- cases ---------------------------------------------------------------------------------------
def numeric_case(name, P, bx, h, b, expect_tiles, seed):
    scale = 1.0 / math.sqrt(WS_D)
    sim = BlockSim(P, bx, h, b, random.Random(seed))
    out = sim.run(scale)
    tiles = len(sim.consumed[0])
    rows = sorted({r for r, _ in out})
    ok = len(out) == len(rows) * WS_D
    worst = 0.0
    for qi in rows:
        ref = ew.reference(P, qi, h, b, scale)
        for d in range(WS_D):
            worst = max(worst, abs(out[(qi, d)] - ref[d]))
    ok = ok and worst < 1e-9 and tiles == expect_tiles
    print("numeric %-46s rows %3d..%3d, %d tiles, max|err| %.2e: %s"
          % (name, rows[0], rows[-1], tiles, worst, "ok" if ok else "WRONG"))
    return ok


def numeric():
    rnd = random.Random(7)
    ok = True
    # tails + GQA (Lq 200: block 1 = rows 128..199; Lk 333: last tile 77 keys; head 3 -> kv 1)
    P = ew.Problem(rnd, B=1, Lq=200, Lk=333, H=4, Hkv=2, integer=False)
    ok &= numeric_case("full, GQA head 3 -> kv 1, tails", P, 1, 3, 0, 3, 11)
    # Lq != Lk, allow mask with a row that sees nothing; 4 tiles: the ring wraps (NST = 3)
    Lq, Lk = 5, 450
    allow = [1 if (rnd.random() < 0.7 and qi != 1) else 0 for qi in range(Lq) for kj in range(Lk)]
    P = ew.Problem(rnd, B=1, Lq=Lq, Lk=Lk, H=1, Hkv=1, integer=False, allow=allow)
    ok &= numeric_case("Lq 5 Lk 450, allow mask, row 1 sees nothing", P, 0, 0, 0, 4, 12)
    # DiT segments, batch 1: block 0 skips the last tile (padded text)
    L = 400
    split = [300, 290]
    seg = [0 if i < split[bb] else 1 for bb in range(2) for i in range(L)]
    P = ew.Problem(rnd, B=2, Lq=L, Lk=L, H=1, Hkv=1, integer=False, seg=(seg, seg))
    ok &= numeric_case("DiT segments, batch 1, block 0 (tile 3 SKIPped)", P, 0, 0, 1, 3, 13)
    # causal, GQA 2/1, block 1: two tiles, the diagonal one masked
    P = ew.Problem(rnd, B=1, Lq=260, Lk=260, H=2, Hkv=1, integer=False, causal=True)
    ok &= numeric_case("causal, block 1", P, 1, 1, 0, 2, 14)
    # no active tile at all (query segment 5 matches no key): zeros, Q still awaited
    segq = [5] * 40
    segk = [0] * 40
    P = ew.Problem(rnd, B=1, Lq=40, Lk=40, H=1, Hkv=1, integer=False, seg=(segq, segk))
    ok &= numeric_case("no active key tile: zeros", P, 0, 0, 0, 0, 15)
    return ok


def protocol():
    """Schedules only (no arithmetic): many random and biased interleavings of 9 active tiles
    (3 ring wraps) with SKIPped tiles in between, and of 1 and 2 tiles."""
    rnd = random.Random(3)
    L = 1400   # 11 key tiles
    seg_k = [0 if (i // 128) not in (2, 6) else 1 for i in range(L)]   # tiles 2, 6 SKIPped
    seg_q = [0] * L
    cases = [(ew.Problem(rnd, B=1, Lq=L, Lk=L, H=1, Hkv=1, integer=False, seg=(seg_q, seg_k)), 9),
             (ew.Problem(rnd, B=1, Lq=10, Lk=100, H=1, Hkv=1, integer=False), 1),
             (ew.Problem(rnd, B=1, Lq=10, Lk=200, H=1, Hkv=1, integer=False), 2)]
    biases = [None, {"producer": 20.0}, {"producer": 0.05}, {"c0": 0.05}, {"c1": 0.05},
              {"tma": 0.02}, {"tma": 30.0, "c1": 0.1}, {"c0": 10.0, "producer": 0.2}]
    runs = 0
    for P, n in cases:
        for seed in range(60):
            bias = biases[seed % len(biases)]
            sim = BlockSim(P, 0, 0, 0, random.Random(1000 + seed), numeric=False, bias=bias)
            try:
                sim.run(1.0)
            except ProtocolError as e:
                print("protocol: seed %d bias %s: %s" % (seed, bias, e))
                return False
            if len(sim.consumed[0]) != n:
                print("protocol: %d tiles consumed, expected %d" % (len(sim.consumed[0]), n))
                return False
            runs += 1
    print("protocol: %d random/biased schedules (9, 1, 2 active tiles; ring of %d): no deadlock, no early "
          "refill, reads of landed tiles only, rounds alternate: ok" % (runs, NST))
    return True


def negative():
    """The checks must be able to fail: a producer that skips the empty-barrier wait, and a
    consumer parity off by one, are caught."""
    rnd = random.Random(5)
    P = ew.Problem(rnd, B=1, Lq=10, Lk=900, H=1, Hkv=1, integer=False)
    caught = 0
    # 1. producer ignores the empty barriers
    for seed in range(40):
        sim = BlockSim(P, 0, 0, 0, random.Random(seed), numeric=False, bias={"producer": 20.0, "tma": 20.0})
        sim.wait_mbar_orig = sim.wait_mbar

        def no_wait(bar, parity, sim=sim):
            if bar.name.startswith("empty"):
                return
                yield
            yield from sim.wait_mbar_orig(bar, parity)
        sim.wait_mbar = no_wait
        try:
            sim.run(1.0)
        except ProtocolError:
            caught += 1
            break
    # 2. consumers wait with the wrong parity on the full barriers' second use
    sim = BlockSim(P, 0, 0, 0, random.Random(9), numeric=False, bias={"producer": 0.05})
    orig = sim.wait_mbar

    def bad_parity(bar, parity):
        if bar.name.startswith("full") and bar.phase >= 1:
            parity ^= 1
        yield from orig(bar, parity)
    sim.wait_mbar = bad_parity
    try:
        sim.run(1.0)
    except ProtocolError:
        caught += 1
    ok = caught == 2
    print("negative: a producer ignoring empty barriers and a flipped parity are %s"
          % ("both caught: ok" if ok else "NOT caught (%d/2)" % caught))
    return ok


def main():
    check(128 * PRODUCER_REGS + 256 * CONSUMER_REGS <= 65536, "register budget")
    check(PRODUCER_REGS % 8 == 0 and CONSUMER_REGS % 8 == 0 and 24 <= PRODUCER_REGS and CONSUMER_REGS <= 256,
          "setmaxnreg range")
    check(WS_SMEM <= 227 * 1024, "shared memory budget")
    # TMA placement == the wgmma SW128 K-major layout of emulate-wgmma.py (independent formulas)
    for r in range(128):
        for ch in range(16):
            check(tma_place(4096 + (ch >> 3) * CB_BYTES, r, (ch & 7) * 8) == 4096 + ew.sw128(r, ch),
                  "TMA placement differs from sw128")
    ok = protocol()
    ok &= negative()
    ok &= numeric()
    print("emulate-wgmma-ws: %s" % ("protocol, placement and numerics agree" if ok else "MISMATCH"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
