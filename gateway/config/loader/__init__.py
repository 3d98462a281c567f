"""routes.yaml -> GatewayConfig, one module a section; `load` puts them together."""
from gateway.config.loader.load import build_config, load_config
from gateway.config.loader.sections import ConfigError
from gateway.config.loader.settings import parse_listen

__all__ = ["ConfigError", "build_config", "load_config", "parse_listen"]
