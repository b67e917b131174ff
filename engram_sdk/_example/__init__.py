"""The example connector and its sandbox: the reference for docs/writing-a-connector.md."""

from .connector import ExampleCheckpoint, ExampleConfig, ExampleConnector

__all__ = ["ExampleCheckpoint", "ExampleConfig", "ExampleConnector"]
