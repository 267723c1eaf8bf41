# Local stand-in for redis:7.2, for machines that cannot pull images: Debian bookworm's redis-server
# (7.0.x, hence the honest tag cachedmodel-local/redis:7.0-bookworm) on the debootstrap base, with the
# official image's uid/gid 999 and /data. What the operator's StatefulSet needs of a Redis image is
# there: sh, redis-server and redis-cli on PATH, a writable /tmp. Built by `make images`
# (scripts/build_images.py) only when it starts its own dockerd; context: this file alone.
ARG DEBIAN_IMAGE=cachedmodel-local/debian:bookworm-minbase
FROM ${DEBIAN_IMAGE}
# The user first, so the package's own `adduser --system redis` finds it and keeps uid 999.
# Debian's versions follow the mirror's bookworm suites (security updates included): not pinned.
# hadolint ignore=DL3008
RUN groupadd --system --gid 999 redis \
    && useradd --system --uid 999 --gid 999 --home-dir /data --no-create-home --shell /usr/sbin/nologin redis \
    && apt-get update \
    && apt-get install -y --no-install-recommends redis-server \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \
    && mkdir -p /data \
    && chown redis:redis /data
WORKDIR /data
EXPOSE 6379
USER 999:999
CMD ["redis-server", "--protected-mode", "no", "--bind", "0.0.0.0", "--save", ""]
