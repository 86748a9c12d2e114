"""IP_ADDRESS: IPv4 with every octet <= 255 (not a four-part version number) and IPv6 (compressed, with an
embedded IPv4) checked by `ipaddress`."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator

from ..spec import Candidate, KindSpec


def ipv4_ok(candidate: str) -> bool:
    parts = candidate.split(".")
    return len(parts) == 4 and all(p.isdigit() and len(p) <= 3 and int(p) <= 255 for p in parts)


def ipv6_ok(candidate: str) -> bool:
    if candidate.count(":") < 2 or not any(c not in ":" for c in candidate):
        return False
    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:
        return False
    return True


_IPV4 = re.compile(r"\d(?<![\w.]\d)\d{0,2}\.(?:\d{1,3}\.){2}\d{1,3}(?!\w|\.\d)")
_IPV6 = re.compile(
    r"(?::(?<![\w:.]:)|[0-9A-Fa-f](?<![\w:.][0-9A-Fa-f])[0-9A-Fa-f]{0,3}:)(?:[0-9A-Fa-f]{0,4}:){1,6}"
    r"(?:(?<=:)(?:\d{1,3}\.){3}\d{1,3}|[0-9A-Fa-f]{1,4})?(?!\w|:|\.\d)"
)
# "version 4.1.1.1" is a four-part version number, not an address.
_VERSION_BEFORE = re.compile(r"(?<!\w)(?i:version|ver|release|build|firmware|app|sdk)\.?[ \t:]*$")


def find_ips(text: str) -> Iterator[Candidate]:
    """IPv4 (not right after a version label) and IPv6."""
    for m in _IPV4.finditer(text):
        if ipv4_ok(m.group()) and not _VERSION_BEFORE.search(text, max(0, m.start() - 12), m.start()):
            yield Candidate("IP_ADDRESS", m.start(), m.end(), 0.85, "ipv4")
    if "::" in text or text.count(":") >= 7:
        for m in _IPV6.finditer(text):
            if ipv6_ok(m.group()):
                yield Candidate("IP_ADDRESS", m.start(), m.end(), 0.85, "ipv6")


SPEC = KindSpec("IP_ADDRESS", digitless=(find_ips,), field_hints=("ip", "ip_address", "client_ip", "remote_addr"))
