# The grid's own services: proxy, manager and worker (see docker-compose.yml).
# Sessions do not run here: a worker with WEBGRID_PROVISIONER=docker starts
# each node in a container of the node image (node_image/Dockerfile).
#
# Build from the repository root:
#   docker build --network host -t webgrid .
FROM debian:bookworm-slim

# Debian's redis-server serves docker-compose.yml's Redis, as no registry
# image is assumed; any Redis 6.2 or later does as well.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv redis-server \
 && rm -rf /var/lib/apt/lists/*

COPY requirements.txt /tmp/requirements.txt
RUN python3 -m venv /opt/webgrid/venv \
 && /opt/webgrid/venv/bin/pip install --no-cache-dir -q \
      --disable-pip-version-check -r /tmp/requirements.txt

COPY celeryconfig.py /opt/webgrid/
COPY app/ /opt/webgrid/app/

ENV PATH=/opt/webgrid/venv/bin:$PATH \
    PYTHONPATH=/opt/webgrid \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

RUN useradd --create-home --shell /usr/sbin/nologin webgrid
USER webgrid
WORKDIR /opt/webgrid
