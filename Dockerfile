# The gateway image: pinned CPython on Debian slim, pinned dependencies, runs as a non-root user.
#   docker build -t jwt-auth-gateway .
#   docker run -p 8080:8080 -v "$PWD/config:/etc/gateway:ro" jwt-auth-gateway
# Mount the config *directory*, read-only: edits to routes.yaml then reload live (a single-file
# bind mount keeps the old inode when an editor replaces the file, and the change is never seen).
# All wheels are prebuilt (manylinux), so no compiler and no second build stage are needed.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE}
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/gateway/bin:$PATH \
    GATEWAY_LOG_FORMAT=json
COPY deploy/docker/gateway.txt /tmp/requirements.txt
RUN python -m venv /opt/gateway \
    && /opt/gateway/bin/pip install --no-cache-dir --no-deps --requirement /tmp/requirements.txt \
    && rm /tmp/requirements.txt \
    && groupadd --system --gid 10001 gateway \
    && useradd --system --uid 10001 --gid gateway --no-create-home --shell /usr/sbin/nologin gateway
WORKDIR /app
COPY gateway ./gateway
USER 10001:10001
# 8080: the public listener; 9901: the admin listener (/healthz /readyz /metrics), never published publicly
EXPOSE 8080 9901
ENTRYPOINT ["python", "-m", "gateway"]
CMD ["serve", "--config", "/etc/gateway/routes.yaml", "--listen", "0.0.0.0:8080"]
