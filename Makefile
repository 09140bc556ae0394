# qemud: set-up, run and test on a Debian 12 machine.
#
#   make run    set up everything, then run a session daemon in the foreground
#               with a demo guest defined
#   make test   set up everything, then run the whole test suite
#
# Run as root, the set-up installs the Debian packages it needs; a normal user
# installs them first with:  sudo apt-get install $(APT_PACKAGES)

VENV ?= .venv
PYTHON ?= python3
APT_PACKAGES = python3-venv qemu-system-x86 qemu-utils libvirt-clients python3-libvirt iproute2 \
               busybox-static xz-utils cpio
PYTEST_ARGS ?=

.PHONY: deps venv run test lint clean

deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "missing Debian packages:$$missing -- run: sudo apt-get install$$missing" >&2; exit 1; \
	  fi; \
	fi

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q '.[test]'
	touch $@

venv: $(VENV)/.installed
	$(VENV)/bin/pip install -q --no-deps --force-reinstall . >/dev/null

run: deps venv
	$(VENV)/bin/python -m qemud.demo

test: deps venv
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check qemud clients tests benchmarks
	$(VENV)/bin/mypy qemud clients/qemudclient

clean:
	rm -rf $(VENV) build *.egg-info
