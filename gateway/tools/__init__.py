"""Commands beside `serve`: check, explain, rule tests, probes and the development issuer."""
