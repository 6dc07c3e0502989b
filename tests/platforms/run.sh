#!/bin/bash
# shmprov on another architecture, in a real guest under full-system
# emulation (QEMU TCG, no KVM): ppc64el, whose Debian kernel has 64 KiB
# pages, or s390x, big-endian. As root (apt-get, dpkg --add-architecture).
#   1. cross-builds shmprov with Debian 12's own cross compiler and the
#      target's multiarch libraries (cmake/ARCH.cmake), hardened as the
#      normal build is (tests/static/hardening.sh checks it), and the test
#      helper tests/helpers/shm_helper.c;
#   2. boots Debian's own kernel for ARCH (the package linux-image-FLAVOUR
#      depends on, fetched with apt-get download) with a small initramfs:
#      busybox-static, shmprov and its libraries, tests/platforms/guest.sh
#      as the init's work; no systemd, -m 1024;
#   3. runs guest.sh natively on this host too, in a private namespace
#      (native.sh), as the reference for the report's fields;
#   4. tests/platforms/check.py reads the guest's serial console and checks
#      the page size, plan against the README's sizing table, apply, verify,
#      /proc/sys/kernel/shm*, the probe, status, and the spooled report.
# Downloads (.debs) are cached in $SHMPROV_CI_CACHE/platforms (default
# /var/cache/shmprov-ci, as tests/packaging/*.sh do); only the current
# version of each package is kept.
#
# Usage: tests/platforms/run.sh ppc64el|s390x
# Env:   SHMPROV_NATIVE  the x86-64 shmprov for the reference (default
#                        build/shmprov; built there when missing)
#        KEEP=1          keep the work directory
# Ends with "N passed, N failed"; exits non-zero on any failure, including a
# guest that does not boot (never a skip).
set -euo pipefail

arch=${1:-}
case $arch in
ppc64el) triple=powerpc64le-linux-gnu flavour=powerpc64le page=65536
    # TCG has none of the speculation mitigations pseries asks of KVM.
    qemu=(qemu-system-ppc64 -M "pseries,cap-cfpc=broken,cap-sbbc=broken,cap-ibs=broken,cap-ccf-assist=off" -append "console=hvc0 loglevel=1") ;;
s390x) triple=s390x-linux-gnu flavour=s390x page=4096
    qemu=(qemu-system-s390x -M s390-ccw-virtio -append "console=ttysclp0 loglevel=1") ;;
*) echo "usage: $0 ppc64el|s390x" >&2; exit 2 ;;
esac
if [ "$(id -u)" -ne 0 ]; then
    echo "run.sh: must run as root (apt-get, dpkg --add-architecture, namespaces)" >&2
    exit 2
fi
SRC=$(cd "$(dirname "$0")/../.." && pwd)
CACHE=${SHMPROV_CI_CACHE:-/var/cache/shmprov-ci}/platforms
WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/shmprov-$arch.XXXXXX")
export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8
say() { echo "== $arch: $*"; }
# The machine is left as it was found: the packages of $arch this run
# installs are purged, and the architecture removed again when this run
# added it. A foreign architecture left enabled would make every later
# `apt-get update` on the machine depend on that architecture's indexes.
arch_packages() {
    dpkg-query -W -f='${db:Status-Abbrev} ${binary:Package}\n' | awk -v a=":$arch" '$1 ~ /^.i/ && substr($2, length($2) - length(a) + 1) == a { print $2 }' | sort
}
arch_added=0
packages_before=$(arch_packages)
restore_machine() {
    local added
    added=$(comm -13 <(echo "$packages_before") <(arch_packages))
    if [ -n "$added" ]; then
        # shellcheck disable=SC2086 # one package per word
        # Only this architecture's copies: its libc6 counts as essential to apt.
        apt-get -o DPkg::Lock::Timeout=600 -y -qq --allow-remove-essential purge $added >/dev/null 2>&1 ||
            echo "warning: could not purge the $arch packages this run installed: $added" >&2
    fi
    if [ "$arch_added" = 1 ] && ! dpkg --remove-architecture "$arch"; then
        echo "warning: dpkg --remove-architecture $arch failed; later apt-get updates read its indexes" >&2
    fi
}
cleanup() {
    restore_machine
    if [ "${KEEP:-0}" = 1 ]; then echo "work directory kept: $WORK"; else rm -rf --one-file-system "$WORK"; fi
}
trap cleanup EXIT

