"""Tessera's shared core: RESP codec, partition hashing, command metadata, errors, config."""

__version__ = "0.1.0"
