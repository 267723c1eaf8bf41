# Local stand-in for python:3.11.10-slim-bookworm, for machines that cannot pull images: Debian
# bookworm's python3 (3.11.2) + venv on the debootstrap base. `make images` (scripts/build_images.py)
# builds it only when it starts its own dockerd, tags it cachedmodel-local/python:3.11-bookworm and
# hands it to images/model-service and images/operator through their `PYTHON_IMAGE` build arg; with a
# running Docker engine those build on python:3.11.10-slim-bookworm as users do.
# Context: a directory holding this file and ca-certificates.crt, the host's CA bundle: pip in the
# project's builds must trust what the host trusts (this base is machine-specific on purpose, so the
# project's Dockerfiles stay exactly what users build).
ARG DEBIAN_IMAGE=cachedmodel-local/debian:bookworm-minbase
FROM ${DEBIAN_IMAGE}
# Debian's versions follow the mirror's bookworm suites (security updates included): not pinned.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv python-is-python3 \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
ENV LANG=C.UTF-8 \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
CMD ["python3"]
