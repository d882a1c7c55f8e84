{## The node's container (a partial of node.sh): load or pull the image, start this job's own
    container on this node, and set RUN to the prefix that runs a command inside it.
    `container` holds script._container_values(): compressed says how to read the tarball. ##}
IMAGE={{ container.image | q }}
CONTAINER="pvs-${SLURM_JOB_ID}-node${NODE}"  # this job's container on this node
if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
{% if container.tarball %}
  log "loading $IMAGE from" {{ container.tarball | q }}
{% if container.compressed %}
  { command -v pigz >/dev/null && pigz -dc {{ container.tarball | q }} || gzip -dc {{ container.tarball | q }}; } | docker load || { log "error: docker load failed"; exit 1; }
{% else %}
  docker load -i {{ container.tarball | q }} || { log "error: docker load failed"; exit 1; }
{% endif %}
{% else %}
  log "pulling $IMAGE"
  docker pull "$IMAGE" || { log "error: docker pull failed"; exit 1; }
{% endif %}
fi
# RDMA devices, where the node has them.
DEVICES=()
for dev in /dev/gdrdrv /dev/infiniband/uverbs*; do [ -e "$dev" ] && DEVICES+=(--device "$dev"); done
NET_IF=$(ip -o -4 route show to default 2>/dev/null | awk '{print $5; exit}')
export NCCL_SOCKET_IFNAME=${NCCL_SOCKET_IFNAME:-$NET_IF}
export GLOO_SOCKET_IFNAME=${GLOO_SOCKET_IFNAME:-$NET_IF}
export TP_SOCKET_IFNAME=${TP_SOCKET_IFNAME:-$NET_IF}
# Only this job's own container is ever removed; other containers on the node are left alone.
remove_container() { docker rm -f "$CONTAINER" >/dev/null 2>&1 || true; }
remove_container
docker run -d --name "${CONTAINER}" --label "pytest-vllm-serve.job=${SLURM_JOB_ID}"{{ " --gpus all" if container.gpus else "" }} --privileged --uts=host --ipc=host --net=host --ulimit stack=67108864 --ulimit memlock=-1 --security-opt seccomp=unconfined{% for volume in container.volumes %} -v {{ volume | q }}{% endfor %} -e NCCL_SOCKET_IFNAME -e GLOO_SOCKET_IFNAME -e TP_SOCKET_IFNAME{% for name in container.env_names %} -e {{ name | q }}{% endfor %} --entrypoint sleep ${DEVICES[@]+"${DEVICES[@]}"} "${IMAGE}" infinity >/dev/null || { log "error: docker run failed"; exit 1; }
RUN=(docker exec -e HEAD_IP -e HEAD_NODE -e API_PORT -e RPC_PORT -e RAY_PORT -e MASTER_PORT -e NODE ${VLLM_HOST_IP:+-e VLLM_HOST_IP} "$CONTAINER")
