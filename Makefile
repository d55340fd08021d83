# The two commands: `make demo` and `make test`. Both create .venv and install what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test bench bench-live live-tools clean browser

$(BIN)/python:
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "tidal needs Python >= 3.11"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@ $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/tidal compare examples/azure_llm_conv.yaml --policies-file examples/policies/demo.yaml --out results/demo

test: $(VENV)/.installed-test browser
	$(BIN)/python -m pytest

# The HTML report and the controller's dashboard are checked in headless Chromium (Debian's
# package); install it when missing. A failed install only skips those tests.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium for the browser tests"; \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
	      || echo "could not install chromium: the browser tests will be skipped"; \
	  else echo "chromium not found: the browser tests will be skipped"; fi; }

bench: $(VENV)/.installed-test
	$(BIN)/python benchmarks/bench_simulator.py

# The live benchmark (docs/performance.md, "Live serving"): parity with the simulator, and the
# balancer's overhead next to nginx, loaded by wrk. Both come from Debian; without them the
# nginx row is skipped and the maximum-throughput runs use `tidal load --closed`.
LIVE_TOOLS := nginx wrk

live-tools:
	@missing=""; for tool in $(LIVE_TOOLS); do \
	  command -v $$tool >/dev/null 2>&1 || [ -x /usr/sbin/$$tool ] || missing="$$missing $$tool"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing$$missing for the live benchmark"; \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; } \
	      || echo "could not install$$missing: the benchmark runs without it"; \
	  else echo "not found:$$missing; the benchmark runs without it (as root, apt-get installs it)"; fi; fi

bench-live: $(VENV)/.installed-test live-tools
	$(BIN)/python benchmarks/bench_live.py

clean:
	rm -rf $(VENV) results build src/*.egg-info
