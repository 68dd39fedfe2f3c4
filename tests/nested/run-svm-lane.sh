#!/usr/bin/env bash
# The SVM lane: vmrun's integration tests on standard hardware-virtualised
# KVM (AMD SVM), which this project's own machines (kvm_pvm) cannot offer.
# See docs/platforms.md. One command runs it all:
#
#   tests/nested/run-svm-lane.sh
#
# 1. installs qemu-system-x86 and busybox-static if missing, and fetches
#    Debian's linux-image-amd64 (its kernel and four KVM modules, cached
#    under target/svm-lane/kernel/);
# 2. builds vmrun and its integration tests (`cargo test --release --no-run`);
# 3. makes an initramfs of them with make-initramfs.sh;
# 4. boots that kernel in qemu-system-x86_64 -M q35 -accel tcg -cpu max
#    (software emulation of a CPU with SVM; no /dev/kvm needed) where init
#    loads kvm-amd and runs every integration test under the guest's
#    /dev/kvm, printing PASS/FAIL/SKIP lines and "N passed, N failed, N skipped";
# 5. exits 0 only if that summary line arrived and nothing failed.
#
# Settings (environment): SVM_LANE_TIMEOUT (whole boot, seconds, default
# 2400), SVM_LANE_TEST_TIMEOUT (one test, default 600), SVM_LANE_STALL
# (seconds of console silence after which the emulated machine counts as
# stalled, default the test timeout + 120), SVM_LANE_CPU (QEMU -cpu,
# default max), SVM_LANE_WORK (default target/svm-lane), SVM_LANE_SUITES
# (only these test binaries, e.g. "hello io").
#
# A stalled machine: the emulated machine has been seen to stop (rarely)
# with QEMU idle and its clock standing still, so that not even a test's
# own timeout fires and the console stays silent. Every test prints its
# line within its timeout, so a silence longer than that is the machine,
# not a test: the lane stops it and boots once more. A FAIL line from the
# first boot still fails the lane; only a stall is retried, and only once.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
work=${SVM_LANE_WORK:-$root/target/svm-lane}
lane_timeout=${SVM_LANE_TIMEOUT:-2400}
test_timeout=${SVM_LANE_TEST_TIMEOUT:-600}
stall_timeout=${SVM_LANE_STALL:-$((test_timeout + 120))}
cpu=${SVM_LANE_CPU:-max}
smp=${SVM_LANE_SMP:-1}
# Load order follows the modules' depends= fields.
kvm_modules="irqbypass kvm ccp kvm-amd"

say() { echo "svm-lane: $*" >&2; }
die() {
    say "error: $*"
    exit 1
}

# qemu and busybox from Debian, and fresh package lists for the kernel.
install_packages() {
    command -v apt-get >/dev/null || die "needs Debian's apt-get (for linux-image-amd64)"
    say "apt-get update"
    apt-get update -qq || say "warning: apt-get update failed; using the package lists there are"
    if ! command -v qemu-system-x86_64 >/dev/null || [ ! -x /bin/busybox ]; then
        say "installing qemu-system-x86 busybox-static"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            qemu-system-x86 busybox-static >/dev/null ||
            die "cannot install qemu-system-x86 busybox-static (run as root, or install them)"
    fi
}

# The versioned kernel package that linux-image-amd64 currently means.
kernel_package() {
    apt-cache depends linux-image-amd64 2>/dev/null |
        awk '$1 == "Depends:" && $2 ~ /^linux-image-/ { print $2; exit }'
}

