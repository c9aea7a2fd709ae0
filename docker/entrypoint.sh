#!/bin/sh
# fedsim-entrypoint: the image's entrypoint. Runs the container's command
# as an unprivileged user that can write the run directory, whoever owns
# the host folder mounted at /fedsim/runs:
#
#   FEDSIM_UID[:FEDSIM_GID] if set; else the owner of /fedsim/runs if that
#   is not root; else the owner of /fedsim/configs if not root (the user
#   who checked the repository out); else 1000:1000 (the image's `fedsim`).
#
# A run directory FEDSIM_OUT under /fedsim/runs that does not exist yet is
# created first, as root, and given to that user, so a root-owned runs/
# (made by `fedsim run` as root, or by Docker itself for a missing bind
# mount) works as it is. Root is never kept: FEDSIM_UID=0 is refused. A
# container started as a user already (`docker run -u`, compose `user:`)
# runs the command as that user, unchanged.
set -eu
if [ "$(id -u)" != 0 ]; then
  exec "$@"
fi
owner() { stat -c '%u:%g' "$1" 2> /dev/null || echo 0:0; }
if [ -n "${FEDSIM_UID:-}" ]; then
  target="$FEDSIM_UID:${FEDSIM_GID:-$FEDSIM_UID}"
else
  target=1000:1000
  for dir in /fedsim/runs /fedsim/configs; do
    case $(owner "$dir") in
      0:*) ;;
      *) target=$(owner "$dir"); break ;;
    esac
  done
fi
uid=${target%%:*}
gid=${target#*:}
case "$uid$gid" in
  *[!0-9]*|'') echo "fedsim-entrypoint: FEDSIM_UID:FEDSIM_GID = $target; must be numeric ids" >&2; exit 2 ;;
esac
if [ "$uid" = 0 ]; then
  echo "fedsim-entrypoint: FEDSIM_UID = 0; the containers never run as root (use the host user's id)" >&2
  exit 2
fi
case "${FEDSIM_OUT:-}" in
  /fedsim/runs/?*)
    if [ ! -e "$FEDSIM_OUT" ]; then
      mkdir -p "$FEDSIM_OUT"
      chown "$uid:$gid" "$FEDSIM_OUT"
    fi
    ;;
esac
# The workers' shared row cache (a named volume is created root-owned).
if [ -n "${FEDSIM_DATA_CACHE:-}" ] && [ -d "$FEDSIM_DATA_CACHE" ] &&
   [ "$(owner "$FEDSIM_DATA_CACHE")" = 0:0 ]; then
  chown "$uid:$gid" "$FEDSIM_DATA_CACHE"
fi
exec setpriv --reuid="$uid" --regid="$gid" --clear-groups -- "$@"
