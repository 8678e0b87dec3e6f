VENV ?= .venv
PY := $(VENV)/bin/python
export TF_CPP_MIN_LOG_LEVEL ?= 3
# `make test` reads the slice of real data committed under tests/data, so it passes in a fresh clone anywhere.
# The slow tests and the benchmarks read full datasets: $DLKIT_DATA_DIR, else ../shared/data (its SOURCES.md).
test-slow bench: export DLKIT_DATA_DIR ?= $(abspath ../shared/data)

.PHONY: install browser test test-durations test-slow profile-test bench data clean

install: $(VENV)/.installed browser

# `dlkit report`'s browser test opens the page in Debian's chromium: installed where apt may be used (as
# root); elsewhere this says so and the test skips with the reason
APT := DEBIAN_FRONTEND=noninteractive apt-get -y -q
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  { $(APT) install chromium >/dev/null 2>&1 || { $(APT) update >/dev/null 2>&1 && $(APT) install chromium >/dev/null 2>&1; }; }; } || \
	  echo "chromium is not installed (it needs root and apt): the report's browser test will skip"

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,export]'
	touch $@

# the suite spreads over every core (pytest-xdist), whole modules to a worker, the longest first by
# tests/durations.json (tests/conftest.py); WORKERS=0 runs them in this process
WORKERS ?= auto
TEST_ARGS = -q -n $(WORKERS) --dist loadfile --no-loadscope-reorder
test: install
	$(PY) -m pytest $(TEST_ARGS)

# make test, and each module's seconds written to tests/durations.json (when it passes): refresh it after
# adding a module or changing a long one, on the machine the suite's time is kept on
test-durations: install
	$(PY) -m pytest $(TEST_ARGS) --write-durations tests/durations.json

test-slow: install
	$(PY) -m pytest -q -m slow

# `make test` under a sampling profiler (py-spy, every process): its CPU by category, appended to
# benchmarks/results/suite_profile.jsonl
profile-test: install
	$(PY) benchmarks/suite_profile.py -- $(TEST_ARGS)

bench: install
	$(PY) benchmarks/bench_cnn_mnist.py; a=$$?; $(PY) benchmarks/bench_dcgan_step.py; b=$$?; exit $$((a || b))

# The full Fashion-MNIST training set (60,000 images) is Debian's dataset-fashion-mnist package;
# dlkit finds it in /usr/share/datasets/fashion-mnist. Needs root (or sudo).
data:
	@if [ -d /usr/share/datasets/fashion-mnist ]; then echo "dataset-fashion-mnist already installed"; \
	else apt-get install -y dataset-fashion-mnist || (apt-get update && apt-get install -y dataset-fashion-mnist); fi

clean:
	rm -rf $(VENV) runs .pytest_cache
