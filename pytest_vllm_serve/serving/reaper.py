"""Watchdog: ``python -m pytest_vllm_serve.serving.reaper WATCH_PID TARGET_PID PGID [STATE_FILE]``.

Started detached next to every local server. When the process that owns the
server (pytest, or the xdist controller) disappears without stopping it - a
SIGKILL, a crash, a closed terminal - the reaper stops the server's whole
process tree, so nothing keeps holding GPUs or ports. It exits as soon as the
server is gone by any route.

``python -m pytest_vllm_serve.serving.reaper docker WATCH_PID CONTAINER_NAME`` does the
same for a Docker launcher's container: it removes the container once WATCH_PID
dies (see containers.watch).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from pytest_vllm_serve.serving.procs import descendants, is_alive, terminate_tree


def main(argv: list[str]) -> int:
    if argv[:1] == ["docker"]:
        from pytest_vllm_serve.serving.launchers.docker.containers import watch

        return watch(int(argv[1]), argv[2])
    watch_pid, target_pid, pgid = (int(a) for a in argv[:3])
    state_file = Path(argv[3]) if len(argv) > 3 else None
    known: set[int] = set()
    while True:
        if not is_alive(target_pid):
            # The server's main process is gone; make sure no descendant lingers.
            leftovers = [pid for pid in known if is_alive(pid)]
            for pid in leftovers:
                terminate_tree(pid, timeout=5)
            return 0
        known.update(p.pid for p in descendants(target_pid))
        if not is_alive(watch_pid):
            terminate_tree(target_pid, pgid=pgid, timeout=15)
            for pid in known:
                if is_alive(pid):
                    terminate_tree(pid, timeout=5)
            if state_file is not None:
                try:
                    os.unlink(state_file)
                except OSError:
                    pass
            return 0
        time.sleep(0.5)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
