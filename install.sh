#!/usr/bin/env bash
# Build docker-microscale and install it as a Docker CLI plugin.
#
#   ./install.sh              install to ${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins, man pages
#                             to ${PREFIX:-$HOME/.local}/share/man/man1
#   ./install.sh --system     install to /usr/local/lib/docker/cli-plugins (for all users),
#                             man pages to /usr/local/share/man/man1
#   ./install.sh --uninstall  remove them (add --system for the system-wide copy)
#
# Safe to run twice: the binary and the man pages are replaced atomically. Prints what it did.
set -euo pipefail

usage() { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; }

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
  mandir=/usr/local/share/man/man1
else
  dir="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"
  mandir="${PREFIX:-$HOME/.local}/share/man/man1"
fi
dest="$dir/docker-microscale"

# The man pages of an installed copy: docker-microscale.1, docker-microscale-COMMAND.1.
installed_pages() {
  local page
  for page in "$mandir"/docker-microscale.1 "$mandir"/docker-microscale-*.1; do
    [ -e "$page" ] && printf '%s\n' "$page"
  done
  return 0
}

if [ "$uninstall" = 1 ]; then
  if [ -e "$dest" ]; then
    rm -f "$dest"
    echo "removed $dest"
  else
    echo "nothing to remove: $dest does not exist"
  fi
  pages=$(installed_pages)
  if [ -n "$pages" ]; then
    while IFS= read -r page; do rm -f "$page"; done <<<"$pages"
    echo "removed the man pages docker-microscale*.1 from $mandir"
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
bin="${CARGO_TARGET_DIR:-$here/target}/release/docker-microscale"

mkdir -p "$dir"
tmp=$(mktemp "$dir/.docker-microscale.XXXXXX")
trap 'rm -f "$tmp"' EXIT
install -m 0755 "$bin" "$tmp"
mv -f "$tmp" "$dest"
trap - EXIT
version=$("$dest" version)
echo "installed $dest ($version)"

# Man pages, generated from the binary's own command definitions; each is written to
# a temporary file and renamed into place. Pages of commands that no longer exist go.
if written=$("$dest" __man "$mandir"); then
  while IFS= read -r page; do
    grep -qxF "$page" <<<"$written" || { rm -f "$page"; echo "removed the stale man page $page"; }
  done < <(installed_pages)
  echo "installed $(wc -l <<<"$written") man pages in $mandir (man docker-microscale)"
  if command -v manpath >/dev/null 2>&1 && ! manpath 2>/dev/null | tr ':' '\n' | grep -qxF "$(dirname "$mandir")"; then
    echo "note: $(dirname "$mandir") is not in your man path; use: MANPATH=\"$(dirname "$mandir"):\$(manpath)\" man docker-microscale"
  fi
else
  echo "install.sh: could not write the man pages to $mandir (the plugin itself is installed)" >&2
  exit 1
fi

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
