"""The randomized conformance harness (scripts/conformance.py is its entry point)."""
