"""NIN: national identification numbers. Nigeria's 11-digit NIN comes from the digit classifier; Ghana Card
PINs, UK National Insurance numbers and labelled Kenyan national IDs are recognised here."""

from __future__ import annotations

import re
from collections.abc import Iterator

from ..spec import Candidate, KindSpec

# Ghana Card PIN: GHA-#########-# (the format alone identifies it).
_GHANA_CARD = re.compile(r"(?<![\w-])GHA-\d{9}-\d(?!\w)")
# UK National Insurance number: two prefix letters (not D F I Q U V; second not O; not BG GB NK KN NT TN ZZ),
# six digits, suffix A-D; spaced or not.
_UK_NINO = re.compile(
    r"(?<![A-Za-z0-9])(?!BG|GB|NK|KN|NT|TN|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]"
    r"[ \t]?\d{2}[ \t]?\d{2}[ \t]?\d{2}[ \t]?[A-D](?![A-Za-z0-9])"
)
# Kenyan national ID: 7-8 digits, only with an ID label just before it.
_KE_ID = re.compile(
    r"(?i:national[ \t]+id(?:entity)?(?:[ \t]+(?:card|number|no\.?))?|id[ \t]*(?:no\.?|number|#)|huduma(?:[ \t]+namba)?"
    r"|kitambulisho)[ \t]*[:#]?[ \t]*(?P<id>\d(?<!\d\d)\d{6,7})(?!\d)"
)


def find_national_ids(text: str) -> Iterator[Candidate]:
    """Ghana Card PINs, UK National Insurance numbers and (labelled) Kenyan national IDs."""
    for m in _GHANA_CARD.finditer(text):
        yield Candidate("NIN", m.start(), m.end(), 0.95, "ghana_card")
    for m in _UK_NINO.finditer(text):
        yield Candidate("NIN", m.start(), m.end(), 0.85, "uk_nino")
    for m in _KE_ID.finditer(text):
        yield Candidate("NIN", m.start("id"), m.end("id"), 0.85, "kenya_national_id")


SPEC = KindSpec("NIN", recognizers=(find_national_ids,),
                cues=r"nin|national\s+identi(?:fication|ty)|nimc|national\s+id",
                field_hints=("nin",), tail=True)
