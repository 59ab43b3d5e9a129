"""cocotb test of the arithmetic blocks: every result code against the golden model.

Run through :func:`fp8mac.sim.arith_harness.run_arith`, which builds a stream harness of
``sim/arith_harness.py`` and describes it in the ``FP8MAC_ARITH`` environment variable (JSON:
the block, its formats, rounding, random bits, the ``s_axis_tdata`` fields, the number of cases
and the pause pattern). Stimulus comes from the run's seed (``FP8MAC_SEED``), or from the
caller's ``.npz`` file named by ``stimulus`` (one array per input; ``a`` and ``b`` of a ``dot``
step with a last axis of ``dot`` terms); the expected codes are computed up front, vectorized,
by :func:`~fp8mac.model.arith.fp_fma` (``mac``), :func:`~fp8mac.model.arith.fp_dot` (``dot``),
:func:`~fp8mac.model.arith.fp_add` (``adder``) or :func:`~fp8mac.model.lfsr.draw_sequences`
(``lfsr``), unless the file holds them (``expected``); the scoreboard checks each result as it
leaves the harness and names the failing case's operands.

Operands mix three kinds of cases: uniformly random codes (every exponent, specials, signs);
pairs whose exact sum needs rounding at every alignment the adder's window handles (the
accumulator within a few dozen binades of the product, either sign, so cancellation and
sticky borrows happen); and edge codes (zeros, subnormals, the largest finite value, infinities
and NaN) against anything. A ``dot`` step's terms are drawn the same way, a quarter of its cases
with term 1 the exact negation of term 0 (so that the smaller terms decide the sum), and the
accumulator within a few dozen binades of the sum of the products, either sign.
"""

from __future__ import annotations

import json
import os
import time

import cocotb
import numpy as np

from fp8mac.model.arith import fp_add, fp_dot, fp_fma
from fp8mac.model.formats import FloatFormat
from fp8mac.model.lfsr import draw_sequences
from fp8mac.sim.axis import StreamDriver, StreamSink, reset, start_clock
from fp8mac.sim.pause import pause_generator
from fp8mac.sim.runner import record_metric, test_seed
from fp8mac.sim.scoreboard import Scoreboard


def edge_codes(fmt: FloatFormat) -> np.ndarray:
    """Zeros, the smallest and largest subnormals, the smallest normal, one, the largest finite
    value, infinity and NaN where the format has them; both signs."""
    m = fmt.man_bits
    codes = [0, 1, (1 << m) - 1, 1 << m, (fmt.bias << m), fmt.max_code]
    if fmt.has_inf:
        codes.append(fmt.inf_code)
    if fmt.has_nan:
        codes.append(fmt.nan_code)
    codes = np.array(codes, dtype=np.int64)
    return np.concatenate([codes, codes | (1 << (fmt.width - 1))])


def near(rng, fmt: FloatFormat, values: np.ndarray, spread: int) -> np.ndarray:
    """Codes of ``fmt`` within ``2**-spread .. 2**spread`` of ``|values|``, random signs (NaN and
    infinite values stay so)."""
    n = values.shape[0]
    scale = np.ldexp(rng.uniform(1.0, 2.0, n), rng.integers(-spread, spread + 1, n))
    sign = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    with np.errstate(invalid="ignore", over="ignore"):
        return fmt.encode(np.abs(values) * scale * sign).astype(np.int64)


def mixed(rng, fmt: FloatFormat, n: int, partner: np.ndarray | None = None,
          spread: int = 0) -> np.ndarray:
    """``n`` codes: 45 % uniform, 45 % near ``partner`` (uniform if None), 10 % edge codes."""
    codes = rng.integers(0, 1 << fmt.width, n, dtype=np.int64)
    kind = rng.random(n)
    if partner is not None:
        close = kind < 0.45
        codes[close] = near(rng, fmt, partner[close], spread)
    edge = kind >= 0.9
    codes[edge] = rng.choice(edge_codes(fmt), int(edge.sum()))
    return codes


