# The README's two set-up commands are `make run` and `make test`.
# Both create .venv (reused while pyproject.toml is unchanged) and install the
# Debian packages MuJoCo needs to render headless when they are missing.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SYSTEM_PACKAGES := libegl1 libosmesa6 libgl1 libglfw3

.PHONY: run test setup system-deps clean

run: setup
	$(VENV)/bin/vgmps demo

test: setup
	$(PY) -m pytest -q

setup: system-deps $(STAMP)

system-deps:
	@missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages for headless rendering:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

EXAMPLE_FAMILY := examples/reach_family

$(STAMP): pyproject.toml $(EXAMPLE_FAMILY)/pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	# robomimic (tests load our demo files with its dataset class) without its egl_probe/tensorboard
	# requirements: SequenceDataset needs only packages we already install.
	$(PY) -m pip install -q --no-deps robomimic==0.3.0
	# The example outside family (docs/custom_family.md), installed as a user would: its entry points
	# make `reach` known to every vgmps subcommand; tests/test_example_family.py drives it.
	$(PY) -m pip install -q --no-deps -e $(EXAMPLE_FAMILY)
	touch $(STAMP)

clean:
	rm -rf $(VENV) runs
