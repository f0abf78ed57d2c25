#!/bin/sh
# Entrypoint of the tribune image, with the conventions of the official
# Consul image: `agent ...` becomes `tribune agent -data-dir=... -config-dir=...`
# plus -bind/-client from interface names; a first argument that is a flag
# or a tribune command runs tribune; anything else runs as given.
#
# Environment (the CONSUL_* names work too; TRIBUNE_* wins):
#   TRIBUNE_BIND_INTERFACE    interface whose IPv4 address is passed as -bind
#   TRIBUNE_CLIENT_INTERFACE  interface whose IPv4 address is passed as -client
#   TRIBUNE_LOCAL_CONFIG      JSON written to $TRIBUNE_CONFIG_DIR/local.json
#   TRIBUNE_DATA_DIR          default /tribune/data (a volume)
#   TRIBUNE_CONFIG_DIR        default /tribune/config
#   TRIBUNE_DISABLE_PERM_MGMT set: do not chown the data and config dirs
#   TRIBUNE_ALLOW_PRIVILEGED_PORTS set: let the agent bind ports below 1024
set -e

# first_set NAME...: the value of the first variable that is set and not empty.
first_set() {
  for name in "$@"; do
    eval "value=\${$name:-}"
    if [ -n "$value" ]; then
      printf '%s' "$value"
      return 0
    fi
  done
  return 0
}

# address_of INTERFACE WHAT: its first IPv4 address, or exit naming it.
address_of() {
  addr=$(ip -o -4 addr list "$1" 2>/dev/null | head -n1 | awk '{print $4}' | cut -d/ -f1)
  if [ -z "$addr" ]; then
    echo "Could not find IP for interface '$1', exiting" >&2
    exit 1
  fi
  echo "==> Found address '$addr' for interface '$1', setting $2 option..." >&2
  printf '%s' "$addr"
}

DATA_DIR=$(first_set TRIBUNE_DATA_DIR)
DATA_DIR=${DATA_DIR:-/tribune/data}
CONFIG_DIR=$(first_set TRIBUNE_CONFIG_DIR)
CONFIG_DIR=${CONFIG_DIR:-/tribune/config}

BIND=
iface=$(first_set TRIBUNE_BIND_INTERFACE CONSUL_BIND_INTERFACE)
if [ -n "$iface" ]; then
  BIND="-bind=$(address_of "$iface" bind)"
fi
CLIENT=
iface=$(first_set TRIBUNE_CLIENT_INTERFACE CONSUL_CLIENT_INTERFACE)
if [ -n "$iface" ]; then
  CLIENT="-client=$(address_of "$iface" client)"
fi

local_config=$(first_set TRIBUNE_LOCAL_CONFIG CONSUL_LOCAL_CONFIG)
if [ -n "$local_config" ]; then
  mkdir -p "$CONFIG_DIR"
  printf '%s\n' "$local_config" > "$CONFIG_DIR/local.json"
fi

# `docker run tribune -version`: flags go to tribune.
case "${1:-}" in
  -*) set -- tribune "$@" ;;
esac

is_command() {
  tribune --help 2>&1 | awk -v c="$1" '$1 == c { found = 1 } END { exit !found }'
}

if [ "${1:-}" = agent ]; then
  shift
  # -dev keeps everything in memory: no data dir then.
  dev=
  for a in "$@"; do
    case "$a" in -dev | --dev | -dev=true | --dev=true) dev=1 ;; esac
  done
  if [ -n "$dev" ]; then
    set -- tribune agent -config-dir="$CONFIG_DIR" $BIND $CLIENT "$@"
  else
    set -- tribune agent -data-dir="$DATA_DIR" -config-dir="$CONFIG_DIR" $BIND $CLIENT "$@"
  fi
elif [ -n "${1:-}" ] && [ "$1" != tribune ] && is_command "$1"; then
  set -- tribune "$@"
fi

# tribune runs as the tribune user when the image has one.
if [ "${1:-}" = tribune ] && [ "$(id -u)" = 0 ] && id tribune >/dev/null 2>&1; then
  if [ -z "$(first_set TRIBUNE_DISABLE_PERM_MGMT CONSUL_DISABLE_PERM_MGMT)" ]; then
    for d in "$DATA_DIR" "$CONFIG_DIR"; do
      if [ -d "$d" ] && [ "$(stat -c %u "$d")" != "$(id -u tribune)" ]; then
        chown -R tribune:tribune "$d"
      fi
    done
  fi
  if [ -n "$(first_set TRIBUNE_ALLOW_PRIVILEGED_PORTS CONSUL_ALLOW_PRIVILEGED_PORTS)" ]; then
    setcap "cap_net_bind_service=+ep" "$(command -v tribune)"
  fi
  set -- setpriv --reuid=tribune --regid=tribune --init-groups "$@"
fi

exec "$@"
