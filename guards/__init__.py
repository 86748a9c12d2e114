"""Guards that sit between the data tier and LLM agents (PII redaction, and later other checks)."""
