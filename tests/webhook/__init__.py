"""Pod mutating webhook: quantities, the mutation decision, the HTTPS app, property tests over reviews."""
