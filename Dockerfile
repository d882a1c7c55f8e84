# syntax=docker/dockerfile:1
# GPU serving image: vLLM with the multi-node stack of GPU clusters (AWS EFA with its
# libfabric and Open MPI, NCCL, NVSHMEM, GDRCopy). Build with `make docker`, save for
# cluster nodes with `make save` (vllm-serve-latest.tar.gz), and run through the plugin:
#   pytest -m smoke --vllm-docker vllm-serve-latest.tar.gz --vllm-model ORG/MODEL
# Every version is a build arg; override one with `make docker BUILD_ARGS="--build-arg X=Y"`.
# See docs/docker.md for what was checked and what was not (this image needs a CUDA base
# image and GPUs, so CI lints it instead of building it).

# vLLM 0.26.0 pins torch 2.11.0, whose CUDA build is 13.0; the base image matches it.
ARG CUDA_VERSION=13.0.1
ARG UBUNTU_VERSION=24.04
ARG VLLM_VERSION=0.26.0
ARG EFA_INSTALLER_VERSION=1.46.0
ARG NCCL_VERSION=v2.29.2-1
ARG NVSHMEM_VERSION=v3.5.19-1
ARG GDRCOPY_VERSION=v2.5.1
# Compute capabilities the native libraries are built for (90: H100/H200).
ARG CUDA_ARCHS=90

FROM nvidia/cuda:${CUDA_VERSION}-devel-ubuntu${UBUNTU_VERSION}

ARG CUDA_VERSION
ARG VLLM_VERSION
ARG EFA_INSTALLER_VERSION
ARG NCCL_VERSION
ARG NVSHMEM_VERSION
ARG GDRCOPY_VERSION
ARG CUDA_ARCHS

