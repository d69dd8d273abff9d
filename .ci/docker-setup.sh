#!/usr/bin/env bash
# A Docker engine, aarch64 emulation and the test stand-ins for the Lambda images, on Debian, for the
# `docker`-marked tests.
#
#   .ci/docker-setup.sh [PYTHON]        # PYTHON runs tests.support.standin_images [default: python3]
#   . .ci/docker-setup.sh [PYTHON]      # the same, and exports LAYERFORGE_STANDIN_<ROLE>=<image>
#
# Idempotent: each step checks first and says what it found or did. As root with apt-get it installs
# docker.io qemu-user-static binfmt-support mmdebstrap arch-test when missing, starts dockerd in the
# background when no engine answers (log: $LAYERFORGE_DOCKERD_LOG), mounts binfmt_misc and enables
# qemu-aarch64, checks that an aarch64 program runs, and builds the stand-in images that are missing.
# Without root or apt-get it changes nothing on the machine, says so, and only builds the images when an
# engine already answers and mmdebstrap is installed. Exit (or return) status 0 when the images are ready.

_layerforge_say() { echo "docker-setup: $*"; }

_layerforge_docker_setup() {
  local python="${1:-python3}"
  local repo log privileged=1 machine status=0 out
  local packages=(docker.io qemu-user-static binfmt-support mmdebstrap arch-test)
  repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  log="${LAYERFORGE_DOCKERD_LOG:-/var/log/layerforge-dockerd.log}"
  machine="$(uname -m)"
  case "$python" in */*) python="$(cd "$(dirname "$python")" && pwd)/$(basename "$python")" ;; esac

  if [ "$(uname -s)" != Linux ]; then
    _layerforge_say "not Linux: nothing to do (use Docker Desktop; the stand-in images are built on Debian only)"
    return 0
  fi
  if [ "$(id -u)" != 0 ]; then
    privileged=0
    _layerforge_say "not root (uid $(id -u)): installing packages, starting dockerd and enabling binfmt are skipped"
  elif ! command -v apt-get >/dev/null 2>&1; then
    privileged=0
    _layerforge_say "no apt-get here: installing packages, starting dockerd and enabling binfmt are skipped"
  fi

  # 1. Packages.
  if [ "$privileged" = 1 ]; then
    local missing=() p
    for p in "${packages[@]}"; do
      if [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" != installed ]; then
        missing+=("$p")
      fi
    done
    if [ "${#missing[@]}" = 0 ]; then
      _layerforge_say "packages: ${packages[*]} already installed"
    else
      _layerforge_say "packages: installing ${missing[*]}"
      if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends "${missing[@]}" >/dev/null; }; then
        _layerforge_say "error: apt-get could not install ${missing[*]}"
        return 1
      fi
    fi
  fi

  # 2. The engine.
  if timeout 20 docker info >/dev/null 2>&1; then
    _layerforge_say "engine: answering (server $(timeout 20 docker version --format '{{.Server.Version}}' 2>/dev/null))"
  elif [ "$privileged" = 1 ]; then
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1 \
      && systemctl start docker >/dev/null 2>&1 && timeout 20 docker info >/dev/null 2>&1; then
      _layerforge_say "engine: started the docker service with systemctl"
    else
      local pid="" waited=0
      if [ -s /var/run/docker.pid ] && kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
        pid="$(cat /var/run/docker.pid)"
        _layerforge_say "engine: dockerd (pid $pid) is running but not answering yet; waiting for it"
      else
        mkdir -p "$(dirname "$log")"
        # setsid: the daemon outlives this script and is not in the caller's process group.
        setsid dockerd >>"$log" 2>&1 </dev/null &
        pid=$!
        _layerforge_say "engine: started dockerd in the background (pid $pid, log $log)"
      fi
      until timeout 5 docker info >/dev/null 2>&1; do
        if ! kill -0 "$pid" 2>/dev/null; then
          _layerforge_say "error: dockerd (pid $pid) exited; the end of $log:"
          tail -n 15 "$log" | sed 's/^/  /'
          return 1
        fi
        if [ "$waited" -ge 60 ]; then
          _layerforge_say "error: dockerd (pid $pid) did not answer within 60 s; the end of $log:"
          tail -n 15 "$log" | sed 's/^/  /'
          return 1
        fi
        sleep 1
        waited=$((waited + 1))
      done
      _layerforge_say "engine: answering after ${waited} s"
    fi
  else
    _layerforge_say "engine: none answers and this user cannot start one; the stand-in images are not built"
    return 0
  fi

  # 3. aarch64 emulation (binfmt_misc with qemu-user-static's fix-binary entry works inside containers).
  if [ "$machine" != aarch64 ]; then
    if [ "$privileged" = 1 ]; then
      if [ -e /proc/sys/fs/binfmt_misc/status ]; then
        _layerforge_say "binfmt_misc: already mounted"
      elif mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc; then
        _layerforge_say "binfmt_misc: mounted at /proc/sys/fs/binfmt_misc"
      else
        _layerforge_say "error: could not mount binfmt_misc"
        status=1
      fi
      if [ "$(head -n 1 /proc/sys/fs/binfmt_misc/qemu-aarch64 2>/dev/null)" = enabled ]; then
        _layerforge_say "binfmt: qemu-aarch64 already enabled"
      elif update-binfmts --enable qemu-aarch64; then
        _layerforge_say "binfmt: enabled qemu-aarch64"
      else
        _layerforge_say "error: update-binfmts --enable qemu-aarch64 failed"
        status=1
      fi
    fi
    # A 160-byte static aarch64 program that writes "aarch64" (write + exit system calls, no libc).
    local probe said
    probe="$(mktemp)"
    base64 -d >"$probe" <<'ELF'
f0VMRgIBAQAAAAAAAAAAAAIAtwABAAAAeABAAAAAAABAAAAAAAAAAAAAAAAAAAAAAAAAAEAAOAABAAAAAAAAAAEAAAAFAAAAAAAAAAAAAAAAAEAAAAAAAAAAQAAAAAAAoAAAAAAAAACgAAAAAAAAAAAQAAAAAAAAIACA0uEAABACAYDSCAiA0gEAANQAAIDSqAuA0gEAANRhYXJjaDY0Cg==
ELF
    chmod +x "$probe"
    said="$("$probe" 2>&1)" || true
    rm -f "$probe"
    if [ "$said" = aarch64 ]; then
      _layerforge_say "binfmt: an aarch64 program runs here (under qemu)"
    else
      _layerforge_say "error: an aarch64 program does not run here (${said:-no output}); arm64 images cannot be built or run"
      status=1
    fi
  fi

  # 4. The stand-in images (missing ones only).
  if [ "$privileged" = 0 ] && ! command -v mmdebstrap >/dev/null 2>&1; then
    _layerforge_say "images: mmdebstrap is not installed and this user cannot install it; not built"
    return "$status"
  fi
  _layerforge_say "images: $python -m tests.support.standin_images"
  if ! out="$(cd "$repo" && "$python" -m tests.support.standin_images)"; then
    _layerforge_say "error: the stand-in images could not be built (see above)"
    return 1
  fi
  local role image
  while read -r role image; do
    [ -n "$role" ] || continue
    echo "$role $image"
    if [ "${BASH_SOURCE[0]}" != "$0" ]; then # sourced: tell the caller's shell
      role="$(echo "$role" | tr 'a-z-' 'A-Z_')"
      export "LAYERFORGE_STANDIN_${role}=${image}"
    fi
  done <<<"$out"
  return "$status"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  _layerforge_docker_setup "$@"
  exit $?
else
  _layerforge_docker_setup "$@"
fi
