"""The layer engine (hw/engine.py) in Amaranth's simulator: whole GEMMs from its buffers against
mac_gemm, and each documented error flag for bad programming."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.sim import Simulator

from fp8mac.hw.engine import CTRL_BITS, ERRORS, REGISTERS, STATUS_BITS, Engine, EngineConfig
from fp8mac.model.config import MacConfig
from fp8mac.model.gemm import mac_gemm
from fp8mac.sim.engine_bench import operand_words
from fp8mac.sim.tiler import assemble, result_words


class Host:
    """AXI4-Lite and load-stream helpers for an Amaranth testbench."""

    def __init__(self, dut, ctx):
        self.dut, self.ctx = dut, ctx

    async def write(self, name, value):
        dut, ctx = self.dut, self.ctx
        ctx.set(dut.s_axil_awaddr, REGISTERS[name][0])
        ctx.set(dut.s_axil_wdata, value)
        ctx.set(dut.s_axil_awvalid, 1)
        ctx.set(dut.s_axil_wvalid, 1)
        ctx.set(dut.s_axil_bready, 1)
        await ctx.tick().until(dut.s_axil_awready)
        ctx.set(dut.s_axil_awvalid, 0)
        ctx.set(dut.s_axil_wvalid, 0)
        (resp,) = await ctx.tick().sample(dut.s_axil_bresp).until(dut.s_axil_bvalid)
        return resp

    async def read(self, name):
        """A register's value (``name``, or a byte address); its RRESP in ``self.rresp``."""
        dut, ctx = self.dut, self.ctx
        ctx.set(dut.s_axil_araddr, REGISTERS[name][0] if isinstance(name, str) else name)
        ctx.set(dut.s_axil_arvalid, 1)
        ctx.set(dut.s_axil_rready, 1)
        await ctx.tick().until(dut.s_axil_arready)
        ctx.set(dut.s_axil_arvalid, 0)
        data, self.rresp = await ctx.tick().sample(dut.s_axil_rdata, dut.s_axil_rresp).until(dut.s_axil_rvalid)
        return data

    async def load(self, stream, words, at):
        dut, ctx = self.dut, self.ctx
        await self.write(f"{stream.upper()}_LOAD", at)
        valid, data = getattr(dut, f"s_axis_{stream}_tvalid"), getattr(dut, f"s_axis_{stream}_tdata")
        for w in words:
            ctx.set(valid, 1)
            ctx.set(data, w)
            await ctx.tick()
        ctx.set(valid, 0)

    async def gemm(self, m, n, k, a_base=0, b_base=0, c_base=0, formats=0):
        for name, value in (("M", m), ("N", n), ("K", k), ("A_BASE", a_base), ("B_BASE", b_base),
                            ("C_BASE", c_base), ("FORMATS", formats)):
            await self.write(name, value)
        await self.write("CTRL", 1 << CTRL_BITS["START"])

    async def wait_done(self, limit=100_000):
        for _ in range(limit):
            if self.ctx.get(self.dut.done):
                return
            await self.ctx.tick()
        raise AssertionError("DONE never rose")

    async def read_c(self, base, count):
        dut, ctx = self.dut, self.ctx
        await self.write("C_BASE", base)
        await self.write("C_COUNT", count)
        await self.write("CTRL", 1 << CTRL_BITS["READ"])
        ctx.set(dut.m_axis_c_tready, 1)
        words = []
        while len(words) < count:
            _, _, valid, data, last = await ctx.tick().sample(dut.m_axis_c_tvalid, dut.m_axis_c_tdata,
                                                              dut.m_axis_c_tlast)
            if valid:
                words.append(data)
                assert bool(last) == (len(words) == count)
        return words


def run(dut, body):
    sim = Simulator(dut)
    sim.add_clock(1e-8)

    async def tb(ctx):
        await body(Host(dut, ctx))

    sim.add_testbench(tb)
    sim.run()


