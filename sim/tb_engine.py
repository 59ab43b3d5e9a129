"""cocotb tests of the generated layer engine (:mod:`fp8mac.hw.engine`), bit for bit against
mac_gemm.

Run by ``tests/test_sim_engine.py`` and :func:`fp8mac.sim.engine_bench.engine_throughput` through
:func:`fp8mac.sim.runner.build_and_test`, on Icarus and Verilator. The design is described by its
``manifest.json`` (``FP8MAC_MANIFEST``, ``top_kind`` "engine"); the seed is ``FP8MAC_SEED``.

- ``random_gemms``: GEMMs of random ragged shapes from 1 up to what the buffers hold (one whose K
  fills more than half the A buffer, one with as many tile columns as B holds, one with as many
  tile rows as A and C hold, several small ones), at random buffer offsets, in random run-time
  formats, corner and special codes in one; GEMMs again from operands already in the buffers
  (other formats, a sub-block by A_BASE); random load-stream and AXI4-Lite delays and random
  ``tready`` pauses on the READ; every code of C checked.
- ``reset_mid_gemm``: reset between START and done: STATUS and every register read 0; the same
  GEMM from the buffers, then a new one over the same C rows: exact. Reset in a stalled READ: the
  stream stops, a new READ is exact.
- ``error_flags``: every flag of the manifest's error list provoked through the ports (GEMM,
  READ, loads on every stream, UPDATE), read back from STATUS (that flag alone), cleared by
  CLEAR; a refused command changes nothing (C unchanged; DONE too, except after range checks:
  see below); SLVERR for read-only, write-only and unknown addresses (from the manifest's map);
  a GEMM runs exactly after.
- ``done_survives_refused_start``: DONE and C stay as they were when a START is refused by a
  range check (a known engine bug: run alone as a strict xfail by ``tests/test_sim_engine.py``).
- ``mutation``: the checks can fail: a wrong expected code is reported (GEMM, element, seed), a
  wrong BRESP expectation and a ``done`` that never rises too.
- ``throughput``: a large GEMM (``FP8MAC_ENGINE_MKN=M,K,N`` or as many tiles as the buffers hold)
  at full rate, loaded, computed and read until ``FP8MAC_RATE_SECONDS`` (default 1) have passed;
  records MAC/s and the simulator-alone rate (the compute phase, Python asleep).
"""

from __future__ import annotations

import os

import cocotb
import numpy as np

from fp8mac.model.layers import operand_top_exp
from fp8mac.model.gemm import mac_gemm
from fp8mac.sim.engine_bench import (SLVERR, AxiLiteError, EngineBench, EngineMismatch,
                                     compare_words, operand_words, padded_expected, result_rows,
                                     throughput_shape)
from fp8mac.sim.runner import record_metric, test_seed
from fp8mac.sim.workloads import corner_codes

PAUSE_CYCLE = ("random", "stalls", "alternate", "none")


def s_port(stream):
    return f"s_axis_{stream}"


def _finite_pool(fmt, top_exp):
    codes = np.arange(1 << fmt.width)
    v = fmt.decode(codes)
    return codes[np.isfinite(v) & (np.abs(v) < 2.0 ** top_exp)]


def operands(rng, cfg, m, k, n, corners=False):
    """Random codes of ``cfg``'s A and B formats whose sums stay finite; with ``corners``, 40%
    corner codes and 1.5% infinities and NaNs (where the format has them)."""
    top = operand_top_exp(cfg, k)

    def draw(fmt, shape):
        out = rng.choice(_finite_pool(fmt, top), shape)
        if corners:
            c = corner_codes(fmt)
            special = ~np.isfinite(fmt.decode(c))
            u = rng.random(shape)
            out = np.where(u < 0.4, rng.choice(c[~special], shape), out)
            if special.any():
                out = np.where(u > 0.985, rng.choice(c[special], shape), out)
        return out
    return draw(cfg.a_format, (m, k)), draw(cfg.b_format, (k, n))


def random_formats(rng, tb):
    """A random (A, B) pair of the design's run-time sets (None on a fixed-format design)."""
    if not tb.config.runtime_formats:
        return None
    return tuple(tb.config.stream_formats(s)[int(rng.integers(len(tb.config.stream_formats(s))))]
                 for s in "ab")


