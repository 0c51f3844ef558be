# Container images and their lint. Python tests and checks live in .ci/run; this file only wraps the
# docker and hadolint commands so their flags are written down once.
#
#   make docker                 # x86_64 image on NVIDIA's TensorRT base (run on any Docker host)
#   make docker-jetson          # JetPack 6 image (run on the Jetson, or a host with arm64 emulation)
#   make lint-docker            # hadolint both Dockerfiles with .hadolint.yaml
#   make .venv-pytriton         # PyTriton interpreter for tests/test_triton_backend.py (numpy<2 there)

IMAGE ?= pvt-deploy
TAG ?= latest
DOCKER ?= docker
HADOLINT ?= hadolint
PYTHON ?= python3
BUILD_ARGS ?=

.PHONY: docker docker-jetson lint-docker

docker:
	$(DOCKER) build -f docker/Dockerfile -t $(IMAGE):$(TAG) $(BUILD_ARGS) .

docker-jetson:
	$(DOCKER) build --platform linux/arm64 -f docker/Dockerfile.jetson -t $(IMAGE):$(TAG)-jetson $(BUILD_ARGS) .

lint-docker:
	$(HADOLINT) docker/Dockerfile docker/Dockerfile.jetson

.venv-pytriton:
	$(PYTHON) -m venv $@
	$@/bin/pip install --quiet nvidia-pytriton
