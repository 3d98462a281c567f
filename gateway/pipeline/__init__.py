"""One request through the gateway: canonical path, route match, the decision, and the filter that acts on it."""
