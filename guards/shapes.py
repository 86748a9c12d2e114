"""Regex fragments of values that are data by their shape (record ids, timestamps), shared by the guards.

Redaction uses them to keep ids intact and to skip whole-value ids and timestamps; delimiting uses them to
leave such values bare. Compile them with whatever anchoring the caller needs.
"""

UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
ISO_DATE = r"\d{4}-\d{2}-\d{2}"
#: The time part of an ISO 8601 date-time, to follow ISO_DATE: T or space, hh:mm[:ss[.fraction]][zone].
ISO_TIME = r"[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})?"
