"""Runnable integration examples; each directory has its own README.md. Packages only so that
tests/examples can import them."""
