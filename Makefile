# lego2c: `make demo` and `make test` set everything up on a fresh Debian machine, then run.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
APT_PACKAGES := gcc make gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm dataset-fashion-mnist ccache
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DEMO_MODEL := models/resnet8_fmnist.onnx
DEMO_OUT := build/demo

.PHONY: setup demo test bench clean

# System packages (only those missing), a virtual environment with torch's CPU wheel
# (pinned first, so nothing pulls the multi-GB CUDA build), then lego2c itself.
$(VENV)/.setup-done: pyproject.toml
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:" $$missing; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev,calib]'
	touch $@

setup: $(VENV)/.setup-done

demo: setup
	$(VENV)/bin/lego2c build $(DEMO_MODEL) --board stm32f746g -o $(DEMO_OUT) --force \
	    --input examples/stm32f7/sample.npy $(DEMO_FLAGS)
	$(VENV)/bin/lego2c run $(DEMO_OUT) --emulator qemu

# pytest exits 5 when a selection (PYTEST_ARGS) collects nothing: say so, and do not fail.
# Two workers, a test file each: many tests wait on one single-threaded gcc or QEMU, and a file's
# fixtures (exported models, a trained CNN) are made once. Per-test stealing (--dist worksteal) was
# slower, 17.5 against 13.5 minutes: it ran the torch-heavy tests of one file side by side, each with
# 2 threads on 2 cores. The slowest tests are listed.
test: setup
	$(PY) -m pytest -q -n 2 --dist loadfile --durations=15 $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; rc=0; fi; exit $$rc

bench: setup
	$(PY) -m benchmarks.mcu

clean:
	rm -rf build .pytest_cache
