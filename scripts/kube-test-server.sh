#!/usr/bin/env bash
# Builds the real Kubernetes API server used by the integration tests
# (tests/support/kube_server.rs) and caches it outside the repository.
#
#   scripts/kube-test-server.sh build   obtain + build once; instant when already cached
#   scripts/kube-test-server.sh path    print the bin dir (what TRIVY_DIGEST_KUBE_BIN expects)
#   scripts/kube-test-server.sh check   run both binaries (--version / --help); non-zero if broken
#   scripts/kube-test-server.sh clean   remove the cache dir
#
# What it builds (no registry has a kube-apiserver binary):
#   - apiextensions-apiserver: the standalone CRD / custom-resource server of Kubernetes
#     (same storage, watch cache and etcd3 code as kube-apiserver, but no core APIs),
#     built from Debian sid's golang-k8s-apiextensions-apiserver-dev source package in
#     GOPATH mode with sid's own Go toolchain, fully offline (GOPROXY=off);
#   - etcd: sid's etcd-server (3.5.x; bookworm's 3.4 cannot serve watch-list requests).
#
# Nothing is installed into the system: apt runs with a private sources list, state and
# cache (only `apt-get update` on that private state and `apt-get download`), the debs are
# unpacked with `dpkg-deb -x` into a private root, and everything lives in the cache dir:
#
#   ${TRIVY_DIGEST_KUBE_CACHE:-$HOME/.cache/trivy-digest/kube-test-server}
#     bin/apiextensions-apiserver, bin/etcd   the result (about 100 MB)
#     VERSION                                 versions of every package the build used
#     work/                                   scratch during a build (debs 0.3 GB, unpacked
#                                             root 2.3 GB, Go build cache 1.4 GB; 5.1 GB at
#                                             peak), deleted after a successful build
#
# The Go build cache is deleted too: a rebuild only happens when bin/ is missing (or with
# --force), and on CI every machine starts cold, so 1.4 GB kept for it would rarely pay.
# Times seen on 2 cores: 2.5 to 3.5 minutes cold (go build is most of it); cached: ~10 ms.
#
# The Debian mirror is the one the machine's own apt sources use for Debian itself.
# Debian sid keeps only its current versions: if a new upload breaks the build, this
# script fails loudly (naming the step); it never reports success without both binaries.
set -Eeuo pipefail

