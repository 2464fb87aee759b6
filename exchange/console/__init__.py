"""The auditor's console (`exchange audit console`): a local web page that verifies the log and answers who looked at
whom, when and why.

It runs on the auditor's own machine, bound to 127.0.0.1, and trusts nothing it did not verify itself: it reads the
log from an export or from the exchange through the partner library, verifies it with the audit package's offline
verifier (`exchange.audit.verify.verify_log`), indexes what it verified in a local SQLite file (`store`), and serves
search, histories, charts (`charts`), anomaly flags (`rules`) and court-ready reports (`report`) from it (`web`).
Every asset is served from this package: no CDN, it works on a closed network.
"""
