#!/usr/bin/env bash
# Build docker-microscale and install it as a Docker CLI plugin.
#
#   ./install.sh              install to ${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins
#   ./install.sh --system     install to /usr/local/lib/docker/cli-plugins (for all users)
#   ./install.sh --uninstall  remove it (add --system for the system-wide copy)
#
# Safe to run twice: the binary is replaced atomically. Prints what it did.
set -euo pipefail

usage() { sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; }

system=0
uninstall=0
for arg in "$@"; do
  case "$arg" in
    --system) system=1 ;;
    --uninstall) uninstall=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install.sh: unknown option '$arg'" >&2; usage >&2; exit 125 ;;
  esac
done

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [ "$system" = 1 ]; then
  dir=/usr/local/lib/docker/cli-plugins
else
  dir="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"
fi
dest="$dir/docker-microscale"

if [ "$uninstall" = 1 ]; then
  if [ -e "$dest" ]; then
    rm -f "$dest"
    echo "removed $dest"
  else
    echo "nothing to remove: $dest does not exist"
  fi
  exit 0
fi

if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "install.sh: cargo not found. Install Rust (https://rustup.rs) and run this again." >&2
    exit 1
  fi
fi

echo "building docker-microscale (release)..."
(cd "$here" && cargo build --release --locked --quiet)
bin="$here/target/release/docker-microscale"

mkdir -p "$dir"
tmp=$(mktemp "$dir/.docker-microscale.XXXXXX")
trap 'rm -f "$tmp"' EXIT
install -m 0755 "$bin" "$tmp"
mv -f "$tmp" "$dest"
trap - EXIT
version=$("$dest" version)
echo "installed $dest ($version)"

# Check that the docker CLI finds the plugin and that it answers.
if command -v docker >/dev/null 2>&1; then
  if [ "$system" = 1 ] && [ -z "${DOCKER_CONFIG:-}" ] && [ -e "$HOME/.docker/cli-plugins/docker-microscale" ]; then
    echo "note: $HOME/.docker/cli-plugins/docker-microscale exists and takes precedence over $dest"
  fi
  if answer=$(docker microscale version 2>&1); then
    echo "docker microscale version: $answer"
  else
    echo "install.sh: the docker CLI did not run the plugin:" >&2
    echo "$answer" >&2
    exit 1
  fi
else
  echo "note: the docker CLI is not on PATH; run the plugin directly as $dest"
fi
