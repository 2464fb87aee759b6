"""The partner-side library: what an agency's system needs to talk to the exchange (no Flask, no database)."""
