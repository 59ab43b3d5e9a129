"""Arrays at scale (issue 14): one processing-element module instantiated per position.

* The seed-port form of the array (every PE and row adder one design, each fed its LFSR start
  states as constants) in Amaranth's simulator, bit for bit against mac_gemm, with every kind of
  LFSR a PE or a row can have.
* The generated Verilog (:func:`fp8mac.hw.emit.accelerator_verilog`): one ``<top>_pe`` and one
  ``<top>_row`` module, ``rows`` row instances ``row_r<r>`` whose ``lfsr_*_start`` constants are
  their PEs' seeds' start states, ``cols`` PE instances ``pe_c<c>`` in the row, lint-clean; its
  size grows by tens of bytes per PE, and a 32 x 32 array is under 2 MB.

The generated arrays on Verilator (16 x 16 and 32 x 32 GEMMs bit for bit) are in
tests/test_sim_scale.py.
"""

from __future__ import annotations

import re

import pytest
from test_hw_array import check

from fp8mac.hw.array import RowOuterAdder
from fp8mac.hw.emit import VERILATOR_HIER_BLOCK, accelerator_verilog
from fp8mac.hw.lfsr import start_state
from fp8mac.hw.lint import lint
from fp8mac.hw.pe import ProcessingElement
from fp8mac.model.config import MacConfig
from fp8mac.model.lfsr import STREAM_INNER, STREAM_OUTER, stream_seed

SEED_PORT_CASES = [
    # (id, config fields, (M, K, N)): between them, an inner and an outer LFSR in each PE, the
    # shared-adder PE's two streams, a row adder's LFSR with inner ones, chunking off.
    ("3x2-inner-and-outer-sr", dict(rows=3, cols=2, chunk=3, inner_rounding="stochastic",
                                    outer_adder="pe", rbits=4), (4, 8, 3)),
    ("2x3-shared-both-sr", dict(rows=2, cols=3, chunk=3, inner_rounding="stochastic",
                                pe="shared-adder"), (2, 8, 3)),
    ("2x3-row-outer-sr-inner-sr", dict(rows=2, cols=3, chunk=4, outer_adder="row",
                                       inner_rounding="stochastic"), (3, 13, 5)),
    ("2x2-chunk-off-inner-sr", dict(rows=2, cols=2, chunk=None, inner_rounding="stochastic",
                                    rbits=3), (3, 9, 2)),
]


@pytest.mark.parametrize("name,fields,shape", SEED_PORT_CASES, ids=[c[0] for c in SEED_PORT_CASES])
def test_seed_port_array_matches_model(name, fields, shape, seed):
    """The array whose PEs and row adders take their seeds from ports, under random pauses."""
    m, k, n = shape
    check(MacConfig(**fields), m, k, n, seed, seed_ports=True)


def _constant(text: str) -> int:
    """The value of a Verilog constant as Yosys writes it (``32'd123``, ``128'h00ff...``)."""
    width, base, digits = re.fullmatch(r"(\d+)'([dhb])([0-9a-fA-F_]+)", text.strip()).groups()
    return int(digits.replace("_", ""), {"d": 10, "h": 16, "b": 2}[base])


def _instances(text: str, module: str) -> dict[str, dict[str, str]]:
    """``{instance name: {port: connection}}`` of every instance of ``module``."""
    found = {}
    for name, body in re.findall(rf"^  {module} (\w+) \((.*?)\n  \);", text, re.M | re.S):
        found[name] = dict(re.findall(r"\.(\w+)\(([^()]*)\)", body))
    return found


def _modules(text: str) -> list[str]:
    return re.findall(r"^module (\S+?) ?\(", text, re.M)


def _module_text(text: str, name: str) -> str:
    body = text[text.index(f"module {name}("):]
    return body[:body.index("endmodule")]


def test_one_pe_module_and_one_row_module(tmp_path):
    """3 x 4 with an inner and an outer LFSR in each PE: one ``acc_pe`` and one ``acc_row``
    module; row r is instance ``row_r<r>`` whose ``lfsr_*_start`` constants hold, in lane c, PE
    (r, c)'s start states (the built-in form's LFSR reset states); the row passes lane c to its
    instance ``pe_c<c>``; lint-clean."""
    config = MacConfig(rows=3, cols=4, chunk=8, inner_rounding="stochastic", outer_adder="pe",
                       top="acc", seed=99)
    text = accelerator_verilog(config)
    modules = _modules(text)
    assert modules.count("acc_pe") == 1 and modules.count("acc_row") == 1
    rows = _instances(text, "acc_row")
    assert sorted(rows) == ["row_r0", "row_r1", "row_r2"]
    starts = set()
    for r in range(3):
        for port, stream in (("lfsr_inner_start", STREAM_INNER), ("lfsr_outer_start", STREAM_OUTER)):
            lanes = _constant(rows[f"row_r{r}"][port])
            for c in range(4):
                lane = (lanes >> (32 * c)) & (2**32 - 1)
                assert lane == ProcessingElement.seed_port_values(config, r, c)[port]
                assert lane == start_state(stream_seed(99, r, c, stream, 32), 32, config.rbits)
                starts.add(lane)
        assert rows[f"row_r{r}"]["clk"] == "clk" and rows[f"row_r{r}"]["rst"] == "rst"
    assert len(starts) == 2 * 12  # every stream its own seed
    row = _module_text(text, "acc_row")
    pes = _instances(row, "acc_pe")
    assert sorted(pes) == [f"pe_c{c}" for c in range(4)]
    for c in range(4):
        assert pes[f"pe_c{c}"]["lfsr_inner_start"] == f"lfsr_inner_start[{32 * c + 31}:{32 * c}]"
    assert VERILATOR_HIER_BLOCK in row
    assert "input [31:0] lfsr_outer_start;" in _module_text(text, "acc_pe")
    path = tmp_path / "acc.v"
    path.write_text(text)
    lint(path, "acc")


def test_default_design_row_adder_seeds():
    """The default PE has no LFSR (one identical PE everywhere); each row's adder gets its row's
    LFSR start state."""
    config = MacConfig(rows=3, cols=2)
    assert config.outer_placement == "row" and config.stochastic_streams == ()
    text = accelerator_verilog(config)
    top = config.top
    rows = _instances(text, f"{top}_row")
    assert sorted(rows) == ["row_r0", "row_r1", "row_r2"]
    for r in range(3):
        assert _constant(rows[f"row_r{r}"]["row_lfsr_start"]) == \
            RowOuterAdder.seed_port_values(config, r)["lfsr_start"]
        assert not any(p.startswith("lfsr_") for p in rows[f"row_r{r}"])
    assert "outer_add" in _module_text(text, f"{top}_row")


def test_verilog_grows_by_instances_not_by_pes():
    """4 x 4, 8 x 8, 32 x 32: the same modules (one PE); tens of bytes more per added PE; the PE
    and row modules are most of an 8 x 8 design; a 32 x 32 design is well under 2 MB."""
    texts = {n: accelerator_verilog(MacConfig(rows=n, cols=n)) for n in (4, 8, 32)}
    assert _modules(texts[4]) == _modules(texts[8]) == _modules(texts[32])
    per_pe = (len(texts[32]) - len(texts[8])) / (32 * 32 - 8 * 8)
    assert per_pe < 200, f"{per_pe:.0f} bytes per PE"
    # The row module (its outer adder) and the PE module with their submodules come last.
    shared = len(texts[8]) - texts[8].index("module fp8mac_array_row(")
    assert len(texts[8]) - len(texts[4]) < 0.25 * shared and shared > 0.7 * len(texts[8])
    assert len(texts[32]) < 2_000_000
