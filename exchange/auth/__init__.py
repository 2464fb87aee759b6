"""Who is calling: the caller seam the register reads, and (with the OAuth2 issue) the token machinery."""
