"""The wire protocol, shared by the server and the partner library: no Flask, no SQLAlchemy."""
