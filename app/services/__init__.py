"""Service functions: keyword-only, one transaction's worth of work each, no HTTP in here."""
