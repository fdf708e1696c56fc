#!/usr/bin/env bash
# Make the pinned Pulumi CLI available to benchctl, without manual steps.
#
# Order of preference:
#   1. a `pulumi` already on PATH whose version is at least the pinned one;
#   2. the official installer, when the internet is reachable;
#   3. a build from the Go module github.com/pulumi/pulumi/pkg/v3 through the Go module proxy.
# The result lives outside the checkout, in $BENCHCTL_CACHE/pulumi/v$VERSION/bin (default
# ~/.cache/benchctl), so a second clone or CI on the same machine reuses it. benchctl looks
# there by itself. Beside the CLI we put `pulumi-resource-pulumi-python`, the plugin the engine
# runs for Python dynamic providers (the local stack uses them).
set -euo pipefail

VERSION="${PULUMI_VERSION:-3.276.0}"
CACHE="${BENCHCTL_CACHE:-$HOME/.cache/benchctl}"
BIN="$CACHE/pulumi/v$VERSION/bin"
mkdir -p "$BIN"

log() { printf 'install-pulumi: %s\n' "$*" >&2; }

version_of() { "$1" version 2>/dev/null | sed -e 's/^v//' -e 's/[-+].*//'; }

# true when $1 >= $2 (dotted versions)
version_ge() { [ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -n1)" = "$2" ]; }

write_dynamic_plugin() {
  # The engine starts this for Python dynamic providers. benchctl sets PULUMI_PYTHON_CMD to the
  # interpreter it runs under, so one cached shim serves every virtualenv.
  cat > "$BIN/pulumi-resource-pulumi-python" <<'SH'
#!/bin/sh
exec "${PULUMI_PYTHON_CMD:-python3}" -u -m pulumi.dynamic "$@"
SH
  chmod 0755 "$BIN/pulumi-resource-pulumi-python"
}

have_cached() { [ -x "$BIN/pulumi" ] && [ "$(version_of "$BIN/pulumi")" = "$VERSION" ]; }

if have_cached; then
  write_dynamic_plugin
  log "cached: $BIN/pulumi ($VERSION)"
  exit 0
fi

# 1. A pulumi on PATH that is recent enough: link it into the cache so benchctl finds it.
if existing="$(command -v pulumi 2>/dev/null)" && [ "$existing" != "$BIN/pulumi" ]; then
  have="$(version_of "$existing" || true)"
  if [ -n "$have" ] && version_ge "$have" "$VERSION"; then
    ln -sf "$existing" "$BIN/pulumi"
    write_dynamic_plugin
    log "using pulumi $have from PATH ($existing)"
    exit 0
  fi
fi

# 2. The official installer, when the internet answers.
if command -v curl >/dev/null 2>&1 &&
   curl -fsS --connect-timeout 5 --max-time 10 -o /dev/null https://get.pulumi.com 2>/dev/null; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  if curl -fsSL https://get.pulumi.com | sh -s -- --version "$VERSION" --install-root "$tmp/root" --no-edit-path; then
    cp "$tmp/root/bin/"* "$BIN/"
    write_dynamic_plugin
    log "installed pulumi $VERSION with the official installer"
    exit 0
  fi
  log "the official installer failed; building from source instead"
fi

# 3. Build from the Go module proxy.
command -v go >/dev/null 2>&1 || { log "no pulumi, no internet installer and no Go toolchain: install Go or Pulumi"; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
export GOFLAGS="-mod=mod"
go mod init benchctl-pulumi-build >/dev/null 2>&1
go mod edit -require="github.com/pulumi/pulumi/pkg/v3@v$VERSION"
# Copy the non-local replace lines of pkg/v3's own go.mod (local ones point into its repo).
modfile="$(go mod download -json "github.com/pulumi/pulumi/pkg/v3@v$VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
grep -E '^replace .* => [^.]' "$modfile" | while read -r _ old _ new newver; do
  go mod edit -replace="$old=$new@$newver"
done
log "building pulumi $VERSION from source (first time only; several minutes)"
go build -trimpath -o "$BIN/pulumi.tmp" \
  -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$VERSION" \
  github.com/pulumi/pulumi/pkg/v3/cmd/pulumi
mv "$BIN/pulumi.tmp" "$BIN/pulumi"
write_dynamic_plugin
log "built $BIN/pulumi ($("$BIN/pulumi" version))"
