# telegen container image: Debian bookworm + Debian's BCC (python3-bpfcc) + the agent in a
# venv that sees the system site-packages. Build with `make image` (builds the base image
# locally with debootstrap when it is missing; no registry needed). Run as documented in
# docs/install.md: --privileged --pid=host --network host with the host mounts.
ARG BASE_IMAGE=telegen/bookworm-base:latest
FROM ${BASE_IMAGE}

ARG DEBIAN_MIRROR=http://deb.debian.org/debian
ARG DEBIAN_SECURITY_MIRROR=http://deb.debian.org/debian-security
ENV DEBIAN_FRONTEND=noninteractive \
    LANG=C.UTF-8 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

# BCC from Debian (never `pip install bcc`: that PyPI name is an unrelated package).
# Kernel headers fallback: the files of the package linux-headers-amd64 points at (the
# -amd64 and -common trees under /usr/src), unpacked without their gcc/kbuild dependencies,
# which BCC's in-process clang does not need (~150 MB saved). The entrypoint links them only
# when the host's own headers are not mounted.
RUN set -eux; \
    printf 'deb %s bookworm main\ndeb %s bookworm-updates main\ndeb %s bookworm-security main\n' \
      "$DEBIAN_MIRROR" "$DEBIAN_MIRROR" "$DEBIAN_SECURITY_MIRROR" >/etc/apt/sources.list; \
    apt-get update -q; \
    apt-get install -y -q --no-install-recommends \
      python3 python3-venv python3-bpfcc ca-certificates util-linux mount; \
    hdr="$(apt-cache depends linux-headers-amd64 | awk '/Depends: linux-headers-/ {print $2; exit}')"; \
    common="$(apt-cache depends "$hdr" | awk '/Depends: linux-headers-.*-common/ {print $2; exit}')"; \
    cd /tmp; apt-get download "$hdr" "$common"; \
    for deb in ./*.deb; do dpkg-deb -x "$deb" /tmp/hdr; done; \
    cp -a /tmp/hdr/usr/src/. /usr/src/; \
    rm -rf ./*.deb /tmp/hdr; \
    ls -d /usr/src/linux-headers-*-amd64 /usr/src/linux-headers-*-common; \
    apt-get clean; \
    rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt/* /var/log/dpkg.log

ENV VIRTUAL_ENV=/opt/telegen/venv \
    PATH=/usr/local/bin:/opt/telegen/venv/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin \
    TELEGEN_STATE_DIR=/run/telegen

# Extra CA certificates (PEM) the build host trusts, e.g. a TLS-intercepting egress proxy in
# front of PyPI; `make image` passes the host's /usr/local/share/ca-certificates/*.crt.
# Used by pip during the build only; the image's trust store is not changed.
ARG EXTRA_CA_CERTS=""

# Dependencies first, keyed on pyproject.toml only, so code changes rebuild in seconds.
COPY pyproject.toml /src/pyproject.toml
RUN set -eux; \
    if [ -n "$EXTRA_CA_CERTS" ]; then \
      set +x; \
      cat /etc/ssl/certs/ca-certificates.crt >/tmp/build-ca.pem; \
      printf '%s\n' "$EXTRA_CA_CERTS" >>/tmp/build-ca.pem; \
      export PIP_CERT=/tmp/build-ca.pem; set -x; \
    fi; \
    python3 -m venv --system-site-packages /opt/telegen/venv; \
    python3 -c 'import shlex, tomllib; print(" ".join(shlex.quote(d) for d in tomllib.load(open("/src/pyproject.toml", "rb"))["project"]["dependencies"]))' >/tmp/deps; \
    eval "/opt/telegen/venv/bin/pip install -q $(cat /tmp/deps)"; \
    rm -f /tmp/deps /tmp/build-ca.pem

COPY . /src
RUN set -eux; \
    if [ -n "$EXTRA_CA_CERTS" ]; then \
      set +x; \
      cat /etc/ssl/certs/ca-certificates.crt >/tmp/build-ca.pem; \
      printf '%s\n' "$EXTRA_CA_CERTS" >>/tmp/build-ca.pem; \
      export PIP_CERT=/tmp/build-ca.pem; set -x; \
    fi; \
    cd /src; \
    test -f README.md || echo '# telegen' >README.md; \
    /opt/telegen/venv/bin/pip install -q .; \
    # BPF C sources where the loader looks (venv/share/telegen/bpf), unless the package put them there.
    share=/opt/telegen/venv/share/telegen; \
    if [ ! -e "$share/bpf/include/events.h" ]; then mkdir -p "$share"; cp -a bpf "$share/bpf"; fi; \
    cd /; rm -rf /src /tmp/build-ca.pem; \
    /opt/telegen/venv/bin/python -c 'import bcc, telegen'

# The commit and build time `make image` passes (telegen/buildinfo.py; empty reads "unknown"),
# in a layer of their own: a new build time must not rebuild the install above.
ARG TELEGEN_COMMIT=""
ARG TELEGEN_BUILT=""
RUN cd / && /opt/telegen/venv/bin/python -m telegen.buildinfo stamp \
      --commit "$TELEGEN_COMMIT" --built "$TELEGEN_BUILT"

COPY deploy/container-entrypoint.sh /usr/local/bin/telegen
COPY deploy/healthcheck.py /opt/telegen/healthcheck.py
RUN chmod 0755 /usr/local/bin/telegen

LABEL org.opencontainers.image.title="telegen" \
      org.opencontainers.image.description="eBPF node telemetry agent" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.revision="${TELEGEN_COMMIT}" \
      org.opencontainers.image.created="${TELEGEN_BUILT}"

USER root
EXPOSE 19090
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
  CMD ["/opt/telegen/venv/bin/python", "/opt/telegen/healthcheck.py"]
ENTRYPOINT ["telegen"]
CMD ["run"]
