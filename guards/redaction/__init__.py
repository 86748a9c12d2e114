"""PII redaction engine: deterministic recognisers (checksums, prefix tables, context words), known-value
matching, overlap resolution and role-based policies. No ML models, no I/O. Recognisers run on a Unicode-
folded copy of the text (see `normalise`); findings and output always refer to the original characters.

Public API::

    redact(text, policy=None, *, known_names=None, known_addresses=None, allow_names=None, kinds=None)
    redact_value(value, policy=None, *, known_names=None, known_addresses=None, allow_names=None)
    role_policy(role, unmasked=False, hash_key=None)
    main_redact_stdin(role=None)   # CLI: stdin -> JSON on stdout
"""

from .cli import main_redact_stdin, redact_stream
from .engine import redact, redact_value, resolve_overlaps
from .models import Action, Finding, PiiKind, Redaction
from .policy import RedactionPolicy, keyed_digest, partial, role_policy

__all__ = [
    "Action",
    "Finding",
    "PiiKind",
    "Redaction",
    "RedactionPolicy",
    "keyed_digest",
    "main_redact_stdin",
    "partial",
    "redact",
    "redact_stream",
    "redact_value",
    "resolve_overlaps",
    "role_policy",
]
