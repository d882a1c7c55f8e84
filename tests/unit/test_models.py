"""The built-in tiny model: generated locally, cached by recipe hash, never downloaded."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

from safetensors.numpy import load_file
from tokenizers import Tokenizer

from pytest_vllm_serve.serving.models import (
    CHAT_TEMPLATE,
    TinyModelRecipe,
    default_cache_dir,
    ensure_tiny_model,
    recipe_hash,
)

NO_NETWORK = """
import socket, sys
def refuse(*a, **k):
    raise RuntimeError("network access attempted")
socket.socket.connect = refuse
socket.create_connection = refuse
from pytest_vllm_serve.serving.models import ensure_tiny_model
print(ensure_tiny_model(sys.argv[1]))
"""


def test_generation_needs_no_network(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", NO_NETWORK, str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    model = tmp_path / result.stdout.strip().split("/")[-1]
    assert (model / "model.safetensors").exists()


def test_files_shapes_and_head_dim(tmp_path):
    model = ensure_tiny_model(tmp_path)
    config = json.loads((model / "config.json").read_text())
    assert config["head_dim"] == 64  # vLLM's CPU attention rejects 16
    assert config["hidden_size"] == config["num_attention_heads"] * config["head_dim"]
    tokenizer = Tokenizer.from_file(str(model / "tokenizer.json"))
    assert config["vocab_size"] == tokenizer.get_vocab_size()
    weights = load_file(str(model / "model.safetensors"))
    assert weights["model.embed_tokens.weight"].shape == (config["vocab_size"], config["hidden_size"])
    assert weights["model.layers.0.self_attn.k_proj.weight"].shape == (64 * config["num_key_value_heads"], 128)
    assert json.loads((model / "tokenizer_config.json").read_text())["chat_template"] == CHAT_TEMPLATE
    size = sum(p.stat().st_size for p in model.iterdir())
    assert size < 2_000_000, size


def test_tokenizer_round_trips_ascii_and_tokens_decode_distinctly(tmp_path):
    tokenizer = Tokenizer.from_file(str(ensure_tiny_model(tmp_path) / "tokenizer.json"))
    text = "Hello there, 1. 2. 3. The server streams tokens!\nNew line."
    encoded = tokenizer.encode(text)
    assert tokenizer.token_to_id("<unk>") not in encoded.ids
    assert tokenizer.decode(encoded.ids) == text
    decoded = [tokenizer.decode([i], skip_special_tokens=False) for i in range(tokenizer.get_vocab_size())]
    assert len(set(decoded)) == len(decoded), "two token ids decode to the same string"


def test_made_once_and_reused(tmp_path):
    first = ensure_tiny_model(tmp_path)
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    again = ensure_tiny_model(tmp_path)
    assert again == first
    assert (again / "model.safetensors").stat().st_mtime_ns == stamp


def test_same_recipe_same_bytes(tmp_path):
    a = ensure_tiny_model(tmp_path / "a")
    b = ensure_tiny_model(tmp_path / "b")
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    assert (a / "tokenizer.json").read_bytes() == (b / "tokenizer.json").read_bytes()


def test_recipe_hash_keys_the_cache():
    base = TinyModelRecipe()
    assert recipe_hash(base) == recipe_hash(TinyModelRecipe())
    assert recipe_hash(base) != recipe_hash(replace(base, seed=base.seed + 1))


def test_concurrent_makers_produce_one_model(tmp_path):
    code = "import sys; from pytest_vllm_serve.serving.models import ensure_tiny_model; print(ensure_tiny_model(sys.argv[1]))"
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    outputs = {p.communicate(timeout=120)[0].strip() for p in procs}
    assert all(p.returncode == 0 for p in procs)
    assert len(outputs) == 1
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == [outputs.pop().split("/")[-1]]


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("PYTEST_VLLM_SERVE_CACHE", str(tmp_path / "explicit"))
    assert default_cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("PYTEST_VLLM_SERVE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "pytest-vllm-serve"
