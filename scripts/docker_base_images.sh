#!/usr/bin/env bash
# Makes the base images docker/Dockerfile builds from, debian:bookworm and
# debian:bookworm-slim, on an engine that cannot pull them (no registry).
#
#   scripts/docker_base_images.sh            create the missing ones
#   scripts/docker_base_images.sh --force    re-create both
#
# Where a registry answers, `docker pull` gives the real images and this
# script is not needed. Otherwise it bootstraps a minimal Debian 12 root file
# system with debootstrap (--variant=minbase, as the official images are)
# from the Debian mirror this machine's apt already uses, and imports it:
#   debian:bookworm       the minbase system;
#   debian:bookworm-slim  the same with documentation, man pages and
#                         locales removed and apt told not to install them
#                         (what the official -slim images do).
# Idempotent: an image that exists is left alone. The two root file systems
# are cached as tarballs in $FEDSIM_DOCKER_CACHE (default third_party/docker,
# git-ignored), so a second machine state (a CI run after a session, a
# `docker system prune`) imports them again without bootstrapping.
# Needs root (debootstrap) and about 1 minute with a warm apt mirror.
set -euo pipefail
cd "$(dirname "$0")/.."

suite=bookworm
cache=${FEDSIM_DOCKER_CACHE:-third_party/docker}
force=0
[ "${1:-}" = "--force" ] && force=1
start=$(date +%s)
log() { echo "docker_base_images: $*"; }

if ! docker info > /dev/null 2>&1; then
  log "the Docker engine is not reachable (docker info failed)" >&2
  exit 1
fi

have() { docker image inspect "$1" > /dev/null 2>&1; }
if [ "$force" = 0 ] && have "debian:$suite" && have "debian:$suite-slim"; then
  log "debian:$suite and debian:$suite-slim present"
  exit 0
fi

# The machine's own Debian mirrors: the first URI of a deb822 stanza (or a
# one-line entry) whose suites include $suite, and the same for security.
mirror=""
security=""
read_sources() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk -v suite="$suite" '
      function flush() { if (uris != "" && suites != "") print uris "|" suites; uris = ""; suites = "" }
      /^[[:space:]]*$/ { flush(); next }
      /^URIs:/   { uris = $2 }
      /^Suites:/ { $1 = ""; suites = $0 }
      END { flush() }' "$f"
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    awk '$1 == "deb" { u = $2; if (u ~ /^\[/) u = $3; s = ($2 ~ /^\[/) ? $4 : $3; print u "|" s }' "$f"
  done
}
while IFS='|' read -r uri suites; do
  case " $suites " in
    *" $suite-security "*) [ -z "$security" ] && security=$uri ;;
    *" $suite "*) [ -z "$mirror" ] && mirror=$uri ;;
  esac
done < <(read_sources)
mirror=${mirror:-http://deb.debian.org/debian}
security=${security:-http://deb.debian.org/debian-security}
log "mirror $mirror, security $security"

mkdir -p "$cache"
full_tar=$cache/debian-$suite.tar
slim_tar=$cache/debian-$suite-slim.tar

if [ "$force" = 1 ] || [ ! -s "$full_tar" ] || [ ! -s "$slim_tar" ]; then
  if ! command -v debootstrap > /dev/null; then
    if [ "$(id -u)" -ne 0 ]; then
      log "debootstrap is missing and this is not root: apt-get install debootstrap" >&2
      exit 1
    fi
    log "installing debootstrap"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends debootstrap > /dev/null 2>&1 ||
      { apt-get update -qq && apt-get install -y -qq --no-install-recommends debootstrap > /dev/null; }
  fi
  if [ "$(id -u)" -ne 0 ]; then
    log "debootstrap needs root" >&2
    exit 1
  fi
  work=$(mktemp -d /tmp/fedsim-rootfs.XXXXXX)
  trap 'rm -rf "$work"' EXIT
  rootfs=$work/rootfs
  log "debootstrap --variant=minbase $suite (this takes a minute or two)"
  keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  keyopt=()
  [ -f "$keyring" ] && keyopt=(--keyring="$keyring")
  if ! debootstrap --variant=minbase "${keyopt[@]}" "$suite" "$rootfs" "$mirror" \
      > "$work/debootstrap.log" 2>&1; then
    tail -20 "$work/debootstrap.log" >&2
    log "debootstrap failed (log above)" >&2
    exit 1
  fi
  # apt sources as in the official image (deb822), from the same mirrors.
  rm -f "$rootfs/etc/apt/sources.list"
  cat > "$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: $suite $suite-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security
Suites: $suite-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  # What the official images do for containers: no daemons started by
  # package installs, no apt caches kept in layers.
  printf '#!/bin/sh\nexit 101\n' > "$rootfs/usr/sbin/policy-rc.d"
  chmod 755 "$rootfs/usr/sbin/policy-rc.d"
  cat > "$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  echo 'Acquire::Languages "none";' > "$rootfs/etc/apt/apt.conf.d/docker-no-languages"
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
    "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/log/* "$rootfs"/tmp/*
  : > "$rootfs/etc/hostname"
  : > "$rootfs/etc/resolv.conf"
  tar --numeric-owner -C "$rootfs" -cf "$full_tar.tmp" .
  mv "$full_tar.tmp" "$full_tar"

  # -slim: no docs, man pages or locales now or from later installs.
  cat > "$rootfs/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
EOF
  find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/lintian/*
  find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias \
    -exec rm -rf {} +
  tar --numeric-owner -C "$rootfs" -cf "$slim_tar.tmp" .
  mv "$slim_tar.tmp" "$slim_tar"
  log "root file systems cached in $cache"
else
  log "using the cached root file systems in $cache"
fi

import() {
  local tar=$1 tag=$2
  if [ "$force" = 0 ] && have "$tag"; then
    log "$tag present"
    return
  fi
  docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["bash"]' \
    --message "fedsim: debootstrap --variant=minbase $suite" \
    "$tar" "$tag" > /dev/null
  log "imported $tag ($(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}'))"
}
import "$full_tar" "debian:$suite"
import "$slim_tar" "debian:$suite-slim"
log "done in $(( $(date +%s) - start )) s"
