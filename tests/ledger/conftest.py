"""Fixtures of the ledger tests; the harness they use lives in ``ledger_harness`` (a
module with its own name, so test files import it unambiguously beside other conftests)."""

from ledger_harness import gate, gate_template, isolated_key_store, standard  # noqa: F401  (pytest fixtures)
