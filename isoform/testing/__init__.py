"""Testing tools for backend authors: `isoform.testing.conformance` checks a backend op by op
against the NumPy reference."""
