"""SSN: US Social Security numbers (dashed, dotted, or bare with an SSN label; found by the digit classifier)."""

from ..spec import KindSpec


def ssn_ok(area: str, group: str, serial: str) -> bool:
    """US SSA rules: area not 000, 666 or 900-999; group not 00; serial not 0000."""
    a = int(area)
    return a != 0 and a != 666 and a < 900 and group != "00" and serial != "0000"


SPEC = KindSpec("SSN", cues=r"ssn|social\s+security", field_hints=("ssn", "social_security_number"), tail=True)
