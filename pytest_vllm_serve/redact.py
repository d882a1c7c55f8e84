"""Secret-looking values in argument lists, masked wherever a spec, command or argv is shown.

A flag is secret when one of the words of its name (split at ``-`` and ``_``) is one of
the words that make an environment variable secret (``command.is_secret_name``): KEY,
TOKEN, SECRET, PASSWORD, PASSWD or CREDENTIAL, e.g. ``--api-key`` or ``--hf-token``.
Whole words only, so ``--tokenizer`` and ``--max-num-batched-tokens`` are shown as they
are. A value shaped like a known key (``sk-...``, ``hf_...``) is masked under any flag.

The argv a process really runs keeps its values; only renderings are masked.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

MASK = "***"
_SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL)", re.IGNORECASE)


def is_secret_name(name: str) -> bool:
    """Env var names whose values must never be written anywhere."""
    return bool(_SECRET_NAME.search(name))


_SECRET_WORDS = {
    "KEY",
    "KEYS",
    "TOKEN",
    "SECRET",
    "SECRETS",
    "PASSWORD",
    "PASSWD",
    "CREDENTIAL",
    "CREDENTIALS",
    "APIKEY",
}
_SECRET_VALUE = re.compile(r"^(sk-|hf_|ghp_|xox[bp]-)[A-Za-z0-9_\-]{8,}$")


def is_secret_flag(arg: str) -> bool:
    """``--api-key``, ``--hf-token=...``: a flag whose value must never be shown."""
    if not arg.startswith("-"):
        return False
    name = arg.lstrip("-").split("=", 1)[0]
    return any(word.upper() in _SECRET_WORDS for word in re.split(r"[-_]", name))


def is_secret_value(value: str) -> bool:
    return bool(_SECRET_VALUE.match(value))


def secret_positions(argv: Sequence[str]) -> list[int]:
    """Indexes of the words of ``argv`` that hold a secret (a flag's ``=value`` word counts whole)."""
    found = []
    for i, arg in enumerate(argv):
        after_flag = i > 0 and is_secret_flag(argv[i - 1]) and "=" not in argv[i - 1] and not arg.startswith("--")
        if after_flag or is_secret_value(arg) or (is_secret_flag(arg) and "=" in arg):
            found.append(i)
    return found


def redact_argv(argv: Sequence[str]) -> list[str]:
    """``argv`` with every secret value replaced by ``***`` (``--api-key=***``, ``--hf-token ***``)."""
    out = [str(a) for a in argv]
    for i in secret_positions(out):
        out[i] = f"{out[i].split('=', 1)[0]}={MASK}" if is_secret_flag(out[i]) else MASK
    return out


def redact_text(text: str, argv: Sequence[str]) -> str:
    """``text`` with the secret values of ``argv`` masked wherever they appear in it."""
    for i in secret_positions(argv):
        value = argv[i].split("=", 1)[1] if is_secret_flag(argv[i]) else argv[i]
        if value:
            text = text.replace(value, MASK)
    return text
