# The two commands a newcomer needs: `make up` (start a local node) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := redis-server redis-tools zookeeper

.PHONY: up test lint typecheck unit chaos fuzz deps system-deps compiled pure bench clean

up: deps compiled
	$(VENV)/bin/tessera up

test: deps lint typecheck compiled
	$(PY) -m pytest -x -q

lint: deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: deps
	$(VENV)/bin/mypy

unit: deps compiled
	$(PY) -m pytest -x -q tests/unit

# Random faults under a verifiable load (docs/reliability.md); SEED= replays a run.
ROUNDS ?= 20
SEED ?=
chaos: deps compiled
	$(PY) -m tests.chaos --rounds $(ROUNDS) $(if $(SEED),--seed $(SEED))

# Protocol fuzzing at full size: `make fuzz N=1000000 [SEED=123]` (`make test` runs a small one).
N ?= 1000000
fuzz: deps compiled
	TESSERA_FUZZ_INPUTS=$(N) $(if $(SEED),TESSERA_FUZZ_SEED=$(SEED)) \
		$(PY) -m pytest -x -q -s tests/integration/test_protocol_fuzz.py

# The hot modules compiled with mypyc, in place (scripts/build_fast.py; 1-2 minutes on 2
# cores, and only when their sources changed). Without a C compiler it says so and everything
# runs as pure Python. `make pure` removes them (the code is the same either way).
compiled: deps
	$(PY) scripts/build_fast.py --optional --if-needed

pure:
	$(PYTHON) scripts/build_fast.py --clean

deps: $(VENV)/.installed system-deps

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $@

system-deps:
	@missing=""; \
	for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

bench: deps compiled
	bench/pgserver.sh
	.venv/bin/python -m bench.checkpoint

clean: pure
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache .hypothesis build
