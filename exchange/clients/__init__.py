"""Agency clients: the OAuth2 clients of the partner agencies, their scopes, status and public keys."""