readonly SELF=${0##*/}
CACHE=${TRIVY_DIGEST_KUBE_CACHE:-${HOME:?HOME is not set}/.cache/trivy-digest/kube-test-server}
readonly CACHE
readonly BIN="$CACHE/bin"
readonly WORK="$CACHE/work"
readonly SOURCE_PKG=golang-k8s-apiextensions-apiserver-dev
readonly ETCD_PKG=etcd-server
readonly SUITE=sid
# Peak disk use of a build (unpacked root + Go build cache + temp files: 5.1 GB seen).
readonly NEED_FREE_MB=6000

STEP="start"

die() {
    echo "$SELF: ERROR (step: $STEP): $*" >&2
    exit 1
}

# During a build: ERR names the failing command, EXIT names the step and the scratch dir.
# shellcheck disable=SC2317 # invoked by trap
on_error() {
    echo "$SELF: command failed (exit code $?, line ${BASH_LINENO[0]}): $BASH_COMMAND" >&2
}

# shellcheck disable=SC2317 # invoked by trap
on_exit() {
    local rc=$?
    if [[ $rc -ne 0 ]]; then
        echo "" >&2
        if is_built; then
            echo "$SELF: FAILED at step '$STEP' (exit code $rc), after the binaries were installed." >&2
        else
            echo "$SELF: BUILD FAILED at step '$STEP' (exit code $rc); no binaries were installed." >&2
        fi
        if [[ -d "$WORK" ]]; then
            echo "$SELF: the scratch dir $WORK is kept for inspection; 'build' starts it afresh." >&2
        fi
    fi
}

step() {
    STEP=$1
    echo "== [$SECONDS s] $STEP"
}

is_built() {
    [[ -x "$BIN/apiextensions-apiserver" && -x "$BIN/etcd" && -s "$CACHE/VERSION" ]]
}

# Prints "URI SIGNED_BY" of the machine's apt source for Debian itself (not
# debian-security, not a third-party repository). SIGNED_BY may be "-" (none given).
# Reads the one-line format (*.list) and the deb822 format (*.sources).
debian_source() {
    local sourcelist sourceparts SL SP
    eval "$(apt-config shell SL Dir::Etc::sourcelist/f SP Dir::Etc::sourceparts/d)"
    sourcelist=${SL:-/etc/apt/sources.list}
    sourceparts=${SP:-/etc/apt/sources.list.d/}
    local files=()
    [[ -f "$sourcelist" ]] && files+=("$sourcelist")
    local f
    for f in "$sourceparts"*.list "$sourceparts"*.sources; do
        [[ -f "$f" ]] && files+=("$f")
    done
    [[ ${#files[@]} -gt 0 ]] || return 0
    # Emits one "URI SUITE SIGNED_BY" line per (deb source, suite); the first whose suite
    # is a Debian release (optionally -updates/-backports) and whose URI is not a
    # security archive wins.
    awk '
        function flush() {
            if (types ~ /(^|[ \t])deb([ \t]|$)/ && enabled !~ /^[ \t]*(no|false)/) {
                n = split(uris, u, /[ \t]+/); m = split(suites, s, /[ \t]+/)
                for (i = 1; i <= n; i++) for (j = 1; j <= m; j++)
                    if (u[i] != "" && s[j] != "") print u[i], s[j], (signed == "" ? "-" : signed)
            }
            types = uris = suites = signed = enabled = ""
        }
        FILENAME ~ /\.sources$/ {
            if (FILENAME != last) { flush(); last = FILENAME }
            if ($0 ~ /^[ \t]*$/) { flush(); next }
            if ($0 ~ /^#/) next
            if ($0 ~ /^[ \t]/) next              # continuation (e.g. an inline key block)
            key = tolower($1); sub(/:$/, "", key)
            val = $0; sub(/^[^:]*:[ \t]*/, "", val)
            if (key == "types") types = val
            else if (key == "uris") uris = val
            else if (key == "suites") suites = val
            else if (key == "enabled") enabled = tolower(val)
            else if (key == "signed-by" && val ~ /^\//) signed = val
            next
        }
        {
            if (FILENAME != last) { flush(); last = FILENAME }
            line = $0; sub(/#.*/, "", line)
            if (line !~ /^[ \t]*deb[ \t]/) next
            opts = ""; sb = "-"
            if (match(line, /\[[^]]*\]/)) {
                opts = substr(line, RSTART + 1, RLENGTH - 2)
                line = substr(line, 1, RSTART - 1) " " substr(line, RSTART + RLENGTH)
                if (match(opts, /signed-by=[^ \t]+/)) sb = substr(opts, RSTART + 10, RLENGTH - 10)
            }
            split(line, w, /[ \t]+/)
            k = (w[1] == "" ? 2 : 1)
            print w[k + 1], w[k + 2], sb
        }
        END { flush() }
    ' "${files[@]}" |
        awk '
            $1 ~ /security/ { next }
            {
                base = $2; sub(/-(updates|backports|proposed-updates)$/, "", base)
                if (base ~ /^(buster|bullseye|bookworm|trixie|forky|duke|sid|stable|oldstable|testing|unstable)$/) {
                    print $1, $3; exit
                }
            }
        '
}

# apt-get / apt-cache with a private sources list, state and cache. The machine's apt.conf.d
# (proxies and such) still applies. The dpkg status is an empty file, so what the machine
# has installed plays no part in dependency resolution.
apt_private() {
    local tool=$1
    shift
    local apt="$WORK/apt"
    local opts=(
        -o "Dir::Etc::sourcelist=$apt/sources.list"
        -o "Dir::Etc::sourceparts=$apt/sources.list.d"
        -o "Dir::Etc::preferences=$apt/preferences"
        -o "Dir::Etc::preferencesparts=$apt/preferences.d"
        -o "Dir::State=$apt/state"
        -o "Dir::State::lists=$apt/state/lists"
        -o "Dir::State::status=$apt/state/status"
        -o "Dir::Cache=$apt/cache"
        -o "Dir::Cache::archives=$apt/cache/archives"
        -o "APT::Architectures=$(dpkg --print-architecture)"
        -o "Acquire::Languages=none"
        -o "Acquire::Retries=3"
    )
    # As root, apt would drop to the _apt user, which cannot write into $HOME.
    if [[ $(id -u) -eq 0 ]]; then
        opts+=(-o "APT::Sandbox::User=root")
    fi
    "$tool" "${opts[@]}" "$@"
}

cmd_build() {
    local force=0
    if [[ ${1:-} == "--force" ]]; then
        force=1
    elif [[ -n ${1:-} ]]; then
        die "unknown option for build: $1 (only --force)"
    fi

    STEP="preflight"
    local tool
    for tool in apt-get apt-cache apt-config dpkg dpkg-deb awk flock xargs df du; do
        command -v "$tool" >/dev/null || die "'$tool' is not on PATH (a Debian machine is needed)"
    done
    mkdir -p "$CACHE" || die "cannot create the cache dir $CACHE"
    # One build at a time per cache dir (e.g. two test runs started together).
    exec 9>"$CACHE/.lock"
    if ! flock -n 9; then
        echo "$SELF: another build holds $CACHE/.lock; waiting for it"
        flock 9
    fi

    if [[ $force -eq 0 ]] && is_built; then
        echo "$SELF: cached in $BIN (built from: $(head -n 3 "$CACHE/VERSION" | tr '\n' ' '))"
        return 0
    fi

    trap on_error ERR
    trap on_exit EXIT

    step "preflight"
    rm -rf "$WORK"
    mkdir -p "$WORK"
    local free_mb
    free_mb=$(df -Pm "$WORK" | awk 'NR == 2 { print $4 }')
    if [[ $free_mb -lt $NEED_FREE_MB ]]; then
        die "only ${free_mb} MB free under $CACHE; the build needs about ${NEED_FREE_MB} MB" \
            "(set TRIVY_DIGEST_KUBE_CACHE to a roomier place)"
    fi

    step "find the Debian mirror in the machine's apt sources"
    local source mirror signed_by
    source=$(debian_source)
    if [[ -z "$source" ]]; then
        local SL SP
        eval "$(apt-config shell SL Dir::Etc::sourcelist/f SP Dir::Etc::sourceparts/d)"
        die "no Debian archive (a 'deb' source for a Debian suite, not the security one)" \
            "in the machine's apt sources: ${SL:-?} and ${SP:-?}*.list / *.sources"
    fi
    read -r mirror signed_by <<<"$source"
    if [[ $signed_by == "-" && -f /usr/share/keyrings/debian-archive-keyring.gpg ]]; then
        signed_by=/usr/share/keyrings/debian-archive-keyring.gpg
    fi
    echo "mirror: $mirror (keyring: $signed_by)"

    step "apt-get update ($SUITE, private state)"
    local apt="$WORK/apt"
    mkdir -p "$apt/sources.list.d" "$apt/preferences.d" "$apt/state/lists/partial" \
        "$apt/cache/archives/partial"
    : >"$apt/state/status"
    local sb_opt=""
    [[ $signed_by != "-" ]] && sb_opt="signed-by=$signed_by "
    # Packages indexes only (no DEP-11/Contents/translations).
    echo "deb [${sb_opt}target=Packages] $mirror $SUITE main" >"$apt/sources.list"
    apt_private apt-get -q update >"$WORK/apt-update.log" 2>&1 || {
        cat "$WORK/apt-update.log" >&2
        die "apt-get update of $SUITE from $mirror failed (output above)"
    }
    # apt-get update reports some fetch failures only as warnings.
    if grep -E '^(W|E):' "$WORK/apt-update.log" >&2; then
        die "apt-get update of $SUITE from $mirror reported problems (above)"
    fi
    grep -q '^Origin: Debian$' "$apt/state/lists/"*_InRelease ||
        die "the $SUITE Release file from $mirror does not say 'Origin: Debian'"

    step "resolve packages"
    # The Go toolchain that sid's default golang-go points to (golang-1.NN-go).
    local go_pkg src_pkg
    go_pkg=$(apt_private apt-cache depends golang-go |
        awk '$1 == "Depends:" && $2 ~ /^golang-1\.[0-9]+-go$/ { print $2; exit }')
    [[ -n "$go_pkg" ]] || die "cannot tell which golang-1.NN-go sid's golang-go depends on"
    src_pkg=${go_pkg%-go}-src
    # Every Go source package the server's source depends on, recursively.
    local deps
    deps=$(apt_private apt-cache depends --recurse --no-recommends --no-suggests \
        --no-conflicts --no-breaks --no-replaces --no-enhances "$SOURCE_PKG")
    local pkgs=()
    mapfile -t pkgs < <(grep -E '^golang-.*-dev$' <<<"$deps" | sort -u)
    [[ ${#pkgs[@]} -gt 10 ]] ||
        die "'apt-cache depends --recurse $SOURCE_PKG' found only ${#pkgs[@]} Go packages"
    [[ " ${pkgs[*]} " == *" $SOURCE_PKG "* ]] || die "$SOURCE_PKG is not in $SUITE"
    pkgs+=("$go_pkg" "$src_pkg" "$ETCD_PKG")
    echo "${#pkgs[@]} packages (Go toolchain: $go_pkg)"

    step "apt-get download (${#pkgs[@]} debs)"
    mkdir -p "$WORK/debs"
    (cd "$WORK/debs" && apt_private apt-get -qq download "${pkgs[@]}") ||
        die "apt-get download failed (see the apt messages above)"
    local n_debs
    n_debs=$(find "$WORK/debs" -name '*.deb' | wc -l)
    [[ $n_debs -eq ${#pkgs[@]} ]] || die "expected ${#pkgs[@]} debs, got $n_debs"
    du -sh "$WORK/debs" | awk '{ print "downloaded " $1 }'

    step "dpkg-deb -x into a private root"
    local root="$WORK/root"
    mkdir -p "$root"
    # Record every package version (the VERSION stamp), then unpack two at a time.
    local deb
    for deb in "$WORK"/debs/*.deb; do
        # shellcheck disable=SC2016 # dpkg-deb expands ${Package}, not the shell
        dpkg-deb --show --showformat='${Package} ${Version}\n' "$deb"
    done | sort >"$WORK/packages.txt"
    # shellcheck disable=SC2016 # the inner sh expands $d and $0
    find "$WORK/debs" -name '*.deb' -print0 |
        xargs -0 -n 8 -P "$(nproc)" sh -c 'for d; do dpkg-deb -x "$d" "$0" || exit 255; done' "$root" ||
        die "dpkg-deb -x failed"
    rm -rf "$WORK/debs"
    du -sh "$root" | awk '{ print "unpacked " $1 }'

    step "go build apiextensions-apiserver"
    local go_version=${go_pkg#golang-}
    go_version=${go_version%-go}
    local goroot="$root/usr/lib/go-$go_version"
    [[ -x "$goroot/bin/go" ]] || die "no go binary at $goroot/bin/go"
    # Debian links GOROOT/src to /usr/share/go-1.NN/src. The links are relative today;
    # should one become absolute it would point into the system, not the private root.
    local part
    for part in src pkg/include test; do
        local link="$goroot/$part"
        if [[ -L "$link" && $(readlink "$link") == /* ]]; then
            ln -sfn "$root$(readlink "$link")" "$link"
        fi
    done
    local gopath="$root/usr/share/gocode"
    local pkgdir="$gopath/src/k8s.io/apiextensions-apiserver"
    [[ -f "$pkgdir/main.go" ]] || die "$pkgdir/main.go is missing: $SOURCE_PKG no longer ships main.go"
    mkdir -p "$WORK/out" "$WORK/gotmp"
    # (errexit does not apply inside a subshell tested by ||, hence the && chain.)
    (
        export PATH="$goroot/bin:$PATH" GOROOT="$goroot" GOPATH="$gopath" GO111MODULE=off \
            GOPROXY=off GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS='' GOENV=off GOTELEMETRY=off \
            GOCACHE="$WORK/gocache" GOTMPDIR="$WORK/gotmp" &&
            cd "$pkgdir" &&
            go version &&
            go build -trimpath -ldflags '-s -w' -o "$WORK/out/apiextensions-apiserver" .
    ) || die "go build failed (compiler output above). Debian sid may be mid-transition" \
        "(one golang-k8s-* package bumped before the others); see VERSION in a previous cache" \
        "or $WORK/packages.txt for the versions used now."

    step "install into $BIN"
    [[ -x "$root/usr/bin/etcd" ]] || die "$ETCD_PKG has no usr/bin/etcd"
    cp "$root/usr/bin/etcd" "$WORK/out/etcd"
    "$WORK/out/etcd" --version >/dev/null || die "the unpacked etcd does not run on this machine"
    "$WORK/out/apiextensions-apiserver" --help >/dev/null ||
        die "the built apiextensions-apiserver does not run"
    {
        for p in "$SOURCE_PKG" "$ETCD_PKG" "$go_pkg"; do
            grep "^$p " "$WORK/packages.txt" || die "no version recorded for $p"
        done
        echo "# mirror: $mirror $SUITE; built $(date -u +%Y-%m-%dT%H:%M:%SZ) in ${SECONDS}s"
        echo "# all packages used:"
        cat "$WORK/packages.txt"
    } >"$WORK/out/VERSION"
    rm -rf "$BIN" "$CACHE/VERSION"
    mkdir -p "$BIN"
    mv "$WORK/out/apiextensions-apiserver" "$WORK/out/etcd" "$BIN/"
    mv "$WORK/out/VERSION" "$CACHE/VERSION" # written last: its presence marks a finished build

    step "clean up the scratch dir"
    rm -rf "$WORK"
    du -sh "$CACHE" | awk '{ print "cache size: " $1 }'
    echo "$SELF: built in ${SECONDS}s:"
    head -n 3 "$CACHE/VERSION"
}

cmd_check() {
    STEP="check"
    is_built || die "not built in $BIN; run: scripts/kube-test-server.sh build"
    local out
    out=$("$BIN/etcd" --version 2>&1) || die "'$BIN/etcd --version' failed: $out"
    echo "etcd: $(head -n 1 <<<"$out")"
    out=$("$BIN/apiextensions-apiserver" --help 2>&1) ||
        die "'$BIN/apiextensions-apiserver --help' failed: $(tail -n 20 <<<"$out")"
    grep -q -- '--etcd-servers' <<<"$out" ||
        die "'$BIN/apiextensions-apiserver --help' does not mention --etcd-servers"
    echo "apiextensions-apiserver: runs ($(grep -m1 '^golang-k8s-apiextensions' "$CACHE/VERSION"))"
}

main() {
    local cmd=${1:-}
    [[ $# -gt 0 ]] && shift
    case "$cmd" in
    build) cmd_build "$@" ;;
    path) echo "$BIN" ;;
    check) cmd_check ;;
    clean) rm -rf "$CACHE" ;;
    *)
        echo "usage: $SELF build [--force] | path | check | clean" >&2
        echo "  cache dir: $CACHE (TRIVY_DIGEST_KUBE_CACHE)" >&2
        exit 2
        ;;
    esac
}

# On one line: bash reads a script as it runs, so nothing after main may be read later.
main "$@"; exit
