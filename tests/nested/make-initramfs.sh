#!/usr/bin/env bash
# Makes the SVM lane's initramfs (an uncompressed newc cpio archive) from
# files on this host; nothing in it is committed. Usage:
#
#   make-initramfs.sh OUT MODULES_DIR TESTS_LIST CONFIG FILE...
#
# OUT          the archive to write
# MODULES_DIR  the KVM modules (*.ko), copied to /lane/modules
# TESTS_LIST   "suite /abs/path/of/test-binary" lines, copied to /lane/tests.list
# CONFIG       shell assignments the guest's /init sources, copied to /lane/config
# FILE...      absolute paths copied to the same path in the archive, with the
#              shared libraries each needs (test binaries embed the absolute
#              paths of vmrun and the test programs, so those must not move);
#              DEST=SOURCE copies host file SOURCE to DEST in the archive
#
# Besides these it holds /init (init beside this script), busybox-static's
# /bin/busybox, and empty mount points.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)

die() {
    echo "make-initramfs: $*" >&2
    exit 1
}

# Copies host file $3 (default: $2) to absolute path $2 under the staging
# root.
stage_file() {
    local root=$1 path=$2 source=${3:-$2}
    [ -f "$source" ] || die "$source is not a file"
    mkdir -p "$root$(dirname "$path")"
    cp -L "$source" "$root$path"
}

# The shared libraries (and the dynamic loader) a program needs: its
# PT_INTERP, and what ldd resolves on this host (glibc programs); nothing
# for a static program. musl's loader is its libc, which ldd cannot list.
shared_libraries() {
    local interp
    interp=$(readelf -lW "$1" 2>/dev/null | sed -n 's/.*Requesting program interpreter: \(.*\)\]/\1/p')
    [ -n "$interp" ] && echo "$interp"
    case "$interp" in *ld-musl*) return 0 ;; esac
    ldd "$1" 2>/dev/null | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^\//) print $i }' |
        while read -r f; do [ -f "$f" ] && echo "$f"; done
    return 0
}

stage_with_libraries() {
    local root=$1 path=${2%%=*} source=${2#*=} lib
    stage_file "$root" "$path" "$source"
    for lib in $(shared_libraries "$source"); do
        [ -e "$root$lib" ] || stage_file "$root" "$lib"
    done
}

stage_lane() {
    local root=$1 modules=$2 tests=$3 config=$4
    mkdir -p "$root"/{bin,proc,sys,dev,tmp,lane/modules}
    cp "$here/init" "$root/init"
    chmod 755 "$root/init"
    cp -L /bin/busybox "$root/bin/busybox"
    cp "$modules"/*.ko "$root/lane/modules/"
    cp "$tests" "$root/lane/tests.list"
    cp "$config" "$root/lane/config"
}

main() {
    [ $# -ge 4 ] || die "usage: make-initramfs.sh OUT MODULES_DIR TESTS_LIST CONFIG FILE..."
    local out=$1 modules=$2 tests=$3 config=$4 path
    shift 4
    [ -x /bin/busybox ] || die "/bin/busybox is missing (apt-get install busybox-static)"
    shared_libraries /bin/busybox | grep -q . && die "/bin/busybox is not static (apt-get install busybox-static)"

    staging=$(mktemp -d)
    trap 'rm -rf "$staging"' EXIT
    stage_lane "$staging" "$modules" "$tests" "$config"
    for path in "$@"; do
        stage_with_libraries "$staging" "$path"
    done
    # Sorted, so that the same inputs make the same archive.
    (cd "$staging" && find . -mindepth 1 | LC_ALL=C sort | busybox cpio -o -H newc -R 0:0 2>/dev/null) >"$out"
}

main "$@"