# --- tools and the target's libraries --------------------------------------
apt=(apt-get -o DPkg::Lock::Timeout=600 -y -qq --no-install-recommends)
need=(cmake pkg-config cpio gzip file binutils python3 python3-jsonschema qemu-system-ppc qemu-system-misc
    "gcc-$triple" "libc6-dev-$arch-cross" "libyaml-dev:$arch" "libjson-c-dev:$arch" "libmd-dev:$arch")
missing=()
for p in "${need[@]}"; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed' || missing+=("$p")
done
# (grep reads the whole list: with -q it could stop dpkg with SIGPIPE.)
if ! dpkg --print-foreign-architectures | grep -x "$arch" >/dev/null; then
    say "dpkg --add-architecture $arch"
    dpkg --add-architecture "$arch"
    arch_added=1
fi
if [ "${#missing[@]}" -gt 0 ]; then
    say "installing ${missing[*]}"
    # A foreign index caught mid-sync must not stop the run: apt-get
    # install below fails by itself if what it needs is not there.
    "${apt[@]}" update || echo "warning: apt-get update reported errors (above); going on"
    "${apt[@]}" install "${missing[@]}" >/dev/null
fi

# fetch PACKAGE:ARCH: its .deb in $CACHE (downloaded when a newer version is
# there, older ones dropped); prints the path.
fetch() {
    local name=${1%%:*} version file
    version=$(apt-cache policy "$1" | sed -n 's/^  Candidate: //p')
    if [ -z "$version" ] || [ "$version" = "(none)" ]; then
        echo "run.sh: apt-cache has no candidate for $1" >&2
        return 1
    fi
    file=$CACHE/${name}_${version//:/%3a}_$arch.deb
    if [ ! -s "$file" ]; then
        rm -f "$CACHE/${name}_"*"_$arch.deb"
        (cd "$CACHE" && apt-get download -q "$1=$version" >/dev/null 2>&1) || { echo "apt-get download $1 failed" >&2; return 1; }
    fi
    echo "$file"
}
mkdir -p "$CACHE"
# The metapackage names the running kernel's package: resolve it.
kpkg=$(apt-cache depends "linux-image-$flavour:$arch" | sed -n 's/^  Depends: \(linux-image-[^:]*\).*/\1/p' | head -n 1)
[ -n "$kpkg" ] || { echo "run.sh: cannot resolve linux-image-$flavour:$arch" >&2; exit 1; }
kdeb=$(fetch "$kpkg:$arch")
bdeb=$(fetch "busybox-static:$arch")
cdeb=$(fetch "libcurl4-openssl-dev:$arch")
say "kernel $(basename "$kdeb"), $(basename "$bdeb")"

# --- cross build ------------------------------------------------------------
# libcurl is dlopen()ed, so the build needs its headers only: from the
# target's own -dev package, unpacked, not installed (its dependencies
# would pull a second libssl and more for nothing).
dpkg-deb -x "$cdeb" "$WORK/curl"
cmake -S "$SRC" -B "$WORK/build" -DCMAKE_TOOLCHAIN_FILE="$SRC/cmake/$arch.cmake" -DSHMPROV_WERROR=ON \
    -DCURL_INCLUDE_DIR="$WORK/curl/usr/include/$triple" >"$WORK/cmake.log" 2>&1 ||
    { cat "$WORK/cmake.log"; exit 1; }
cmake --build "$WORK/build" -j2 >"$WORK/build.log" 2>&1 || { cat "$WORK/build.log"; exit 1; }
"$triple-gcc" -O2 -Wall -Werror -o "$WORK/shm_helper" "$SRC/tests/helpers/shm_helper.c"
say "built $(file -b "$WORK/build/shmprov" | cut -d, -f1-2)"
hardening=ok
if command -v hardening-check >/dev/null; then
    "$SRC/tests/static/hardening.sh" "$WORK/build/shmprov" >"$WORK/hardening.log" 2>&1 || hardening=FAIL
    tail -n 1 "$WORK/hardening.log"
else
    hardening="not checked (no hardening-check: apt-get install devscripts)"
fi
if apt-cache show "libcriterion-dev:$arch" >/dev/null 2>&1; then
    unit="not run: libcriterion-dev:$arch exists, but running the unit tests in the guest is not implemented yet"
else
    unit="not run: Debian 12 has no libcriterion-dev:$arch, so the unit tests cannot be built for it"
fi
say "unit tests $unit"

# --- initramfs -------------------------------------------------------------
root=$WORK/initramfs
mkdir -p "$root"/{bin,proc,sys,dev,tmp,run,etc/sysctl.d,var/lib/shmprov,shmprov/profiles}
dpkg-deb -x "$bdeb" "$WORK/busybox"
cp "$WORK/busybox/bin/busybox" "$root/bin/"
cp "$WORK/build/shmprov" "$WORK/shm_helper" "$SRC/tests/platforms/guest.sh" "$root/shmprov/"
cp "$SRC"/profiles/{small,medium,large}.yaml "$root/shmprov/profiles/"
cp /etc/os-release "$root/etc/os-release"
echo "shmprov-$arch" >"$root/etc/hostname"
# copy_with_libs FILE: FILE's interpreter and every library it needs, from
# the target's multiarch directories, to the same paths in the initramfs.
copy_lib() {
    local f=$1 dir p
    for dir in "/usr/lib/$triple" "/lib/$triple" "/usr/$triple/lib"; do
        p=$dir/$f
        if [ -e "$p" ]; then
            mkdir -p "$root/lib/$triple"
            [ -e "$root/lib/$triple/$f" ] || { cp -L "$p" "$root/lib/$triple/$f"; copy_needed "$p"; }
            return 0
        fi
    done
    echo "run.sh: $f (for $arch) not found" >&2
    return 1
}
copy_needed() {
    local lib
    for lib in $(readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do copy_lib "$lib"; done
}
interp=$(readelf -l "$WORK/build/shmprov" | sed -n 's/.*Requesting program interpreter: \(.*\)]/\1/p')
mkdir -p "$root$(dirname "$interp")"
cp -L "$interp" "$root$interp"
copy_needed "$WORK/build/shmprov"
copy_needed "$WORK/shm_helper"
cat >"$root/init" <<EOF
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin LD_LIBRARY_PATH=/lib/$triple
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
hostname -F /etc/hostname
sh /shmprov/guest.sh /shmprov/shmprov /shmprov/shm_helper /shmprov/profiles /tmp/work
poweroff -f
EOF
chmod 755 "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$WORK/initrd.gz"
kdir=$WORK/kernel
dpkg-deb -x "$kdeb" "$kdir"
kernel=$(ls "$kdir"/boot/vmlinu[xz]-*)
say "initramfs $(du -k "$WORK/initrd.gz" | cut -f1) KiB, kernel $(basename "$kernel")"

# --- the guest, then the native reference ------------------------------------
start=$(date +%s)
say "booting (${qemu[0]}, TCG, -m 1024)"
rc=0
timeout 600 "${qemu[@]}" -accel tcg -m 1024 -smp 1 -nographic -vga none -no-reboot -kernel "$kernel" \
    -initrd "$WORK/initrd.gz" </dev/null >"$WORK/console.log" 2>&1 || rc=$?
say "the guest ran $(($(date +%s) - start)) s (qemu exit status $rc)"
native=${SHMPROV_NATIVE:-$SRC/build/shmprov}
if [ ! -x "$native" ]; then
    cmake -S "$SRC" -B "$WORK/native" -DSHMPROV_TESTS=OFF >/dev/null
    cmake --build "$WORK/native" -j2 --target shmprov >/dev/null
    native=$WORK/native/shmprov
fi
cc -O2 -o "$WORK/shm_helper.native" "$SRC/tests/helpers/shm_helper.c"
"$SRC/tests/platforms/native.sh" "$native" "$WORK/shm_helper.native" >"$WORK/native.log" 2>&1 || true

python3 "$SRC/tests/platforms/check.py" --arch "$arch" --page-size "$page" --readme "$SRC/README.md" \
    --schema "$SRC/schemas/report.schema.json" --native "$WORK/native.log" \
    --hardening "$hardening" --unit "$unit" "$WORK/console.log"
