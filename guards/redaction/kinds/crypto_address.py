"""CRYPTO_ADDRESS: ETH/ERC-20 (0x + 40 hex), BTC Base58Check and bech32/bech32m, Tron (TRC-20) Base58Check."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator

from ..spec import Candidate, KindSpec

_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(_B58)}


def base58check_decode(s: str) -> bytes | None:
    """Payload (version byte + data) of a Base58Check string, or None if the checksum is wrong."""
    num = 0
    for c in s:
        idx = _B58_INDEX.get(c)
        if idx is None:
            return None
        num = num * 58 + idx
    raw = num.to_bytes((num.bit_length() + 7) // 8, "big") if num else b""
    pad = len(s) - len(s.lstrip("1"))
    raw = b"\x00" * pad + raw
    if len(raw) < 5:
        return None
    payload, check = raw[:-4], raw[-4:]
    if hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4] != check:
        return None
    return payload


def btc_base58_ok(s: str) -> bool:
    """Legacy P2PKH (1...) or P2SH (3...) Bitcoin address with a valid Base58Check checksum."""
    payload = base58check_decode(s)
    return payload is not None and len(payload) == 21 and payload[0] in (0x00, 0x05)


def tron_ok(s: str) -> bool:
    """Tron (TRC-20) address: Base58Check, version byte 0x41."""
    payload = base58check_decode(s)
    return payload is not None and len(payload) == 21 and payload[0] == 0x41


_BECH32_CHARS = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_BECH32_GEN = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)


def _bech32_polymod(values: list[int]) -> int:
    chk = 1
    for v in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i in range(5):
            if (top >> i) & 1:
                chk ^= _BECH32_GEN[i]
    return chk


def bech32_ok(s: str) -> bool:
    """Segwit address (BIP-173 bech32 or BIP-350 bech32m) with a valid checksum."""
    if s.lower() != s and s.upper() != s:
        return False
    s = s.lower()
    pos = s.rfind("1")
    if pos < 1 or pos + 7 > len(s) or len(s) > 90:
        return False
    hrp, data = s[:pos], s[pos + 1 :]
    try:
        values = [_BECH32_CHARS.index(c) for c in data]
    except ValueError:
        return False
    expanded = [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]
    return _bech32_polymod(expanded + values) in (1, 0x2BC830A3)


_ETH = re.compile(r"0(?<!\w0)x[0-9a-fA-F]{40}(?!\w)")
_BTC_B58 = re.compile(r"[13](?<!\w[13])[1-9A-HJ-NP-Za-km-z]{25,34}(?!\w)")
_BECH32 = re.compile(r"(?:[bB](?<!\w[bB])[cC]|[tT](?<!\w[tT])[bB])1[02-9ac-hj-np-zAC-HJ-NP-Z]{6,87}(?!\w)")
_TRON = re.compile(r"T(?<!\wT)[1-9A-HJ-NP-Za-km-z]{33}(?!\w)")


def find_crypto(text: str) -> Iterator[Candidate]:
    for m in _ETH.finditer(text):
        yield Candidate("CRYPTO_ADDRESS", m.start(), m.end(), 0.9, "eth_address")
    for m in _BTC_B58.finditer(text):
        if btc_base58_ok(m.group()):
            yield Candidate("CRYPTO_ADDRESS", m.start(), m.end(), 0.95, "btc_base58check")
    for m in _BECH32.finditer(text):
        if bech32_ok(m.group()):
            yield Candidate("CRYPTO_ADDRESS", m.start(), m.end(), 0.95, "btc_bech32")
    for m in _TRON.finditer(text):
        if tron_ok(m.group()):
            yield Candidate("CRYPTO_ADDRESS", m.start(), m.end(), 0.95, "tron_base58check")


SPEC = KindSpec("CRYPTO_ADDRESS", digitless=(find_crypto,), field_hints=("wallet_address", "crypto_address"),
                tail=True)
