"""`exchange witness`: a witness any agency (or the auditor) runs on its own host, with its own key and state
(witness.md §3, C2SP tlog-witness and tlog-cosignature).

- `state.py`: the witness's own SQLite file: the logs it knows (origin and verifier key), the latest checkpoint it
  cosigned for each, and the checkpoints it refused as evidence;
- `services.py`: `Witness.add_checkpoint`, the checks of C2SP tlog-witness in order, then the cosignature;
- `http.py`: the WSGI app (`POST /add-checkpoint`), no Flask needed;
- `cli.py`: `exchange witness init|serve|status`.

It shares nothing with the exchange's server but the wire code (`exchange.protocol`) and the atomic file write.
"""
