# Chorus: the two README commands are `make run` and `make test`; everything they need is
# installed from here into .venv on first use.

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
GEN := gen
PROTOS := $(shell find protos -name '*.proto')
STAMP_DEPS := $(VENV)/.deps-installed
STAMP_GEN := $(GEN)/.generated
# The vision service's packaged models, extracted from the pinned MediaPipe wheel.
MEDIAPIPE_MODELS := .models/mediapipe
STAMP_MODELS := $(MEDIAPIPE_MODELS)/.extracted
# uv (pinned and hash-checked in tools/uv-requirements.txt) installs the venv from uv.lock.
UV := .tools/uv/bin/uv
# The extras the local suite and the tests need (the images pick their own: IMAGE_ARGS below).
EXTRAS := --extra dev --extra vision --extra tts --extra piper --extra codecs --extra cpu --extra gateway
export UV_PROJECT_ENVIRONMENT := $(VENV)
export UV_PYTHON := $(PYTHON)
# uv would otherwise download a Python of its own when $(PYTHON) is missing.
export UV_PYTHON_DOWNLOADS := never

# The four images, all from the one Dockerfile, each with its build args: the service
# (python -m services.<name>), its gRPC port, its uv extras, the system packages it needs,
# and whether the MediaPipe models are extracted into it. `make images` builds them from
# the repository root; `make images BASE_IMAGE=...` builds from another base image.
DOCKER ?= docker
DOCKERFILE := deploy/docker/Dockerfile
IMAGE_TAG ?= 0.1.0
BASE_IMAGE ?=
IMAGES := image-orchestrator image-tts image-prosody image-vision image-gateway
IMAGE_ARGS.orchestrator := --build-arg PORT=50051 --build-arg EXTRAS="codecs"
IMAGE_ARGS.tts := --build-arg PORT=50052 --build-arg EXTRAS="tts piper codecs cpu"
IMAGE_ARGS.prosody := --build-arg PORT=50053
IMAGE_ARGS.vision := --build-arg PORT=50054 --build-arg EXTRAS="vision gpu" \
	--build-arg APT_PACKAGES="libgl1 libglib2.0-0" --build-arg WITH_MEDIAPIPE_MODELS=true
IMAGE_ARGS.gateway := --build-arg PORT=8080 --build-arg EXTRAS="gateway"

.PHONY: run test lint format bench proto lock images $(IMAGES) test-images clean

run: $(STAMP_GEN) $(STAMP_MODELS)
	$(PY) -m devtools.suite

test: lint $(STAMP_MODELS)
	$(PY) -m pytest

lint: $(STAMP_GEN)
	$(VENV)/bin/ruff check services devtools tests bench deploy tools
	$(VENV)/bin/ruff format --check services devtools tests bench deploy tools
	$(VENV)/bin/mypy

format: $(STAMP_DEPS)
	$(VENV)/bin/ruff check --fix services devtools tests bench deploy tools
	$(VENV)/bin/ruff format services devtools tests bench deploy tools

bench: $(STAMP_GEN) $(STAMP_MODELS)
	$(PY) -m bench.tts_ttfa
	$(PY) -m bench.prosody
	$(PY) -m bench.vision
	$(PY) -m bench.e2e
	$(PY) -m bench.admission
	$(PY) -m bench.codecs

proto: $(STAMP_GEN)

images: $(IMAGES)

$(IMAGES): image-%:
	$(strip $(DOCKER) build -f $(DOCKERFILE) --build-arg SERVICE=$* $(IMAGE_ARGS.$*) \
		$(BASE_IMAGE:%=--build-arg BASE_IMAGE=%) -t chorus/$*:$(IMAGE_TAG) .)

# The Dockerfile's RUN --mount caches need BuildKit: buildx uses it anyway, an older docker
# CLI (Debian's docker.io: `make images DOCKER=/usr/bin/docker`) only when asked.
$(IMAGES): export DOCKER_BUILDKIT := 1

# The images built and run for real (tests/images, which `make test` leaves out): hardened
# containers, TLS on every hop, Speak and ComposeMessage from the host, and OpenAI's speech
# API through the gateway (its image-gateway too, with the services'). Needs a Docker
# engine (skipped without one); BASE_IMAGE empty builds from the stand-in base that
# tools/stand_in_base.py bootstraps from Debian packages (no registry needed).
test-images: $(STAMP_GEN)
	DOCKER="$(DOCKER)" BASE_IMAGE="$(BASE_IMAGE)" $(PY) -m pytest tests/images

# Update uv.lock on purpose: after editing pyproject.toml, or to take newer releases of
# what is not pinned there (`make lock UPGRADE=--upgrade`). Nothing else writes the lock.
lock: $(UV)
	$(UV) lock $(UPGRADE)

$(UV): tools/uv-requirements.txt
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --require-hashes \
		--no-deps --upgrade --target .tools/uv -r tools/uv-requirements.txt
	touch $@

# Exactly what uv.lock holds, hashes checked (--locked fails when pyproject.toml and the
# lock disagree; sync removes whatever the lock does not list).
$(STAMP_DEPS): uv.lock pyproject.toml $(UV)
	# A venv that pip made (before the lock) keeps pip beside the lock's packages: remake it.
	grep -qs '^uv = ' $(VENV)/pyvenv.cfg || rm -rf $(VENV)
	$(UV) sync --locked --no-progress $(EXTRAS)
	# The checkout and the generated protobuf modules (top-level `chorus.*` packages in
	# gen/) are on the venv's path, so `python -m services.x` works from anywhere.
	printf '%s\n' "$(CURDIR)" "$(CURDIR)/$(GEN)" \
		> "$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/chorus.pth"
	touch $@

$(STAMP_MODELS): tools/mediapipe_models.py tools/mediapipe-requirements.txt
	$(PYTHON) tools/mediapipe_models.py $(MEDIAPIPE_MODELS)
	touch $@

# The one protobuf command, which the images' protos stage runs too (deploy/docker/Dockerfile).
$(STAMP_GEN): $(PROTOS) tools/generate_protos.py $(STAMP_DEPS)
	rm -rf $(GEN)
	$(PY) tools/generate_protos.py $(GEN)
	touch $@

clean:
	rm -rf $(VENV) $(GEN) .tools .models .state .pytest_cache .mypy_cache .ruff_cache
