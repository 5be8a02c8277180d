# One image for every service of docker-compose.yml: Ray head and workers, the bitprism
# driver (Ray jobs run `bitprism search` on the head) and the dashboard.
FROM python:3.11-slim

RUN apt-get update \
    && apt-get install -y --no-install-recommends procps \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --create-home --uid 1000 bitprism
WORKDIR /opt/bitprism
COPY pyproject.toml README.md ./
COPY bitprism ./bitprism
# torch pinned in the same command, so nothing pulls a CUDA build into the CPU image.
RUN pip install --no-cache-dir torch==2.13.0 . \
    && mkdir -p /data && chown bitprism /data
USER bitprism
ENV RAY_USAGE_STATS_ENABLED=0 \
    RAY_AUTH_MODE=disabled \
    BITPRISM_CACHE=/data/cache
