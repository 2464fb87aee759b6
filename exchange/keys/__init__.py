"""The exchange's own keys and where they are kept (keys.md)."""
