"""Runnable integration examples; each directory has its own README.md. Packages so that the tests
can import them and ``engram demo`` can load kestrel_demo (``engram_sdk.samples.load_example``)."""