@pytest.mark.parametrize("fields, shape", [
    (dict(rows=2, cols=3, chunk=4, inner_rounding="stochastic", rbits=4), (5, 9, 7)),
    (dict(rows=3, cols=2, chunk=8, dot=2, outer_adder="row"), (4, 13, 5)),
    (dict(rows=2, cols=2, chunk=None), (1, 1, 1)),
])
def test_engine_gemms_match_the_model(fields, shape, seed):
    """Two GEMMs back to back from different buffer regions, results read back in two pieces:
    every code the model's."""
    config = MacConfig(**fields)
    m, k, n = shape
    rng = np.random.default_rng(seed)
    fin = config.in_format
    finite = np.flatnonzero(np.isfinite(fin.decode(np.arange(256))))
    dut = Engine(config, EngineConfig(a_words=64, b_words=64, c_words=64))
    gemms = [(rng.choice(finite, (m, k)), rng.choice(finite, (k, n))) for _ in range(2)]
    got = []

    async def body(host):
        for g, (a, b) in enumerate(gemms):
            a_words, b_words = operand_words(a, b, config)
            await host.load("a", a_words, 3 + g)
            await host.load("b", b_words, 5 * g)
            rows = -(-m // config.rows) * -(-n // config.cols) * config.rows
            await host.gemm(m, n, k, a_base=3 + g, b_base=5 * g, c_base=7 * g)
            await host.wait_done()
            assert await host.read("CYCLES") > 0
            status = await host.read("STATUS")
            assert status >> 8 == 0 and status & (1 << STATUS_BITS["DONE"]), f"STATUS {status:#x}"
            half = rows // 2
            words = await host.read_c(7 * g, half) if half else []
            words += await host.read_c(7 * g + half, rows - half)
            got.append(assemble(words, m, n, config))

    run(dut, body)
    # Every START restarts the array's random streams: each GEMM is a fresh mac_gemm.
    for g, (a, b) in enumerate(gemms):
        np.testing.assert_array_equal(got[g], mac_gemm(a, b, config), err_msg=f"GEMM {g}, FP8MAC_SEED={seed}")


def flags(status):
    return {name for name, (bit, _) in ERRORS.items() if status >> bit & 1}


def test_engine_error_flags():
    """Each documented error, by bad programming; each refused command leaves the engine idle
    (no DONE), the flags stay until CLEAR, writes to read-only or unknown addresses answer
    SLVERR, and a good GEMM still runs afterwards."""
    config = MacConfig(rows=2, cols=2, chunk=4, a_formats=("fp8_e4m3", "fp8_e5m2"), b_format="fp8_e4m3")
    dut = Engine(config, EngineConfig(a_words=8, b_words=8, c_words=8))
    seen = {}

    async def expect(host, key, want):
        status = await host.read("STATUS")
        while status & (1 << STATUS_BITS["BUSY"]):                  # a START's checks
            status = await host.read("STATUS")
        seen[key] = (flags(status), bool(status >> STATUS_BITS["DONE"] & 1))
        assert seen[key] == (want, False), f"{key}: STATUS {status:#x}"
        assert await host.write("CTRL", 1 << CTRL_BITS["CLEAR"]) == 0
        assert flags(await host.read("STATUS")) == set()

    async def body(host):
        await host.gemm(2, 2, 0)                                    # K = 0
        await expect(host, "k0", {"ERR_SHAPE"})
        await host.gemm(2, 2, 5, a_base=4)                          # A: words 4..8, the buffer has 8
        await expect(host, "a", {"ERR_A_RANGE"})
        await host.gemm(2, 2, 3, b_base=6)                          # B: words 6..8
        await expect(host, "b", {"ERR_B_RANGE"})
        await host.gemm(5, 4, 2)                                    # C: 3 x 2 tiles x 2 rows = 12 > 8
        await expect(host, "c", {"ERR_C_RANGE"})
        await host.gemm(2, 2, 2, a_base=8)                          # A_BASE out of range
        await expect(host, "base", {"ERR_A_RANGE"})
        await host.gemm(2, 2, 2, formats=2)                         # A has 2 formats: index 2 is none
        await expect(host, "fmt", {"ERR_FORMAT"})
        await host.gemm(2, 2, 2, formats=1 << 2)                    # B has one format: index 1 is none
        await expect(host, "fmt_b", {"ERR_FORMAT"})
        await host.load("a", [1, 2, 3], 6)                          # words 8 is beyond the buffer
        await expect(host, "load", {"ERR_LOAD"})
        assert await host.read("A_LOAD") == 9
        await host.write("C_COUNT", 0)
        await host.write("CTRL", 1 << CTRL_BITS["READ"])            # READ nothing
        await expect(host, "read0", {"ERR_READ"})
        await host.write("C_BASE", 6)
        await host.write("C_COUNT", 3)
        await host.write("CTRL", 1 << CTRL_BITS["READ"])            # READ beyond the buffer
        await expect(host, "read", {"ERR_C_RANGE"})
        assert await host.write("STATUS", 0) == 2                   # read-only: SLVERR
        assert await host.write("CYCLES", 0) == 2
        await host.write("M", 7)
        assert await host.read("M") == 7 and host.rresp == 0
        assert await host.read(0xFC) == 0 and host.rresp == 2       # unknown: SLVERR
        assert await host.read("CTRL") == 0 and host.rresp == 2     # write-only
        assert await host.read("DEPTHS") == 3 | 3 << 8 | 3 << 16
        # START while busy: a long GEMM, then START again.
        await host.load("a", [0] * 8, 0)
        await host.load("b", [0] * 8, 0)
        await host.write("C_COUNT", 1)
        await host.gemm(2, 2, 8)
        await host.write("CTRL", 1 << CTRL_BITS["START"])
        status = await host.read("STATUS")
        assert status & (1 << STATUS_BITS["BUSY"]) and flags(status) == {"ERR_BUSY"}, f"{status:#x}"
        await host.wait_done()
        assert flags(await host.read("STATUS")) == {"ERR_BUSY"}     # sticky through the GEMM
        assert await host.read_c(0, 2) == [0, 0]                    # +0 x +0 sums

    run(dut, body)
    assert set(seen) == {"k0", "a", "b", "c", "base", "fmt", "fmt_b", "load", "read0", "read"}


@pytest.mark.parametrize("mode", ["stochastic", "nearest"])
def test_engine_update_matches_the_model(mode, seed):
    """UPDATE on master weights loaded through s_axis_w, the gradient a weight-gradient GEMM's
    results (the engine computes them), then again with the stream continued from U_STATE: the
    weights read back and the LFSR state are those of fp8mac.model.update.sgd_update."""
    from fp8mac.model.formats import FORMATS
    from fp8mac.model.lfsr import Lfsr
    from fp8mac.model.update import sgd_update

    config = MacConfig(rows=2, cols=3, chunk=4, rbits=6)
    F = FORMATS["fp16_ibm"]
    rng = np.random.default_rng(seed)
    m, k, n = 5, 6, 4          # dW = X^T (m x k) . dY (k x n): a 5 x 4 weight matrix
    fin = config.in_format
    small = np.flatnonzero(np.isfinite(fin.decode(np.arange(256))) & (np.abs(fin.decode(np.arange(256))) < 4))
    x, dy = rng.choice(small, (m, k)), rng.choice(small, (k, n))
    w0 = F.encode(rng.normal(0, 0.5, (m, n)))
    lr = int(F.encode(0.01))
    state = int(rng.integers(1, 2**32))
    rows = -(-m // config.rows) * -(-n // config.cols) * config.rows
    got, states = [], []

    async def body(host):
        a_words, b_words = operand_words(x, dy, config)
        await host.load("a", a_words, 0)
        await host.load("b", b_words, 0)
        await host.write("C_LOAD", 40)
        for word in result_words(w0, config):
            host.ctx.set(host.dut.s_axis_w_tvalid, 1)
            host.ctx.set(host.dut.s_axis_w_tdata, word)
            await host.ctx.tick()
        host.ctx.set(host.dut.s_axis_w_tvalid, 0)
        await host.gemm(m, n, k, c_base=10)                          # G at word 10
        await host.wait_done()
        for name, value in (("W_BASE", 40), ("LR", lr), ("U_STATE", state),
                            ("U_MODE", int(mode == "nearest"))):
            await host.write(name, value)
        for _ in range(2):
            await host.write("C_BASE", 10)                           # READ below moves it
            await host.write("CTRL", 1 << CTRL_BITS["UPDATE"])
            await host.wait_done()
            status = await host.read("STATUS")
            assert flags(status) == set() and not status & 1, f"STATUS {status:#x}"
            got.append(assemble(await host.read_c(40, rows), m, n, config))
            states.append(await host.read("U_STATE"))

    run(Engine(config, EngineConfig(a_words=32, b_words=32, c_words=64)), body)
    g = mac_gemm(x, dy, config)
    lfsr = Lfsr(32, state)
    w = w0
    for step in range(2):
        w = sgd_update(F, w, g, lr, mode, lfsr if mode == "stochastic" else None, config.rbits)
        np.testing.assert_array_equal(got[step], w, err_msg=f"update {step}, FP8MAC_SEED={seed}")
        assert states[step] == (lfsr.state if mode == "stochastic" else state)
    assert not np.array_equal(got[0], w0)  # the step changed weights


def test_engine_update_errors():
    config = MacConfig(rows=2, cols=2, chunk=4)
    seen = []

    async def body(host):
        await host.write("M", 3)
        await host.write("N", 3)
        await host.write("U_STATE", 0)
        await host.write("CTRL", 1 << CTRL_BITS["UPDATE"])          # stochastic from the dead state
        seen.append(flags(await host.read("STATUS")))
        await host.write("CTRL", 1 << CTRL_BITS["CLEAR"])
        await host.write("U_STATE", 1)
        await host.write("W_BASE", 5)                                # 2 x 2 tiles x 2 rows = 8 words
        await host.write("CTRL", 1 << CTRL_BITS["UPDATE"])
        while (status := await host.read("STATUS")) & 1:
            pass
        seen.append(flags(status))

    run(Engine(config, EngineConfig(a_words=8, b_words=8, c_words=8)), body)
    assert seen == [{"ERR_STATE"}, {"ERR_W_RANGE"}]


def test_readme_documents_the_register_map():
    """Every register (with its offset), CTRL bit and error flag appears in the README's engine
    section."""
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = text[text.index("### The layer engine"):text.index("### Design points")]
    for name, (offset, access, _) in REGISTERS.items():
        assert f"| 0x{offset:02X} | `{name}` | {access} |" in section, name
    for name in list(ERRORS) + [f"CTRL.{c}" for c in CTRL_BITS]:
        assert name in section, name


def test_done_low_while_a_command_is_checked_then_restored_if_refused():
    """DONE after a GEMM; a START that a range check refuses drops it while checking and puts it
    back (with its error flag); an accepted START keeps it low until its GEMM is done."""
    config = MacConfig(rows=2, cols=2, chunk=None)
    trace = []

    async def body(host):
        await host.gemm(2, 2, 4)
        await host.wait_done()
        trace.append(("first", host.ctx.get(host.dut.done)))
        await host.gemm(2, 2, 9)                                    # 9 A words > 8: refused
        trace.append(("checking", host.ctx.get(host.dut.done)))
        await host.wait_done()
        trace.append(("refused", flags(await host.read("STATUS")), host.ctx.get(host.dut.done)))
        await host.write("CTRL", 1 << CTRL_BITS["CLEAR"])
        await host.gemm(2, 2, 8)
        trace.append(("running", host.ctx.get(host.dut.done)))
        await host.wait_done()
        trace.append(("second", flags(await host.read("STATUS")), host.ctx.get(host.dut.done)))

    run(Engine(config, EngineConfig(a_words=8, b_words=8, c_words=8)), body)
    assert trace == [("first", 1), ("checking", 0), ("refused", {"ERR_A_RANGE", "ERR_B_RANGE"}, 1),
                     ("running", 0), ("second", set(), 1)]


def test_loads_while_a_gemm_runs(seed):
    """Double buffering: the next GEMM's operands are loaded into other buffer words while a GEMM
    computes from the first ones; both GEMMs are the model's."""
    config = MacConfig(rows=2, cols=2, chunk=4, inner_rounding="stochastic", rbits=4)
    rng = np.random.default_rng(seed)
    fin = config.in_format
    finite = np.flatnonzero(np.isfinite(fin.decode(np.arange(256))))
    (m, k, n) = (3, 12, 4)
    gemms = [(rng.choice(finite, (m, k)), rng.choice(finite, (k, n))) for _ in range(2)]
    got, overlapped = [], []

    async def body(host):
        words = [operand_words(a, b, config) for a, b in gemms]
        await host.load("a", words[0][0], 0)
        await host.load("b", words[0][1], 0)
        await host.gemm(m, n, k, c_base=0)
        # while it runs: the second GEMM's words after the first's
        await host.load("a", words[1][0], 32)
        await host.load("b", words[1][1], 32)
        overlapped.append(host.ctx.get(host.dut.done) == 0)        # the first was still running
        await host.wait_done()
        got.append(assemble(await host.read_c(0, 8), m, n, config))
        await host.gemm(m, n, k, a_base=32, b_base=32, c_base=8)
        await host.wait_done()
        assert flags(await host.read("STATUS")) == set()
        got.append(assemble(await host.read_c(8, 8), m, n, config))

    run(Engine(config, EngineConfig(a_words=64, b_words=64, c_words=16)), body)
    assert overlapped == [True], "the loads did not overlap the GEMM: make it longer"
    for g, (a, b) in enumerate(gemms):
        np.testing.assert_array_equal(got[g], mac_gemm(a, b, config), err_msg=f"GEMM {g}, FP8MAC_SEED={seed}")
