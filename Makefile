# Chorus: the two README commands are `make run` and `make test`; everything they need is
# installed from here into .venv on first use.

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
GEN := gen
PROTOS := $(shell find protos -name '*.proto')
STAMP_DEPS := $(VENV)/.deps-installed
STAMP_GEN := $(GEN)/.generated

.PHONY: run test lint format bench proto clean

run: $(STAMP_GEN)
	$(PY) -m services.suite

test: lint
	$(PY) -m pytest

lint: $(STAMP_GEN)
	$(VENV)/bin/ruff check services tests bench deploy
	$(VENV)/bin/ruff format --check services tests bench deploy
	$(VENV)/bin/mypy

format: $(STAMP_DEPS)
	$(VENV)/bin/ruff check --fix services tests bench deploy
	$(VENV)/bin/ruff format services tests bench deploy

bench: $(STAMP_GEN)
	$(PY) -m bench.tts_ttfa
	$(PY) -m bench.prosody
	$(PY) -m bench.vision
	$(PY) -m bench.e2e

proto: $(STAMP_GEN)

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP_DEPS): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -e '.[dev,vision,tts]'
	# Generated protobuf modules live in gen/ as top-level `chorus.*` packages.
	echo "$(CURDIR)/$(GEN)" > "$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/chorus-generated.pth"
	touch $@

$(STAMP_GEN): $(PROTOS) $(STAMP_DEPS)
	rm -rf $(GEN) && mkdir -p $(GEN)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m grpc_tools.protoc -Iprotos \
		--python_out=$(GEN) --grpc_python_out=$(GEN) --mypy_out=$(GEN) --mypy_grpc_out=$(GEN) \
		$(PROTOS)
	find $(GEN)/chorus -type d -exec touch {}/__init__.py \;
	touch $@

clean:
	rm -rf $(VENV) $(GEN) .state .pytest_cache .mypy_cache .ruff_cache
