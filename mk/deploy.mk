# Deployment targets: container image, host install (systemd), chart lint.
# Included by the main Makefile (`-include mk/*.mk`); every variable can be overridden.

IMAGE ?= telegen:dev
BASE_IMAGE ?= telegen/bookworm-base:latest
# The mirror apt is configured with on this machine (no image registry is reachable).
DEBIAN_MIRROR ?= $(shell sed -n 's/^URIs: *\(http[^ ]*debian\)$$/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n1)
DEBIAN_MIRROR := $(if $(DEBIAN_MIRROR),$(DEBIAN_MIRROR),http://deb.debian.org/debian)
BASE_ROOTFS ?= /var/tmp/telegen-bookworm-rootfs

DESTDIR ?=
PREFIX ?= /opt/telegen
SYSCONFDIR ?= /etc/telegen
UNITDIR ?= /etc/systemd/system
INSTALL_PYTHON ?= /usr/bin/python3
# Extra pip arguments for `make install` (e.g. --no-index --find-links=wheels/ offline).
PIP_ARGS ?=
# What `make image` and `make install` stamp the package with (telegen/buildinfo.py, shown by
# /status, telegen_build_info and `telegen version`): the checkout's HEAD (`-dirty` when tracked
# files changed; empty outside a git checkout, which reads "unknown") and the build's UTC time.
BUILD_COMMIT ?= $(shell $(INSTALL_PYTHON) -m telegen.buildinfo commit 2>/dev/null)
BUILD_TIME ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)

.PHONY: image base-image install uninstall chart-lint

# Base image: built locally from Debian's mirror when missing (debootstrap + docker import).
base-image:
	@if docker image inspect $(BASE_IMAGE) >/dev/null 2>&1; then \
	  echo "deploy: base image $(BASE_IMAGE) present"; \
	else \
	  set -e; \
	  echo "deploy: building $(BASE_IMAGE) with debootstrap from $(DEBIAN_MIRROR) (takes a few minutes)"; \
	  rm -rf $(BASE_ROOTFS); mkdir -p $(BASE_ROOTFS); \
	  debootstrap --variant=minbase bookworm $(BASE_ROOTFS) $(DEBIAN_MIRROR); \
	  rm -rf $(BASE_ROOTFS)/var/cache/apt/archives/*.deb $(BASE_ROOTFS)/var/lib/apt/lists/*; \
	  tar -C $(BASE_ROOTFS) -c . | docker import \
	    -c 'ENV LANG=C.UTF-8' -c 'CMD ["/bin/bash"]' - $(BASE_IMAGE); \
	  rm -rf $(BASE_ROOTFS); \
	  echo "deploy: imported $(BASE_IMAGE)"; \
	fi

# CAs the site added to this host (e.g. an HTTPS-intercepting proxy in front of PyPI), for
# pip inside the build only.
EXTRA_CA_FILES ?= $(wildcard /usr/local/share/ca-certificates/*.crt)

image: base-image
	docker build --force-rm --network host --build-arg BASE_IMAGE=$(BASE_IMAGE) \
	  --build-arg DEBIAN_MIRROR=$(DEBIAN_MIRROR) \
	  --build-arg EXTRA_CA_CERTS="$$(cat /dev/null $(EXTRA_CA_FILES))" \
	  --build-arg TELEGEN_COMMIT="$(BUILD_COMMIT)" --build-arg TELEGEN_BUILT="$(BUILD_TIME)" \
	  -t $(IMAGE) .

# Host install: /opt/telegen/{venv,...}, /etc/telegen/config.yaml (kept if present),
# the systemd unit. DESTDIR stages into a temporary root (packaging, tests).
# The venv is created at its final path inside DESTDIR and its scripts' shebangs are
# rewritten to $(PREFIX) so the staged tree works once copied to /.
install:
	@set -e; \
	root="$(DESTDIR)"; venv="$$root$(PREFIX)/venv"; \
	echo "deploy: installing telegen into $$root$(PREFIX)"; \
	mkdir -p "$$root$(PREFIX)" "$$root$(SYSCONFDIR)" "$$root$(UNITDIR)"; \
	if [ ! -x "$$venv/bin/python" ]; then \
	  $(INSTALL_PYTHON) -m venv --system-site-packages "$$venv"; \
	fi; \
	"$$venv/bin/python" -m pip install -q --disable-pip-version-check $(PIP_ARGS) .; \
	(cd / && "$$venv/bin/python" -m telegen.buildinfo stamp --commit "$(BUILD_COMMIT)" --built "$(BUILD_TIME)"); \
	if [ ! -e "$$venv/share/telegen/bpf/include/events.h" ]; then \
	  mkdir -p "$$venv/share/telegen"; rm -rf "$$venv/share/telegen/bpf"; cp -a bpf "$$venv/share/telegen/bpf"; \
	fi; \
	if [ -n "$$root" ]; then \
	  grep -rlI --null "$$venv" "$$venv/bin" | xargs -0 -r sed -i "s#$$venv#$(PREFIX)/venv#g"; \
	fi; \
	mkdir -p "$$root/usr/local/bin"; \
	ln -sfn "$(PREFIX)/venv/bin/telegen" "$$root/usr/local/bin/telegen"; \
	if [ -e "$$root$(SYSCONFDIR)/config.yaml" ]; then \
	  echo "deploy: keeping existing $(SYSCONFDIR)/config.yaml"; \
	else \
	  install -m 0644 telegen/defaults.yaml "$$root$(SYSCONFDIR)/config.yaml"; \
	  echo "deploy: wrote default $(SYSCONFDIR)/config.yaml"; \
	fi; \
	if [ ! -e "$$root$(SYSCONFDIR)/telegen.env" ]; then \
	  install -m 0600 deploy/telegen.env.example "$$root$(SYSCONFDIR)/telegen.env"; \
	fi; \
	install -m 0755 deploy/container-entrypoint.sh "$$root$(PREFIX)/hostenv.sh"; \
	install -D -m 0644 docs/install.md "$$root$(PREFIX)/docs/install.md"; \
	sed 's#/opt/telegen#$(PREFIX)#g; s#/etc/telegen#$(SYSCONFDIR)#g' deploy/telegen.service \
	  > "$$root$(UNITDIR)/telegen.service"; \
	chmod 0644 "$$root$(UNITDIR)/telegen.service"; \
	if [ -z "$$root" ] && command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then \
	  systemctl daemon-reload; \
	  echo "deploy: run 'systemctl enable --now telegen' to start it"; \
	fi; \
	echo "deploy: installed $(PREFIX), $(SYSCONFDIR)/config.yaml, $(UNITDIR)/telegen.service"

uninstall:
	rm -rf "$(DESTDIR)$(PREFIX)" "$(DESTDIR)$(UNITDIR)/telegen.service" "$(DESTDIR)/usr/local/bin/telegen"
	@echo "deploy: kept $(SYSCONFDIR) (configuration and token)"

chart-lint: setup
	$(PY) -m tests.unit.deploy.chart lint
