"""The Flask plumbing, above the domains' services and below the app factory: the caller seam (`caller`), the guard
(`guards.protected`), error mapping (`errors`), shared schemas (`schemas`), conditional requests (`conditional`), the
request's audit annotations (`audit_context`) and the response pipeline (`pipeline`)."""
