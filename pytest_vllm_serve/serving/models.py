"""The built-in default model: a tiny Llama that the plugin generates itself.

Nothing is downloaded. The recipe below (tokenizer corpus, config, seed) is
hashed, and the model is written once into a per-user cache directory named
after that hash. The weights are random, so the text it generates is noise,
but every API shape (chat, completions, logprobs, streaming, usage) is real.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from filelock import FileLock

if TYPE_CHECKING:  # imported where they are used: only generating the model needs them
    import numpy as np
    from tokenizers import Tokenizer

#: Bump when the generator's output changes in a way the recipe does not capture.
GENERATOR_VERSION = 2

SPECIAL_TOKENS = ("<unk>", "<s>", "</s>", "<pad>", "<|system|>", "<|user|>", "<|assistant|>")

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}</s>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

#: The name the plugin serves the built-in model under.
BUILTIN_MODEL_NAME = "pytest-vllm-serve/tiny-llama"


@dataclass(frozen=True)
class TinyModelRecipe:
    """Everything that determines the generated model's bytes."""

    vocab_size: int = 1024
    hidden_size: int = 128
    intermediate_size: int = 256
    num_hidden_layers: int = 2
    num_attention_heads: int = 2
    num_key_value_heads: int = 1
    # vLLM's CPU attention rejects head_dim 16; 64 is supported everywhere.
    head_dim: int = 64
    max_position_embeddings: int = 32768
    seed: int = 1234

    def config(self, vocab_size: int) -> dict[str, object]:
        """The Hugging Face ``config.json`` for this recipe."""
        return {
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "vocab_size": vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
            "max_position_embeddings": self.max_position_embeddings,
            "hidden_act": "silu",
            "rms_norm_eps": 1e-5,
            "rope_theta": 10000.0,
            "tie_word_embeddings": False,
            "bos_token_id": SPECIAL_TOKENS.index("<s>"),
            "eos_token_id": SPECIAL_TOKENS.index("</s>"),
            "pad_token_id": SPECIAL_TOKENS.index("<pad>"),
            "torch_dtype": "bfloat16",
        }


def _corpus() -> str:
    return resources.files("pytest_vllm_serve").joinpath("data/corpus.txt").read_text("utf-8")


def recipe_hash(recipe: TinyModelRecipe) -> str:
    """A short, stable hash of everything that goes into the model."""
    payload = json.dumps(
        {
            "generator": GENERATOR_VERSION,
            "recipe": asdict(recipe),
            "corpus": hashlib.sha256(_corpus().encode()).hexdigest(),
            "special": SPECIAL_TOKENS,
            "template": CHAT_TEMPLATE,
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def default_cache_dir() -> Path:
    """Per-user cache: ``$PYTEST_VLLM_SERVE_CACHE``, else ``$XDG_CACHE_HOME`` or ``~/.cache``."""
    explicit = os.environ.get("PYTEST_VLLM_SERVE_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pytest-vllm-serve"


def _train_tokenizer(vocab_size: int) -> Tokenizer:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    # The alphabet is only what the corpus holds (ASCII), so every token decodes
    # to its own distinct string; that keeps logprob alternatives distinct.
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_corpus().splitlines(keepends=True), trainer=trainer)
    return tokenizer


def _random_weights(recipe: TinyModelRecipe, vocab_size: int) -> dict[str, np.ndarray]:
    import numpy as np

    rng = np.random.default_rng(recipe.seed)
    h, i, d = recipe.hidden_size, recipe.intermediate_size, recipe.head_dim
    q_dim = recipe.num_attention_heads * d
    kv_dim = recipe.num_key_value_heads * d

    def normal(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.02).astype(np.float16)

    tensors = {"model.embed_tokens.weight": normal(vocab_size, h)}
    for layer in range(recipe.num_hidden_layers):
        p = f"model.layers.{layer}."
        tensors[p + "self_attn.q_proj.weight"] = normal(q_dim, h)
        tensors[p + "self_attn.k_proj.weight"] = normal(kv_dim, h)
        tensors[p + "self_attn.v_proj.weight"] = normal(kv_dim, h)
        tensors[p + "self_attn.o_proj.weight"] = normal(h, q_dim)
        tensors[p + "mlp.gate_proj.weight"] = normal(i, h)
        tensors[p + "mlp.up_proj.weight"] = normal(i, h)
        tensors[p + "mlp.down_proj.weight"] = normal(h, i)
        tensors[p + "input_layernorm.weight"] = np.ones(h, dtype=np.float16)
        tensors[p + "post_attention_layernorm.weight"] = np.ones(h, dtype=np.float16)
    tensors["model.norm.weight"] = np.ones(h, dtype=np.float16)
    # A wider head makes the random logits peakier, so sampling is less uniform.
    tensors["lm_head.weight"] = (rng.standard_normal((vocab_size, h)) * 0.5).astype(np.float16)
    return tensors


def write_tiny_model(target: Path, recipe: TinyModelRecipe = TinyModelRecipe()) -> Path:
    """Write the model files into ``target`` (which must not exist yet)."""
    from safetensors.numpy import save_file

    target.mkdir(parents=True)
    tokenizer = _train_tokenizer(recipe.vocab_size)
    tokenizer.save(str(target / "tokenizer.json"))
    vocab_size = tokenizer.get_vocab_size()
    config = recipe.config(vocab_size)
    (target / "config.json").write_text(json.dumps(config, indent=2))
    (target / "generation_config.json").write_text(
        json.dumps({"bos_token_id": config["bos_token_id"], "eos_token_id": config["eos_token_id"]})
    )
    (target / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "PreTrainedTokenizerFast",
                "bos_token": "<s>",
                "eos_token": "</s>",
                "unk_token": "<unk>",
                "pad_token": "<pad>",
                "additional_special_tokens": list(SPECIAL_TOKENS[4:]),
                "model_max_length": recipe.max_position_embeddings,
                "clean_up_tokenization_spaces": False,
                "chat_template": CHAT_TEMPLATE,
            },
            indent=2,
        )
    )
    (target / "special_tokens_map.json").write_text(
        json.dumps({"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"})
    )
    save_file(_random_weights(recipe, vocab_size), str(target / "model.safetensors"))
    (target / "RECIPE.json").write_text(json.dumps(asdict(recipe), indent=2))
    return target


def ensure_tiny_model(cache_dir: Path | None = None, recipe: TinyModelRecipe = TinyModelRecipe()) -> Path:
    """Return the built-in model's directory, generating it once per recipe.

    Safe against concurrent callers (pytest-xdist workers): generation happens
    under a file lock into a temporary directory that is renamed into place.
    """
    root = Path(cache_dir) if cache_dir else default_cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"tiny-llama-{recipe_hash(recipe)}"
    if (final / "model.safetensors").exists():
        return final
    with FileLock(str(final) + ".lock"):
        if (final / "model.safetensors").exists():
            return final
        tmp = Path(tempfile.mkdtemp(prefix=".tiny-llama-", dir=root))
        try:
            write_tiny_model(tmp / "model", recipe)
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp / "model", final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final
