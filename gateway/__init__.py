"""JWT auth gateway: a reverse proxy that verifies bearer tokens and applies routes.yaml."""
