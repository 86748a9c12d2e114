"""BVN: Nigeria's 11-digit Bank Verification Number (issued from 22...). Shares its shape with NIN and NG
phone numbers, so the digit classifier (`guards.redaction.digits`) tells them apart by these cues."""

from ..spec import KindSpec

SPEC = KindSpec("BVN", cues=r"bvn|bank\s+verification", field_hints=("bvn",), tail=True)
