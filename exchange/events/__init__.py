"""Events (events.md): the outbox written with each change, the long-polling read, webhooks and their delivery."""
