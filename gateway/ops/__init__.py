"""Running the gateway: the server, config generations and live reload, workers, the admin listener."""