def shape_of(rng, cfg, tm, tn, steps):
    """Ragged (M, K, N) with ``tm`` tile rows, ``tn`` tile columns, ``steps`` beats per tile."""
    R, C, d = cfg.rows, cfg.cols, cfg.dot
    return ((tm - 1) * R + int(rng.integers(1, R + 1)), (steps - 1) * d + int(rng.integers(1, d + 1)),
            (tn - 1) * C + int(rng.integers(1, C + 1)))


def plans(rng, tb):
    """(kind, tm, tn, steps) of the random test's GEMMs, each fitting the buffers."""
    A, B, Cw = tb.depths
    R = tb.config.rows
    most_c = Cw // R  # tiles C holds
    most_k = min(A, B)
    out = [("long K", 1, 1, int(rng.integers(min(A // 2 + 1, most_k), most_k + 1)))]
    s = int(rng.integers(1, 4))
    out.append(("wide", 1, max(1, min(B // s, most_c)), s))
    s = int(rng.integers(1, 4))
    out.append(("tall", max(1, min(A // s, most_c)), 1, s))
    for _ in range(int(rng.integers(3, 6))):
        tm, tn = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        while tm * tn > most_c:
            tm, tn = max(1, tm - 1), max(1, tn - 1)
        s = int(rng.integers(1, max(2, min(A // tm, B // tn, 12)) + 1))
        out.append(("small", tm, tn, min(s, A // tm, B // tn)))
    order = rng.permutation(len(out))
    return [out[i] for i in order]


async def _bench(dut, **kw) -> EngineBench:
    tb = EngineBench(dut, seed=test_seed(), **kw)
    await tb.reset()
    return tb


@cocotb.test()
async def random_gemms(dut):
    """Random ragged GEMMs up to what the buffers hold, random offsets, formats and delays."""
    tb = await _bench(dut, axil_delay=3)
    cfg, (A, B, Cw) = tb.config, tb.depths
    rng = np.random.default_rng([tb.seed, 1])
    corner_at = int(rng.integers(4))
    macs = 0
    for g, (kind, tm, tn, steps) in enumerate(plans(rng, tb)):
        formats = random_formats(rng, tb)
        gcfg = tb.gemm_config(formats)
        m, k, n = shape_of(rng, gcfg, tm, tn, steps)
        a, b = operands(rng, gcfg, m, k, n, corners=g == corner_at)
        a_base = int(rng.integers(0, A - tm * steps + 1))
        b_base = int(rng.integers(0, B - tn * steps + 1))
        c_base = int(rng.integers(0, Cw - result_rows(m, n, gcfg) + 1))
        tb.load_pause = PAUSE_CYCLE[g % len(PAUSE_CYCLE)]
        tb.read_pause = PAUSE_CYCLE[(g + 1) % len(PAUSE_CYCLE)]
        name = f"{g}: {kind}" + (", corner codes" if g == corner_at else "")
        run = await tb.gemm(a, b, formats, a_base, b_base, c_base, name=name,
                            read_pieces=int(rng.integers(1, 4)))
        macs += run.macs
        dut._log.info("GEMM %-22s M %3d K %4d N %3d (%s x %s) bases %d/%d/%d: %d cycles "
                      "(CYCLES %d), loads %s, READ %s", name, m, k, n, *run.formats, a_base,
                      b_base, c_base, run.compute_cycles, run.engine_cycles, tb.load_pause,
                      tb.read_pause)
        if g % 2 == 0:
            # Again from the buffers, no load: in other formats (or the same: the same codes,
            # since every START restarts the array) into other C rows.
            other = random_formats(rng, tb)
            c2 = int(rng.integers(0, Cw - result_rows(m, n, gcfg) + 1))
            await tb.gemm(a, b, other, a_base, b_base, c2, name=f"{name}, again from the buffers",
                          load=False)
        if tm > 1:
            # A sub-block: tile row i alone, by A_BASE into the loaded A words.
            i = int(rng.integers(tm))
            rows = a[i * cfg.rows:(i + 1) * cfg.rows]
            await tb.gemm(rows, b, formats, a_base + i * steps, b_base, 0,
                          name=f"{name}, tile row {i} alone", load=False)
    record_metric("random_gemms", dict(macs=macs))


@cocotb.test()
async def reset_mid_gemm(dut):
    """Reset between START and done, then the same GEMM and a new one: exact, nothing stale;
    reset during a stalled READ, then a READ: exact."""
    tb = await _bench(dut, axil_delay=2, read_pause="random")
    cfg, (A, B, Cw) = tb.config, tb.depths
    R = cfg.rows
    rng = np.random.default_rng([tb.seed, 2])
    steps = max(2, min(A, B) // 2)
    tn = max(1, min(B // steps, Cw // R // 2))
    m, k, n = shape_of(rng, cfg, 1, tn, steps)
    a, b = operands(rng, cfg, m, k, n)
    a_words, b_words = operand_words(a, b, cfg)
    await tb.load(a_words, 0, b_words, 0)
    await tb.program(m, n, k)
    await tb.start()
    total = tn * steps
    wait = int(rng.integers(2, max(3, total // 2)))
    await tb.cycles(wait)
    assert int(dut.done.value) == 0, \
        f"the GEMM was done after {wait} of {total} cycles: no reset mid-GEMM"
    status = await tb.status()
    assert status.busy, f"STATUS {status} {wait} cycles after START: not BUSY"
    dut._log.info("reset %d cycles after START (the GEMM takes at least %d)", wait, total)
    await tb.reset()
    status = await tb.status()
    assert status.raw == 0, f"STATUS {status} after reset, expected 0; rerun with FP8MAC_SEED={tb.seed}"
    assert int(dut.done.value) == 0 and int(dut.m_axis_c_tvalid.value) == 0
    for reg in ("M", "N", "K", "A_BASE", "B_BASE", "C_BASE", "A_LOAD", "B_LOAD", "C_COUNT",
                "FORMATS", "CYCLES"):
        value = await tb.read(reg)
        assert value == 0, f"{reg} reads {value} after reset, expected 0 (FP8MAC_SEED={tb.seed})"
    # The buffers keep their words: the same GEMM from them, exact (a fresh mac_gemm).
    first = await tb.gemm(a, b, name="the interrupted GEMM again, from the buffers", load=False)
    rows = result_rows(m, n, cfg)
    first_words = await tb.read_c(0, rows)
    # A new GEMM (new operands) over the first C rows, fewer of them: exact, and the rows after
    # it still hold the first GEMM's words (nothing written beyond its own rows).
    formats = random_formats(rng, tb)
    gcfg = tb.gemm_config(formats)
    m2, k2, n2 = shape_of(rng, gcfg, 1, max(1, tn // 2), max(1, steps // 3))
    a2, b2 = operands(rng, gcfg, m2, k2, n2)
    await tb.gemm(a2, b2, formats, name="a new GEMM after the reset")
    rows2 = result_rows(m2, n2, gcfg)
    if rows2 < rows:
        assert await tb.read_c(rows2, rows - rows2) == first_words[rows2:], \
            f"C rows beyond the new GEMM's changed (FP8MAC_SEED={tb.seed})"
    await tb.gemm(a, b, name="the first GEMM once more", load=True, c_base=0)
    # Reset while a READ stalls (tready low, the output FIFO full), then READ again.
    await tb.write("C_BASE", 0)
    await tb.write("C_COUNT", rows)
    await tb.command("READ")
    await tb.cycles(10)
    status = await tb.status()
    assert status.reading, f"STATUS {status} during a stalled READ: not READING"
    await tb.reset()
    await tb.cycles(5)
    assert int(dut.m_axis_c_tvalid.value) == 0, "m_axis_c_tvalid after a reset in a READ"
    assert (await tb.status()).raw == 0
    again = await tb.read_c(0, rows)
    assert again == first_words, f"READ after a reset in a READ differs (FP8MAC_SEED={tb.seed})"
    assert first.engine_cycles > 0


@cocotb.test()
async def error_flags(dut):
    """Every error flag, provoked through the ports and read back alone from STATUS; a refused
    command changes nothing; SLVERR where documented; the engine works afterwards."""
    tb = await _bench(dut, axil_delay=2)
    cfg, (A, B, Cw) = tb.config, tb.depths
    R, C, d = cfg.rows, cfg.cols, cfg.dot
    rng = np.random.default_rng([tb.seed, 3])
    seen = {}

    # A good GEMM first: DONE and its C rows must survive every refused command.
    m, k, n = shape_of(rng, cfg, 1, 1, 2)
    a, b = operands(rng, cfg, m, k, n)
    good = await tb.gemm(a, b, name="before the errors")
    rows = result_rows(m, n, cfg)
    c_words = await tb.read_c(0, rows)

    async def expect(flag, what, done=True):
        """``flag`` alone in STATUS, DONE as ``done`` (None: not checked), then CLEAR."""
        status = await tb.settled_status()
        seen.setdefault(flag, []).append(what)
        assert status.errors == {flag}, (f"{what}: STATUS {status}, expected {flag} alone "
                                         f"(FP8MAC_SEED={tb.seed})")
        assert done is None or status.done == done, f"{what}: STATUS {status}: DONE changed"
        await tb.clear()

    # A START refused by a range check leaves DONE as it was (the last GEMM's).
    range_done = True

    async def start(m_, n_, k_, a_base=0, b_base=0, c_base=0, formats=0):
        await tb.program(m_, n_, k_, a_base, b_base, c_base, formats)
        await tb.command("START")

    await start(0, C, d)
    await expect("ERR_SHAPE", "M = 0")
    await start(R, 0, d)
    await expect("ERR_SHAPE", "N = 0")
    await start(R, C, 0)
    await expect("ERR_SHAPE", "K = 0")
    await start(65536, C, d)
    await expect("ERR_SHAPE", "M = 65536")
    bad = []
    for s, shift in (("a", 0), ("b", 2)):
        count = len(cfg.stream_formats(s))
        if count < 4:
            bad.append((s, count << shift))
    for s, value in bad:
        await start(R, C, d, formats=value)
        await expect("ERR_FORMAT", f"FORMATS index {value} beyond the {s.upper()} formats")
    await tb.write("C_COUNT", 0)
    await tb.command("READ")
    await expect("ERR_READ", "READ of 0 words")
    await tb.write("C_BASE", Cw - 1)
    await tb.write("C_COUNT", 2)
    await tb.command("READ")
    await expect("ERR_C_RANGE", "READ beyond C")
    # Loads beyond a buffer: the words inside land, the rest are dropped and flagged.
    for s, depth in (("a", A), ("b", B), ("w", Cw)):
        if not hasattr(dut, f"s_axis_{s}_tdata"):
            continue
        if s == "w":  # C words: keep the good GEMM's rows, load at the end of C
            c_words_before = await tb.read_c(Cw - 1, 1)
        width = min(62, len(getattr(dut, f"s_axis_{s}_tdata")))
        words = [int(w) for w in rng.integers(0, 1 << width, 3)]
        kw = {f"{s}_words": words, f"{s}_at": depth - 1}
        await tb.load(**kw, check=False)
        assert await tb.read(tb.LOAD_POINTERS[s]) == depth + 2
        await expect("ERR_LOAD", f"{s_port(s)} load beyond the buffer")
        if s == "w":
            got = await tb.read_c(Cw - 1, 1)
            assert got == words[:1], (f"the s_axis_w word that fitted: C word {Cw - 1} reads "
                                      f"{got}, loaded {words[:1]} (before {c_words_before})")
    # The word that fitted is there: a one-word GEMM from the last A and B words.
    a1, b1 = operands(rng, cfg, min(R, 2), d, min(C, 2))
    aw, bw = operand_words(a1, b1, cfg)
    await tb.load(aw[:1], A - 1, bw[:1] + [0, 0], B - 1, check=False)
    await expect("ERR_LOAD", "B load beyond the buffer, again")
    await tb.gemm(a1, b1, a_base=A - 1, b_base=B - 1, c_base=Cw - R,
                  name="from the last buffer words", load=False)
    if "UPDATE" in tb.ctrl:
        # The weight update's own checks: a stochastic UPDATE from the LFSR's dead state.
        await tb.write("U_MODE", 0)
        await tb.write("U_STATE", 0)
        await tb.program(R, C, d)
        await tb.command("UPDATE")
        await expect("ERR_STATE", "stochastic UPDATE with U_STATE = 0")
        await tb.write("U_STATE", 1)
        await tb.program(0, C, d)
        await tb.command("UPDATE")
        await expect("ERR_SHAPE", "UPDATE with M = 0")
    # START refused by the range checks (A, B, C words).
    await start(R, C, 2 * d, a_base=A - 1)
    await expect("ERR_A_RANGE", "A words A-1..A", done=range_done)
    await start(R, C, d, a_base=A)
    await expect("ERR_A_RANGE", "A_BASE = A words", done=range_done)
    if A // 2 + 1 <= B and 2 * R <= Cw:
        await start(2 * R, C, A // 2 * d + 1)  # two tile rows of A/2 + 1 beats
        await expect("ERR_A_RANGE", "two tile rows beyond A", done=range_done)
    await start(R, C, 2 * d, b_base=B - 1)
    await expect("ERR_B_RANGE", "B words B-1..B", done=range_done)
    if B // 2 + 1 <= A and 2 * R <= Cw:
        await start(R, 2 * C, B // 2 * d + 1)
        await expect("ERR_B_RANGE", "two tile columns beyond B", done=range_done)
    await start(R, C, d, c_base=Cw - R + 1)
    await expect("ERR_C_RANGE", "result rows beyond C", done=range_done)
    await start(R, C, d, c_base=Cw)
    await expect("ERR_C_RANGE", "C_BASE = C words", done=range_done)
    if "UPDATE" in tb.ctrl:
        for w_base, c_base in ((Cw - R + 1, 0), (Cw, 0), (0, Cw - R + 1)):
            await tb.program(R, C, d, c_base=c_base)
            await tb.write("W_BASE", w_base)
            await tb.command("UPDATE")
            await expect("ERR_W_RANGE", f"UPDATE with W_BASE {w_base}, C_BASE {c_base}",
                         done=range_done)
    # Nothing ran: C holds the good GEMM's rows.
    assert await tb.read_c(0, rows) == c_words, f"a refused START changed C (FP8MAC_SEED={tb.seed})"

    # Busy: START and READ while a GEMM runs, START and READ while a READ stalls.
    steps = max(2, min(A, B) // 2)
    m, k, n = shape_of(rng, cfg, 1, 1, steps)
    a, b = operands(rng, cfg, m, k, n)
    aw, bw = operand_words(a, b, cfg)
    await tb.load(aw, 0, bw, 0)
    busy_cmds = ("START", "READ") + (("UPDATE",) if "UPDATE" in tb.ctrl else ())
    if "UPDATE" in tb.ctrl:
        await tb.write("U_STATE", 1)  # an UPDATE that would be accepted when idle
    for cmd in busy_cmds:
        await tb.program(m, n, k)
        await tb.command("START")
        await tb.command(cmd)
        status = await tb.status()
        assert status.busy and status.errors == {"ERR_BUSY"}, f"{cmd} during a GEMM: STATUS {status}"
        seen.setdefault("ERR_BUSY", []).append(f"{cmd} during a GEMM")
        await tb.wait_done(10 * steps + 1000)
        status = await tb.status()
        assert status.done and status.errors == {"ERR_BUSY"}, f"after the GEMM: STATUS {status}"
        await tb.clear()
        words = await tb.read_c(0, result_rows(m, n, cfg))
        compare_words(words, padded_expected(a, b, cfg), m, n, cfg, seed=tb.seed,
                      name=f"the GEMM that ignored a {cmd}")
    rows = result_rows(m, n, cfg)
    for cmd in busy_cmds:
        if cmd == "UPDATE":
            await tb.write("U_STATE", 1)  # (the reset below cleared it)
        await tb.write("C_BASE", 0)
        await tb.write("C_COUNT", rows)
        await tb.command("READ")  # nobody takes the words: READING stays
        await tb.cycles(8)
        await tb.command(cmd)
        status = await tb.status()
        assert status.reading and status.errors == {"ERR_BUSY"}, f"{cmd} during a READ: STATUS {status}"
        seen.setdefault("ERR_BUSY", []).append(f"{cmd} during a READ")
        await tb.reset()  # ends the stalled READ (and clears the flags)
        assert (await tb.status()).raw == 0
    # Flags are sticky until CLEAR; a reset clears them too (just checked).
    await start(0, 1, 1)
    await start(1, 1, 1, a_base=A)
    status = await tb.settled_status()
    assert status.errors == {"ERR_SHAPE", "ERR_A_RANGE"}, f"two errors: STATUS {status}"
    await tb.clear()

    # SLVERR: writes to read-only or unknown addresses, reads of write-only or unknown ones (the
    # manifest's register map says which).
    access = {r["name"]: r["access"] for r in tb.register_map["registers"]}
    for reg, acc in access.items():
        if "w" not in acc:
            await tb.write(reg, 0, resp=SLVERR)
        if "r" not in acc:
            assert await tb.read(reg, resp=SLVERR) == 0
    used = set(tb.regs.values())
    unknown = [a for a in (max(used) + 4, 0xFC, 0x09, 0x80) if a not in used and a < 256]
    for addr in unknown:
        await tb.write(addr, 1, resp=SLVERR)
        assert await tb.read(addr, resp=SLVERR) == 0
    await tb.write("M", 0x1234)
    assert await tb.read("M") == 0x1234
    assert (await tb.status()).errors == frozenset(), "SLVERR must not set a flag"
    dut._log.info("SLVERR from read-only, write-only and unknown addresses (%s)",
                  ", ".join(f"0x{a:02x}" for a in unknown))

    # Still working: a GEMM in other formats (if any), exact.
    formats = random_formats(rng, tb)
    gcfg = tb.gemm_config(formats)
    m, k, n = shape_of(rng, gcfg, 2 if A >= 4 else 1, 2 if B >= 4 else 1, 2)
    a, b = operands(rng, gcfg, m, k, n)
    await tb.gemm(a, b, formats, name="after the errors", read_pieces=2)
    assert good.engine_cycles > 0
    missing = set(tb.error_names) - set(seen)
    assert not missing, f"error flags never provoked: {sorted(missing)}"
    for flag in tb.error_names:
        dut._log.info("%-12s provoked by: %s", flag, "; ".join(seen[flag]))
    record_metric("error_flags", {k: v for k, v in seen.items()})


@cocotb.test()
async def done_survives_refused_start(dut):
    """A START refused by a range check leaves DONE (and the ``done`` port) as it was:
    STATUS_BITS says DONE is cleared by the next *accepted* START, and ERRORS that a refused
    command changes nothing else. The engine of commit aa565a5 clears DONE as soon as a START
    passes the shape and format checks, before the range checks refuse it (a known bug: strict
    xfail in tests/test_sim_engine.py)."""
    tb = await _bench(dut)
    cfg, (A, B, Cw) = tb.config, tb.depths
    rng = np.random.default_rng([tb.seed, 6])
    a, b = operands(rng, cfg, cfg.rows, cfg.dot, cfg.cols)
    await tb.gemm(a, b, name="a good GEMM")
    assert int(dut.done.value) == 1
    cases = [("START", "ERR_A_RANGE", (A, 0, 0)), ("START", "ERR_B_RANGE", (0, B, 0)),
             ("START", "ERR_C_RANGE", (0, 0, Cw))]
    if "UPDATE" in tb.ctrl:
        await tb.write("U_STATE", 1)
        cases.append(("UPDATE", "ERR_W_RANGE", (0, 0, Cw)))
    for cmd, flag, bases in cases:
        await tb.program(cfg.rows, cfg.cols, cfg.dot, *bases)
        await tb.command(cmd)
        status = await tb.settled_status()
        assert status.errors == {flag}, f"STATUS {status}, expected {flag}"
        assert status.done and int(dut.done.value) == 1, \
            f"{cmd} refused with {flag} cleared DONE: STATUS {status}, done port {dut.done.value}"
        await tb.clear()


@cocotb.test()
async def mutation(dut):
    """The checks can fail: one wrong expected code, and a wrong BRESP expectation."""
    tb = await _bench(dut, read_pause="random")
    cfg = tb.config
    rng = np.random.default_rng([tb.seed, 4])
    m, k, n = shape_of(rng, cfg, 2, 2, 3)
    a, b = operands(rng, cfg, m, k, n)
    want = mac_gemm(a, b, cfg)
    i, j = int(rng.integers(m)), int(rng.integers(n))
    bit = int(rng.integers(cfg.acc_format.width))
    want[i, j] ^= 1 << bit
    try:
        await tb.gemm(a, b, name="mutated", expected=want)
    except EngineMismatch as exc:
        message = str(exc)
    else:
        raise AssertionError(f"bit {bit} of expected C[{i}][{j}] flipped and nobody noticed")
    dut._log.info("caught as expected: %s", message)
    assert "GEMM 'mutated'" in message and "1 of " in message, message
    assert f"C[{i}][{j}]: " in message and "got 0x" in message and "expected 0x" in message, message
    assert f"FP8MAC_SEED={tb.seed}" in message, message
    # The engine was right: the same GEMM passes with the model's codes.
    await tb.gemm(a, b, name="not mutated")
    try:
        await tb.write("STATUS", 0)  # answers SLVERR; OKAY expected
    except AxiLiteError as exc:
        assert "BRESP=2" in str(exc) and f"FP8MAC_SEED={tb.seed}" in str(exc), str(exc)
    else:
        raise AssertionError("a write answered SLVERR and the master expecting OKAY did not notice")
    # A GEMM that never finishes (a refused START after a reset: done stays low) is reported
    # with STATUS after the timeout.
    await tb.reset()
    await tb.program(0, cfg.cols, cfg.dot)
    await tb.start()
    try:
        await tb.wait_done(50, "a refused START")
    except AssertionError as exc:
        assert "done did not rise within 50 cycles" in str(exc) and "ERR_SHAPE" in str(exc), str(exc)
    else:
        raise AssertionError("done never rose and wait_done did not notice")


@cocotb.test()
async def throughput(dut):
    """A large GEMM at full rate until FP8MAC_RATE_SECONDS have passed: MAC/s with loads and
    READ, and the simulator-alone rate of the compute phase (Python asleep)."""
    tb = await _bench(dut)
    cfg = tb.config
    text = os.environ.get("FP8MAC_ENGINE_MKN", "").strip()
    m, k, n = (tuple(int(x) for x in text.split(",")) if text
               else throughput_shape(cfg, tb.depths))
    min_seconds = float(os.environ.get("FP8MAC_RATE_SECONDS", "1"))
    rng = np.random.default_rng([tb.seed, 5])
    a, b = operands(rng, cfg, m, k, n)
    runs = []
    while not runs or sum(r.seconds for r in runs) < min_seconds:
        runs.append(await tb.gemm(a, b, name=f"throughput {len(runs)}"))
    total = {key: sum(getattr(r, key) for r in runs) for key in
             ("seconds", "cpu_seconds", "load_seconds", "compute_seconds", "read_seconds",
              "compute_cpu_seconds", "cycles", "compute_cycles", "engine_cycles", "macs")}
    sim_rate = total["compute_cycles"] / total["compute_seconds"]
    ideal = -(-m // cfg.rows) * -(-n // cfg.cols) * -(-k // cfg.dot) * len(runs)
    stats = dict(mkn=[m, k, n], repeats=len(runs), **total, ideal_cycles=ideal,
                 array_utilization=ideal / total["engine_cycles"],
                 macs_per_second=total["macs"] / total["seconds"],
                 macs_per_cpu_second=total["macs"] / total["cpu_seconds"],
                 cycles_per_second=total["cycles"] / total["seconds"],
                 sim_only_macs_per_second=total["macs"] / total["compute_seconds"],
                 sim_only_macs_per_cpu_second=total["macs"] / max(total["compute_cpu_seconds"], 1e-9),
                 sim_only_cycles_per_second=sim_rate,
                 python_share=min(1.0, max(0.0, 1 - total["cycles"] / sim_rate / total["seconds"])))
    dut._log.info("%d x %d x %d, %d GEMM(s): %.3g MAC/s (%.2f s: load %.2f, compute %.2f, READ "
                  "%.2f); simulator alone %.3g MAC/s, %.0f cycles/s; Python share %.0f%%",
                  m, k, n, len(runs), stats["macs_per_second"], total["seconds"],
                  total["load_seconds"], total["compute_seconds"], total["read_seconds"],
                  stats["sim_only_macs_per_second"], sim_rate, 100 * stats["python_share"])
    record_metric("throughput", stats)