def dot_operands(rng, acc_fmt: FloatFormat, in_fmt: FloatFormat, dot: int, n: int,
                 spread: int, b_fmt: FloatFormat | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(acc, a, b)`` of ``n`` dot steps, ``a`` (``in_fmt``) and ``b`` (``b_fmt``, default
    ``in_fmt``) of shape ``(n, dot)``: terms as :func:`mixed`, a quarter of the cases with
    ``a_1*b_1 = -(a_0*b_0)`` exactly, ``acc`` as :func:`mixed` near the sum of the products
    (within ``2**spread``)."""
    b_fmt = in_fmt if b_fmt is None else b_fmt
    a = mixed(rng, in_fmt, n * dot).reshape(n, dot)
    b = mixed(rng, b_fmt, n * dot).reshape(n, dot)
    cancel = rng.random(n) < 0.25
    a[cancel, 1] = a[cancel, 0] ^ (1 << (in_fmt.width - 1))
    b[cancel, 1] = b[cancel, 0]
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf, 0 * inf: NaN
        total = (in_fmt.decode(a) * b_fmt.decode(b)).sum(axis=1)
    return mixed(rng, acc_fmt, n, total, spread), a, b


def pack(fields, values: dict) -> list[int]:
    """``s_axis_tdata`` beats: the fields' codes concatenated, the first in the lowest bits; a
    2-D field (the terms of a dot step) has term ``j`` at ``j * width / terms`` within it."""
    beats = np.zeros(len(next(iter(values.values()))), dtype=object)
    shift = 0
    for name, width in fields:
        codes = np.asarray(values[name])
        if codes.ndim == 1:
            beats |= codes.astype(object) << shift
        else:
            term = width // codes.shape[1]
            for j in range(codes.shape[1]):
                beats |= codes[:, j].astype(object) << (shift + j * term)
        shift += width
    return beats.tolist()


def load_stimulus(path: str) -> dict[str, np.ndarray]:
    """The arrays of a stimulus file (:func:`fp8mac.sim.arith_harness.run_harness` writes it)."""
    with np.load(path) as data:
        return {key: data[key].astype(np.int64) for key in data.files}


class ArithTb:
    """Stimulus, expected codes and the stream components for one harness."""

    def __init__(self, dut, cfg: dict):
        self.dut = dut
        self.cfg = cfg
        self.seed = test_seed()
        rng = np.random.default_rng(self.seed)
        block = cfg["block"]
        rounding, rbits = cfg.get("rounding"), cfg.get("rbits")
        given = load_stimulus(cfg["stimulus"]) if cfg.get("stimulus") else None
        expected = None if given is None else given.pop("expected", None)
        n = cfg["cases"] if given is None else len(next(iter(given.values())))
        values: dict[str, np.ndarray] = {}
        if given is not None:
            if block == "lfsr":
                raise ValueError("the lfsr block takes no stimulus")
            values = given
        elif "stochastic" in (rounding if isinstance(rounding, list) else [rounding]):
            values["rand"] = rng.integers(0, 1 << rbits, n, dtype=np.int64)
        rand = values.get("rand") if rounding == "stochastic" else None
        self.lanes = [tuple(lane) for lane in cfg.get("lanes", [])]  # dot: (structure, rounding)
        if block in ("mac", "dot"):
            acc_fmt, in_fmt = FloatFormat(**cfg["acc_format"]), FloatFormat(**cfg["in_format"])
            b_fmt = FloatFormat(**cfg["b_format"]) if "b_format" in cfg else in_fmt
        if block == "mac":
            if given is None:
                values["a"] = mixed(rng, in_fmt, n)
                values["b"] = mixed(rng, b_fmt, n)
                with np.errstate(invalid="ignore"):  # 0 * inf: NaN, as it should be
                    product = in_fmt.decode(values["a"]) * b_fmt.decode(values["b"])
                values["acc"] = mixed(rng, acc_fmt, n, product,
                                      acc_fmt.precision + (rbits or 0) + 4)
            if expected is None:
                expected = fp_fma(acc_fmt, in_fmt, values["acc"], values["a"], values["b"],
                                  rounding, rand, rbits, b_fmt=b_fmt)
            self.fmt = acc_fmt
        elif block == "dot":
            if given is None:
                values["acc"], values["a"], values["b"] = dot_operands(
                    rng, acc_fmt, in_fmt, cfg["dot"], n, acc_fmt.precision + (rbits or 0) + 4, b_fmt)
            for key in ("a", "b"):
                if values[key].shape != (n, cfg["dot"]):
                    raise ValueError(f"stimulus {key} has shape {values[key].shape}, expected "
                                     f"({n}, {cfg['dot']})")
            if expected is None:  # one model run per rounding, one column per lane
                model = {r: fp_dot(acc_fmt, in_fmt, values["acc"], values["a"], values["b"], r,
                                   *((values["rand"], rbits) if r == "stochastic" else ()), b_fmt=b_fmt)
                         for r in sorted({r for _, r in self.lanes})}
                expected = np.stack([model[r] for _, r in self.lanes], axis=1)
            self.fmt = acc_fmt
        elif block == "adder":
            fmt = FloatFormat(**cfg["fmt"])
            if given is None:
                values["a"] = mixed(rng, fmt, n)
                values["b"] = mixed(rng, fmt, n, fmt.decode(values["a"]),
                                    fmt.precision + (rbits or 0) + 4)
            if expected is None:
                expected = fp_add(fmt, values["a"], values["b"], rounding, rand, rbits)
            self.fmt = fmt
        elif block == "lfsr":
            expected = draw_sequences(cfg["seed"], cfg["width"], cfg["rbits"], n)
            self.fmt = None  # raw bits
        else:
            raise ValueError(f"unknown block {block!r}")
        self.cases = n
        self.values = {name: values[name] for name, _ in cfg["fields"]}
        self.tdata = pack(cfg["fields"], self.values) if cfg["fields"] else []
        self.scoreboard = Scoreboard(expected, self.fmt, lanes=max(1, len(self.lanes)),
                                     seed=self.seed, name=block, locate=self.describe,
                                     width=cfg["rbits"] if self.fmt is None else None)
        start_clock(dut)
        pause = cfg.get("pause", "none")
        if self.tdata:
            self.driver = StreamDriver(dut, "s_axis",
                                       pause=pause_generator(pause, self.seed, "s_axis"))
        self.sink = StreamSink(dut, "m_axis", callback=self.scoreboard,
                               pause=pause_generator(pause, self.seed, "m_axis"))

    def describe(self, k: int) -> str:
        """Result ``k``'s case, its operands and (``dot``) the step that computed it, for a
        mismatch message."""
        lane = ""
        if self.lanes:
            k, index = divmod(k, len(self.lanes))
            lane = " [{} {}]".format(*self.lanes[index])
        operands = ", ".join(f"{name}={self._hex(v[k])}" for name, v in self.values.items())
        return f"case {k}" + (f" ({operands})" if operands else "") + lane

    @staticmethod
    def _hex(code) -> str:
        if np.ndim(code):  # the terms of a dot step
            return "(" + ", ".join(f"0x{int(c):x}" for c in code) + ")"
        return f"0x{int(code):x}"

    async def run(self) -> float:
        """Reset, stream every case through, wait for every result; returns CPU seconds."""
        await reset(self.dut)
        n = self.cases
        start = time.process_time()
        if self.tdata:
            self.driver.send_nowait(self.tdata)
        await self.sink.wait_for(n, timeout_cycles=100 * n + 1000)
        seconds = time.process_time() - start
        self.scoreboard.check_complete()
        return seconds


@cocotb.test()
async def cases(dut):
    """Every case's result code equals the golden model's."""
    cfg = json.loads(os.environ["FP8MAC_ARITH"])
    tb = ArithTb(dut, cfg)
    seconds = await tb.run()
    rate = tb.cases / seconds if seconds > 0 else float("inf")
    dut._log.info("%d %s cases checked in %.2f s CPU: %.0f cases/s", tb.cases, cfg["block"],
                  seconds, rate)
    record_metric("cases_per_second", rate)
