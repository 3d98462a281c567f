"""Configuration: the typed model every part reads (`model`), and the YAML loader that builds it (`loader`, `lint`)."""
