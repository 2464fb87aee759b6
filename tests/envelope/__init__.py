"""Tests of the signed-and-encrypted envelope (protocol.md §4)."""
