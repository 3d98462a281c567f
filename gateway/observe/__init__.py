"""What operators see: the access log and Prometheus metrics."""
