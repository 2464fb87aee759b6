"""The Flask plumbing between the domains and the app factory."""
