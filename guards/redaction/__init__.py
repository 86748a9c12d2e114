"""PII redaction engine: one unit per kind (`kinds/`: patterns, validators, context cues, field hints and
masking facts together), the cross-kind digit classifier (`digits`), known-value matching, overlap
resolution and role-based masking. People's names in free text come from rules plus an NER model shipped in
a PyPI package (`kinds/person`). Recognisers run on a Unicode-folded copy of the text (see `normalise`);
findings and output always refer to the original characters.

Public API::

    redact(text, policy=None, *, known_names=None, known_addresses=None, allow_names=None, kinds=None)
    redact_value(value, policy=None, *, known_names=None, known_addresses=None, allow_names=None)
    role_policy(role, unmasked=False, hash_key=None)
    require_ner()                  # load the NER model now; raises NerUnavailable (server start-up)
    redact_stream(stdin, stdout, role=None)   # `kredete redact`: stdin -> JSON on stdout
"""

from .engine import redact, redact_value, resolve_overlaps
from .kinds.person import NerUnavailable
from .kinds.person import require_model as require_ner
from .masking import RedactionPolicy, keyed_digest, partial, role_policy
from .models import Action, Finding, PiiKind, Redaction
from .stdio import redact_stream

__all__ = [
    "Action",
    "Finding",
    "NerUnavailable",
    "PiiKind",
    "Redaction",
    "RedactionPolicy",
    "keyed_digest",
    "partial",
    "redact",
    "redact_stream",
    "redact_value",
    "require_ner",
    "resolve_overlaps",
    "role_policy",
]