# Unpacks vmlinuz and the KVM modules of package $1 into directory $2,
# decompressing modules that the package ships compressed.
unpack_kernel() {
    local package=$1 dir=$2 tmp module
    tmp=$(mktemp -d)
    (cd "$tmp" && apt-get download -q "$package" >/dev/null 2>&1) || die "apt-get download $package failed"
    mkdir -p "$tmp/x"
    dpkg-deb --fsys-tarfile "$tmp"/*.deb | tar -x -C "$tmp/x" --wildcards \
        './boot/vmlinuz-*' '*/irqbypass.ko*' '*/kvm.ko*' '*/ccp.ko*' '*/kvm-amd.ko*'
    mkdir -p "$dir.new"
    cp "$tmp"/x/boot/vmlinuz-* "$dir.new/vmlinuz"
    for module in $kvm_modules; do
        find "$tmp/x" -name "$module.ko*" -exec cp {} "$dir.new/" \;
    done
    for module in "$dir.new"/*.ko.*; do
        case "$module" in
        *.xz) xz -d "$module" ;;
        *.zst) zstd -q -d --rm "$module" ;;
        esac
    done
    rm -rf "$tmp"
    mv "$dir.new" "$dir"
}

# Prints the directory holding vmlinuz and the modules, fetching them once.
fetch_kernel() {
    local package dir
    package=$(kernel_package)
    [ -n "$package" ] || die "apt-cache does not know linux-image-amd64"
    dir=$work/kernel/$package
    if [ ! -f "$dir/vmlinuz" ]; then
        say "fetching $package"
        rm -rf "$dir" "$dir.new"
        unpack_kernel "$package" "$dir"
    fi
    for module in $kvm_modules; do
        [ -f "$dir/$module.ko" ] || die "$package has no $module.ko"
    done
    echo "$dir"
}

# Builds vmrun, the test programs and the integration tests; leaves cargo's
# JSON messages in $work/build.json.
build() {
    say "cargo test --release -p vmm --tests --no-run"
    (cd "$root" && cargo test --release -p vmm --tests --no-run --message-format=json) \
        >"$work/build.json" || die "the build failed"
}

# "suite path" for each integration test binary of the build, sorted by
# suite (cargo reports them in completion order), or only those suites named
# in SVM_LANE_SUITES.
test_binaries() {
    grep '"kind":\["test"\]' "$work/build.json" |
        sed -n 's/.*"target":{[^}]*"name":"\([^"]*\)".*"executable":"\([^"]*\)".*/\1 \2/p' |
        LC_ALL=C sort | awk -v only="${SVM_LANE_SUITES:-}" 'only == "" || index(" " only " ", " " $1 " ")'
}

# The vmrun binary the integration tests run (their CARGO_BIN_EXE_vmrun).
vmrun_binary() {
    # (Not the unit-test harness of main.rs, which cargo keeps in deps/.)
    grep '"kind":\["bin"\]' "$work/build.json" |
        sed -n 's/.*"name":"vmrun".*"executable":"\([^"]*\)".*/\1/p' | grep -v '/deps/' | head -n 1
}

# The test programs, where the vmrun-images crate built them.
image_files() {
    local dir
    dir=$(grep '"reason":"build-script-executed"' "$work/build.json" | grep '#vmrun-images@' |
        sed -n 's/.*"out_dir":"\([^"]*\)".*/\1/p' | tail -n 1)
    [ -d "$dir" ] || die "cannot find vmrun-images' output directory"
    find "$dir" -maxdepth 1 -type f -perm -u+x | LC_ALL=C sort
}

# Host programs the suite runs or expects (each test skips if one is absent):
# /bin/true (a dynamic program vmrun must refuse), Debian's static ldconfig,
# and util-linux's unshare and setpriv for tests/host_check.rs.
host_programs() {
    local program
    for program in /bin/true /sbin/ldconfig /usr/bin/unshare /usr/bin/setpriv; do
        [ -f "$program" ] && echo "$program"
    done
    return 0
}