ENV DEBIAN_FRONTEND=noninteractive \
    TZ=UTC \
    PIP_NO_CACHE_DIR=1 \
    PIP_BREAK_SYSTEM_PACKAGES=1

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# Build tools, Python, and the userspace libraries the EFA installer expects. The
# distribution's verbs and NCCL packages are removed: EFA and the NCCL below replace them.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        autoconf automake build-essential ca-certificates cmake curl git libtool ninja-build pkg-config \
        python3 python3-dev python3-pip \
        pciutils environment-modules tcl udev dmidecode ethtool iproute2 kmod \
        libnl-3-200 libnl-3-dev libnl-route-3-200 libnl-route-3-dev libhwloc15 \
        libevent-core-2.1-7t64 libevent-pthreads-2.1-7t64 \
    && { apt-get remove -y --allow-change-held-packages ibverbs-utils libibverbs-dev libibverbs1 libmlx5-1 \
        libnccl2 libnccl-dev || true; } \
    && rm -rf /var/lib/apt/lists/*

# AWS EFA: libfabric, the EFA provider, Open MPI and the aws-ofi-nccl plugin (userspace only;
# the kernel module comes from the host).
WORKDIR /tmp/efa
RUN curl -fsSL "https://efa-installer.amazonaws.com/aws-efa-installer-${EFA_INSTALLER_VERSION}.tar.gz" \
        | tar -xz --strip-components=1 \
    && ./efa_installer.sh -y -g -d --skip-kmod --skip-limit-conf --no-verify \
    && rm -rf /tmp/efa

# GDRCopy: GPU memory copies through the CPU mapping, used by NVSHMEM.
WORKDIR /tmp/gdrcopy
RUN git clone --depth 1 -b "${GDRCOPY_VERSION}" https://github.com/NVIDIA/gdrcopy.git . \
    && make -j"$(nproc)" prefix=/opt/gdrcopy lib_install exes_install \
    && rm -rf /tmp/gdrcopy

# NCCL, built from source at the pinned tag.
WORKDIR /tmp/nccl
RUN git clone --depth 1 -b "${NCCL_VERSION}" https://github.com/NVIDIA/nccl.git . \
    && make -j"$(nproc)" src.build CUDA_HOME=/usr/local/cuda \
        NVCC_GENCODE="-gencode=arch=compute_${CUDA_ARCHS},code=sm_${CUDA_ARCHS}" \
    && mkdir -p /opt/nccl \
    && cp -r build/lib build/include /opt/nccl/ \
    && rm -rf /tmp/nccl

# NVSHMEM over libfabric/EFA, with GDRCopy, for vLLM's expert-parallel all-to-all kernels.
WORKDIR /tmp/nvshmem
RUN git clone --depth 1 -b "${NVSHMEM_VERSION}" https://github.com/NVIDIA/nvshmem.git . \
    && cmake -S . -B build -G Ninja \
        -DNVSHMEM_PREFIX=/opt/nvshmem \
        -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCHS}" \
        -DNVSHMEM_MPI_SUPPORT=1 -DMPI_HOME=/opt/amazon/openmpi \
        -DNVSHMEM_PMIX_SUPPORT=1 -DPMIX_HOME=/opt/amazon/pmix \
        -DNVSHMEM_LIBFABRIC_SUPPORT=1 -DLIBFABRIC_HOME=/opt/amazon/efa \
        -DNVSHMEM_USE_GDRCOPY=1 -DGDRCOPY_HOME=/opt/gdrcopy \
        -DNVSHMEM_IBRC_SUPPORT=1 -DNVSHMEM_IBGDA_SUPPORT=1 \
        -DNVSHMEM_BUILD_TESTS=0 -DNVSHMEM_BUILD_EXAMPLES=0 -DNVSHMEM_BUILD_HYDRA_LAUNCHER=0 \
        -DNVSHMEM_BUILD_TXZ_PACKAGE=0 -DNVSHMEM_BUILD_PYTHON_LIB=0 \
    && cmake --build build -j"$(nproc)" \
    && cmake --install build \
    && rm -rf /tmp/nvshmem

ENV PATH=/opt/amazon/openmpi/bin:/opt/amazon/efa/bin:/opt/gdrcopy/bin:${PATH} \
    LD_LIBRARY_PATH=/opt/nccl/lib:/opt/amazon/efa/lib:/opt/amazon/openmpi/lib:/opt/amazon/ofi-nccl/lib:/opt/gdrcopy/lib:/opt/nvshmem/lib:/usr/local/cuda/extras/CUPTI/lib64 \
    NVSHMEM_DIR=/opt/nvshmem \
    NVSHMEM_HOME=/opt/nvshmem \
    NVSHMEM_REMOTE_TRANSPORT=libfabric \
    NVSHMEM_LIBFABRIC_PROVIDER=efa \
    NVSHMEM_DISABLE_CUDA_VMM=1 \
    FI_PROVIDER=efa \
    FI_EFA_USE_DEVICE_RDMA=1 \
    FI_EFA_FORK_SAFE=1 \
    RDMAV_FORK_SAFE=1 \
    NCCL_SOCKET_IFNAME=^docker,lo,veth \
    NCCL_TUNER_PLUGIN=/opt/amazon/ofi-nccl/lib/libnccl-tuner-ofi.so \
    OPAL_PREFIX=/opt/amazon/openmpi \
    OMPI_MCA_pml=^ucx \
    OMPI_MCA_btl=tcp,self \
    OMPI_MCA_btl_tcp_if_exclude=lo,docker0 \
    PMIX_MCA_gds=hash \
    VLLM_NCCL_SO_PATH=/opt/nccl/lib/libnccl.so.2 \
    VLLM_RPC_TIMEOUT=3600000 \
    VLLM_ENGINE_READY_TIMEOUT_S=3600

# vLLM from PyPI; it brings its pinned torch and CUDA runtime wheels.
RUN python3 -m pip install "vllm==${VLLM_VERSION}" \
    && python3 -c "import importlib.metadata as m; assert m.version('vllm') == '${VLLM_VERSION}'"

WORKDIR /workspace
LABEL org.opencontainers.image.title="vllm-serve" \
      org.opencontainers.image.description="vLLM ${VLLM_VERSION} with EFA ${EFA_INSTALLER_VERSION}, NCCL ${NCCL_VERSION}, NVSHMEM ${NVSHMEM_VERSION}, GDRCopy ${GDRCOPY_VERSION}, CUDA ${CUDA_VERSION}" \
      pytest-vllm-serve.flavor="gpu" \
      pytest-vllm-serve.vllm="vllm==${VLLM_VERSION}"
ENTRYPOINT ["vllm", "serve"]
