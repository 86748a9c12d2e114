"""Evaluation harness (`kredete evals run`): retrieval quality, redaction quality, permission matrix, latency.

Each section returns a JSON-able dict; `evals.runner` writes them with plots into evals/reports/<timestamp>/.
"""
