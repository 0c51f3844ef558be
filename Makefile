# The two README commands, CI, and the container images.
#
#   make demo          # install (venv, CPU torch, pvt-deploy), export the default model, run it on the bundled photos and clip
#   make test          # install with dev tools, then lint, type-check and run the test suite (what .ci/run calls)
#   make docker        # x86_64 image on NVIDIA's TensorRT base (run on any Docker host)
#   make docker-jetson # JetPack 6 image (run on the Jetson, or a host with arm64 emulation)
#   make lint-docker   # hadolint both Dockerfiles with .hadolint.yaml
#   make gpu-check     # on a GPU box: the gpu/trt tests, then the GPU speed and video benchmarks
#   make coverage      # the test suite under coverage: which lines of pvt_deploy/ no test runs
#
# TORCH selects the PyTorch wheel: the default CPU build is small; on a CUDA box use e.g.
#   make demo TORCH="torch --index-url https://download.pytorch.org/whl/cu128"

VENV ?= .venv
PYTHON ?= python3
TORCH ?= torch==2.13.0
IMAGE ?= pvt-deploy
TAG ?= latest
DOCKER ?= docker
BUILD_ARGS ?=
BIN := $(VENV)/bin

.PHONY: install install-dev demo test lint typecheck docker docker-jetson lint-docker gpu-check coverage

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e .

install-dev: install
	$(BIN)/pip install --quiet -e ".[dev]"
	# The TensorRT type stubs depend on NVIDIA-hosted wheels; only the stubs themselves are needed.
	$(BIN)/pip install --quiet --no-deps tensorrt-stubs==10.13.0.35.1

# Export the default model (pvt_small RetinaNet), run it on the bundled photos, then on the bundled clip.
demo: install
	$(BIN)/pvt-deploy export
	$(BIN)/pvt-deploy infer
	$(BIN)/pvt-deploy infer "$$($(BIN)/python -c 'from pvt_deploy.assets import sample_video; print(sample_video())')"

lint:
	$(BIN)/ruff check .

# On success it records the key of what it checked (taken before the run), so that the tests' own mypy check of
# the TensorRT modules (tests/test_tensorrt_typecheck.py) is not run again on the same files.
typecheck:
	key=$$($(BIN)/python tests/test_tensorrt_typecheck.py key) && $(BIN)/mypy --config-file mypy.ini --show-traceback \
		&& $(BIN)/python tests/test_tensorrt_typecheck.py passed "$$key"

lint-docker:
	$(BIN)/hadolint docker/Dockerfile docker/Dockerfile.jetson

# Test files run in TEST_WORKERS processes (pytest-xdist), each file whole in one of them: its module
# fixtures are made once. Two suit a 2-core machine (-n 0 runs them in this process).
TEST_WORKERS ?= 2

test: install-dev .venv-pytriton
	$(MAKE) lint typecheck lint-docker
	PVT_TRITON_PYTHON=$(CURDIR)/.venv-pytriton/bin/python PVT_TRITON_REQUIRED=1 $(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=25

# Not part of CI (it takes longer than the tests): lines no test runs are where this project's bugs hid.
# Run it on a checkout nobody edits meanwhile: the report matches the line numbers measured to the files as
# they are when it reports, so a file changed during the run lists lines that ran (and blank ones) as missed.
# Warnings that a data file cannot be used come from tests' children under a file-size limit (a full disk).
coverage: install-dev .venv-pytriton
	rm -f .coverage .coverage.*
	PVT_TRITON_PYTHON=$(CURDIR)/.venv-pytriton/bin/python PVT_TRITON_REQUIRED=1 $(BIN)/coverage run -m pytest -q
	$(BIN)/coverage combine -q
	$(BIN)/coverage report -m

# Needs CUDA torch (TORCH=...), onnxruntime-gpu in place of onnxruntime, and TensorRT where its variants
# should run; what is missing is skipped with the reason. Results: gpu-speed.json, gpu-video.json.
# (Not install-dev: its TensorRT type stubs would shadow a real TensorRT in the venv.)
gpu-check: install
	$(BIN)/pip install --quiet pytest
	$(BIN)/pytest -q -rs -m "gpu or trt"
	$(BIN)/python benchmarks/speed.py --device cuda --json gpu-speed.json \
		--variants torch,torch-cuda,torch-cuda-fp16,onnx-cuda,onnx-cuda-fp16,trt-fp16 \
		--models pvt_v2_b0:640:1/8,pvt_small:640:1/8,pvt_v2_b0-cls:224:1/32,pvt_small-cls:224:1/32
	$(BIN)/python benchmarks/video_overhead.py --part fps --backend onnx --device cuda --json gpu-video.json

docker:
	$(DOCKER) build -f docker/Dockerfile -t $(IMAGE):$(TAG) $(BUILD_ARGS) .

docker-jetson:
	$(DOCKER) build --platform linux/arm64 -f docker/Dockerfile.jetson -t $(IMAGE):$(TAG)-jetson $(BUILD_ARGS) .

# PyTriton (a real Triton server for tests/test_triton_backend.py) pins numpy<2, so it lives in its own venv.
.venv-pytriton:
	$(PYTHON) -m venv $@
	$@/bin/pip install --quiet nvidia-pytriton
