#!/usr/bin/env bash
# Build docker-microscale and install it as a Docker CLI plugin.
#
#   ./install.sh              install to ${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins, man pages
#                             to ${PREFIX:-$HOME/.local}/share/man/man1 and man7
#   ./install.sh --system     install to /usr/local/lib/docker/cli-plugins (for all users),
#                             man pages to /usr/local/share/man/man1 and man7
#   ./install.sh --binary PATH  install that docker-microscale binary instead of building one
#   ./install.sh --uninstall  remove them (add --system for the system-wide copy)
#
# Safe to run twice: the binary and the man pages are replaced atomically. Prints what it did.
# The release build takes minutes: on a terminal cargo shows its progress; elsewhere (CI logs)
# a line every 30 seconds says how far it is.
set -euo pipefail

usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; }

system=0
uninstall=0
binary=''
while (($#)); do
  case "$1" in
    --system) system=1 ;;
    --uninstall) uninstall=1 ;;
    --binary) (($# >= 2)) || { echo "install.sh: --binary needs a path" >&2; exit 125; }; binary=$2; shift ;;
    --binary=*) binary=${1#--binary=} ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install.sh: unknown option '$1'" >&2; usage >&2; exit 125 ;;
  esac
  shift
done

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [ "$system" = 1 ]; then
  dir=/usr/local/lib/docker/cli-plugins
  manroot=/usr/local/share/man
else
  dir="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"
  manroot="${PREFIX:-$HOME/.local}/share/man"
fi
mandir="$manroot/man1"
man7dir="$manroot/man7"
dest="$dir/docker-microscale"

# The man pages of an installed copy: docker-microscale.1, docker-microscale-COMMAND.1 and the
# reference, docker-microscale-TOPIC.7.
installed_pages() {
  local page
  for page in "$mandir"/docker-microscale.1 "$mandir"/docker-microscale-*.1 "$man7dir"/docker-microscale-*.7; do
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
    echo "removed the man pages docker-microscale*.1 and docker-microscale-*.7 from $manroot"
  fi
  exit 0
fi

# The release build. On a terminal, cargo's own progress bar; otherwise (a CI log, a pipe) its
# output goes to a log file and a line every 30 s says how many crates are built, so that the
# log is short but shows the build is alive; the log's end is shown if the build fails.
build() {
  local log pid n start elapsed
  if [ -t 2 ]; then
    (cd "$here" && cargo build --release --locked)
    return
  fi
  log=$(mktemp "${TMPDIR:-/tmp}/docker-microscale-build.XXXXXX")
  start=$SECONDS
  (cd "$here" && exec cargo build --release --locked --color never) >"$log" 2>&1 &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    for _ in $(seq 1 30); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 1
    done
    if kill -0 "$pid" 2>/dev/null; then
      n=$(grep -c '^ *Compiling ' "$log" || true)
      elapsed=$((SECONDS - start))
      echo "  still building: $n crates compiled, $((elapsed / 60))m$((elapsed % 60))s so far"
    fi
  done
  if ! wait "$pid"; then
    echo "install.sh: cargo build failed; the end of its output ($log):" >&2
    tail -n 40 "$log" >&2
    return 1
  fi
  elapsed=$((SECONDS - start))
  echo "  built in $((elapsed / 60))m$((elapsed % 60))s ($(grep -c '^ *Compiling ' "$log" || true) crates compiled)"
  rm -f "$log"
}

if [ -n "$binary" ]; then
  [ -f "$binary" ] && [ -x "$binary" ] || { echo "install.sh: --binary $binary is not an executable file" >&2; exit 1; }
  bin=$binary
else
  if ! command -v cargo >/dev/null 2>&1; then
    if [ -x "$HOME/.cargo/bin/cargo" ]; then
      PATH="$HOME/.cargo/bin:$PATH"
    else
      echo "install.sh: cargo not found. Install Rust (https://rustup.rs) and run this again." >&2
      exit 1
    fi
  fi
  echo "building docker-microscale (release; the first build takes minutes)..."
  build
  bin="${CARGO_TARGET_DIR:-$here/target}/release/docker-microscale"
fi

mkdir -p "$dir"
tmp=$(mktemp "$dir/.docker-microscale.XXXXXX")
trap 'rm -f "$tmp"' EXIT
install -m 0755 "$bin" "$tmp"
mv -f "$tmp" "$dest"
trap - EXIT
version=$("$dest" version)
echo "installed $dest ($version)"

# Man pages, generated from the binary's own command definitions (section 1) and from the
# docs it embeds (section 7, the reference); each is written to a temporary file and renamed
# into place. Pages of commands and topics that no longer exist go.
if written=$("$dest" __man "$mandir") && written7=$("$dest" __man --section 7 "$man7dir"); then
  while IFS= read -r page; do
    grep -qxF "$page" <<<"$written"$'\n'"$written7" || { rm -f "$page"; echo "removed the stale man page $page"; }
  done < <(installed_pages)
  echo "installed $(wc -l <<<"$written") man pages in $mandir (man docker-microscale) and the reference, $(wc -l <<<"$written7") pages, in $man7dir (man 7 docker-microscale-rules, ...)"
  if command -v manpath >/dev/null 2>&1 && ! manpath 2>/dev/null | tr ':' '\n' | grep -qxF "$manroot"; then
    echo "note: $manroot is not in your man path; use: MANPATH=\"$manroot:\$(manpath)\" man docker-microscale"
  fi
else
  echo "install.sh: could not write the man pages to $manroot (the plugin itself is installed)" >&2
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
echo "completion: docker's own completion (docker completion bash|zsh|fish) completes 'docker microscale'; for $dest run directly: source <(docker microscale completion bash) (README, Completion)"
