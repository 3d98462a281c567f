"""Gunicorn settings for the upstream: loopback only, threads that keep connections alive.

gthread workers honour keep-alive, so the gateway's pooled connections are
reused instead of stalling a sync worker for its whole timeout.
"""
import os

bind = os.environ.get("UPSTREAM_BIND", "127.0.0.1:5000")
worker_class = "gthread"
workers = int(os.environ.get("UPSTREAM_WORKERS", "2"))
threads = int(os.environ.get("UPSTREAM_THREADS", "8"))
keepalive = 75
accesslog = None
