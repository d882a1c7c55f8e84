# Images for the Docker launcher (docs/docker.md).
#   make docker      build the GPU image from ./Dockerfile (vLLM + EFA, NCCL, NVSHMEM, GDRCopy)
#   make save        save it as a compressed tarball, vllm-serve-latest.tar.gz, for cluster nodes
#   make load        load that tarball into the local engine
#   make cpu-image   build the vllm-cpu image (no registry needed; cached by its recipe)
#   make lint        lint the Dockerfile with hadolint

IMAGE_NAME ?= vllm-serve
IMAGE_TAG ?= latest
TARBALL ?= $(IMAGE_NAME)-$(IMAGE_TAG).tar.gz
BUILD_ARGS ?=
PYTHON ?= $(if $(wildcard .venv/bin/python),.venv/bin/python,python3)
HADOLINT ?= $(if $(wildcard .venv/bin/hadolint),.venv/bin/hadolint,hadolint)
# pigz compresses on every core; gzip when it is not installed.
GZIP := $(if $(shell command -v pigz),pigz,gzip)

.PHONY: help docker save load cpu-image lint

help:
	@sed -n 's/^#   //p' $(MAKEFILE_LIST)

# The Dockerfile copies nothing in, so no build context is sent (the checkout holds a venv).
docker:
	docker build $(BUILD_ARGS) -t $(IMAGE_NAME):$(IMAGE_TAG) - < Dockerfile

save:
	docker save $(IMAGE_NAME):$(IMAGE_TAG) | $(GZIP) > $(TARBALL)

load:
	$(GZIP) -dc $(TARBALL) | docker load

cpu-image:
	$(PYTHON) -m pytest_vllm_serve.serving.launchers.docker.images build-cpu

lint:
	$(HADOLINT) Dockerfile
