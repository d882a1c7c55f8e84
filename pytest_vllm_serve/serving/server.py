"""``serve()``: launch a spec, wait until it is ready, yield it, always stop it.

The one context manager behind every fixture. Usable on its own::

    with serve(ServerSpec(), LocalLauncher(Path("logs"))) as server:
        server.client.get("/v1/models")
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from pytest_vllm_serve.errors import ServerStartError
from pytest_vllm_serve.serving.command import resolve_model
from pytest_vllm_serve.serving.launchers.base import Launcher
from pytest_vllm_serve.serving.readiness import ReadinessProbe
from pytest_vllm_serve.serving.running import RunningServer, ServerProcess
from pytest_vllm_serve.serving.spec import Layout, ServerSpec

#: How often a lost port race (port taken between choosing and binding) is retried.
PORT_RETRIES = 3


def resolve_layout(spec: ServerSpec, launcher: Launcher) -> Layout:
    """The spec's layout on this launcher's GPUs; a RuleError, before anything launches, if it cannot fit."""
    return launcher.resolve_layout(spec)


def start_server(
    spec: ServerSpec,
    launcher: Launcher,
    *,
    startup_timeout: float = 600.0,
    api_key: str | None = None,
    cache_dir: Path | None = None,
    on_launch: Callable[[ServerProcess], None] | None = None,
) -> RunningServer:
    """Launch ``spec`` and wait until it is ready. The caller owns stopping it
    (``server.process.stop()``); a server that fails to start is stopped here."""
    layout = resolve_layout(spec, launcher)
    model = resolve_model(spec.model, cache_dir)
    started = time.monotonic()
    process: ServerProcess | None = None
    try:
        for attempt in range(1, PORT_RETRIES + 1):
            process = launcher.launch(spec, layout, model)
            if on_launch is not None:
                on_launch(process)
            probe = ReadinessProbe(
                base_url=process.url,
                model=process.served_name,
                api_key=api_key,
                timeout=startup_timeout,
                is_dead=process.poll,
                log_tail=process.log_tail,
                log_name=str(process.log_path or "the server log"),
            )
            try:
                served = probe.wait()
                process.mark_ready()
                break
            except ServerStartError:
                process.stop()
                if attempt < PORT_RETRIES and process.lost_port_race():
                    continue
                raise
    except BaseException:  # a crash, a timeout or Ctrl-C during startup: leave nothing behind
        if process is not None:
            process.stop()
        raise
    if process is None:  # not reached: the loop runs at least once, and leaves it with a process or an error
        raise ServerStartError("no server was launched")
    return RunningServer(
        url=process.url,
        model=served,
        spec=spec,
        log_path=process.log_path,
        command=list(process.command),
        launcher=launcher.name,
        layout=layout,
        ids=process.ids(),
        startup_seconds=time.monotonic() - started,
        api_key=api_key,
        process=process,
    )


@contextmanager
def serve(
    spec: ServerSpec,
    launcher: Launcher,
    *,
    startup_timeout: float = 600.0,
    api_key: str | None = None,
    cache_dir: Path | None = None,
    on_launch: Callable[[ServerProcess], None] | None = None,
) -> Iterator[RunningServer]:
    """Start ``spec`` with ``launcher`` and yield a ready :class:`RunningServer`; always stop it."""
    server = start_server(
        spec, launcher, startup_timeout=startup_timeout, api_key=api_key, cache_dir=cache_dir, on_launch=on_launch
    )
    try:
        yield server
    finally:
        server.close()
        if server.process is not None:
            server.process.stop()