# tests/gdb.rs drives /usr/bin/gdb. The host's gdb needs Python's library
# tree and data files, so the lane carries Debian's gdb-minimal instead (the
# same gdb built without Python: one binary), fetched once and cached under
# $work/gdb/. Prints "/usr/bin/gdb=PATH" for make-initramfs.sh, or nothing
# (tests/gdb.rs then prints SKIPPED) when it cannot be fetched or a library
# it needs is missing on this host.
gdb_program() {
    local dir=$work/gdb tmp
    if [ ! -x "$dir/usr/bin/gdb" ]; then
        tmp=$(mktemp -d)
        if (cd "$tmp" && apt-get download -q gdb-minimal >/dev/null 2>&1); then
            mkdir -p "$dir"
            dpkg-deb --fsys-tarfile "$tmp"/*.deb | tar -x -C "$dir" ./usr/bin/gdb
        fi
        rm -rf "$tmp"
    fi
    if [ ! -x "$dir/usr/bin/gdb" ]; then
        say "warning: cannot fetch gdb-minimal; tests/gdb.rs will be skipped"
    elif ldd "$dir/usr/bin/gdb" | grep -q 'not found'; then
        say "warning: gdb-minimal lacks libraries on this host; tests/gdb.rs will be skipped"
    else
        echo "/usr/bin/gdb=$dir/usr/bin/gdb"
        # glibc's iconv modules for gdb's host-to-UTF-32 conversion of
        # names it looks up (without them: "could not convert 'main'").
        local gconv=/usr/lib/x86_64-linux-gnu/gconv file
        for file in "$gconv/gconv-modules" "$gconv/gconv-modules.cache" "$gconv/UTF-32.so" "$gconv/UTF-16.so"; do
            [ -f "$file" ] && echo "$file"
        done
    fi
    return 0
}

write_config() {
    cat >"$work/config" <<EOF
VMRUN=$1
HELLO_RAW=$(image_files | grep '/hello_raw$')
KVM_MODULES="$kvm_modules"
TEST_TIMEOUT=$test_timeout
export VMRUN_TEST_TIMEOUT=$test_timeout
EOF
}

make_initramfs() {
    local kernel=$1 vmrun
    vmrun=$(vmrun_binary)
    [ -x "$vmrun" ] || die "cannot find the vmrun binary in the build output"
    test_binaries >"$work/tests.list"
    [ -s "$work/tests.list" ] || die "found no integration test binaries in the build output"
    write_config "$vmrun"
    # shellcheck disable=SC2046 # one path per word is intended
    "$here/make-initramfs.sh" "$work/initramfs.cpio" "$kernel" "$work/tests.list" "$work/config" \
        "$vmrun" $(awk '{ print $2 }' "$work/tests.list") $(image_files) $(host_programs) $(gdb_program)
    say "initramfs: $(du -h "$work/initramfs.cpio" | cut -f1)"
}

# Boots the lane with a hard timeout; the serial console goes to the
# terminal and to $work/console.log (without carriage returns). Returns 2
# if the machine stalled (see the top) and was stopped.
boot() {
    local kernel=$1 pid age
    say "booting $(basename "$kernel") in qemu-system-x86_64 -accel tcg -cpu $cpu (timeout ${lane_timeout}s)"
    rm -f "$work/qemu.pid"
    : >"$work/console.log"
    # mitigations=off: speculation hardening only slows TCG down; it changes
    # nothing about how KVM and SVM behave.
    {
        timeout -k 10 "$lane_timeout" qemu-system-x86_64 \
            -M q35 -accel tcg -cpu "$cpu" -smp "$smp" -m 2G \
            -display none -monitor none -serial stdio -no-reboot \
            -pidfile "$work/qemu.pid" \
            -kernel "$kernel/vmlinuz" -initrd "$work/initramfs.cpio" \
            -append "console=ttyS0 panic=-1 loglevel=4 mitigations=off" </dev/null |
            stdbuf -o0 tr -d '\r' | tee "$work/console.log" || true
    } &
    pid=$!
    while kill -0 "$pid" 2>/dev/null; do
        sleep 5
        age=$(($(date +%s) - $(stat -c %Y "$work/console.log")))
        if [ "$age" -gt "$stall_timeout" ] && [ -s "$work/qemu.pid" ]; then
            say "the console has been silent for ${age} s, longer than any test's own timeout: the emulated machine stalled; stopping it"
            kill "$(cat "$work/qemu.pid")" 2>/dev/null || true
            wait "$pid" || true
            return 2
        fi
    done
    wait "$pid" || true
    return 0
}

# Exits non-zero unless the guest's summary line arrived and nothing failed;
# repeats the failures and ends with the summary line.
judge() {
    local summary failed passed skipped
    summary=$(grep -a -E '^[0-9]+ passed, [0-9]+ failed' "$work/console.log" | tail -n 1 || true)
    [ -n "$summary" ] || die "the lane did not finish (timeout, crash or kernel panic): see $work/console.log"
    passed=$(echo "$summary" | sed 's/ passed.*//')
    failed=$(echo "$summary" | sed 's/.* passed, \([0-9]*\) failed.*/\1/')
    if [ "$failed" -ne 0 ]; then
        say "failures:"
        grep -a '^FAIL ' "$work/console.log" >&2 || true
    fi
    skipped=$(echo "$summary" | sed -n 's/.* failed, \([0-9]*\) skipped.*/\1/p')
    if [ "${skipped:-0}" -ne 0 ]; then
        say "skipped (these tests did not run):"
        grep -a '^SKIP ' "$work/console.log" >&2 || true
    fi
    say "$summary"
    [ "$failed" -eq 0 ] || exit 1
    [ "$passed" -gt 0 ] || die "nothing passed"
}

main() {
    local start kernel
    start=$(date +%s)
    mkdir -p "$work"
    install_packages
    kernel=$(fetch_kernel)
    build
    make_initramfs "$kernel"
    if ! boot "$kernel"; then
        cp "$work/console.log" "$work/console-stalled.log"
        if grep -a -q '^FAIL ' "$work/console-stalled.log"; then
            grep -a '^FAIL ' "$work/console-stalled.log" >&2
            die "tests failed before the emulated machine stalled: see $work/console-stalled.log"
        fi
        say "booting once more (the stalled boot's console is in $work/console-stalled.log)"
        boot "$kernel" || say "the second boot stalled too"
    fi
    say "lane finished in $(($(date +%s) - start)) s"
    judge
}

main "$@"
