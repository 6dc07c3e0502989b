#!/bin/bash
# The .rpm, checked with the real rpm tools. Run as root on Debian 12 (CI).
#
# Builds packaging/rpm/shmprov.spec with `rpmbuild -bb --nodeps` in a private
# %_topdir from a copy of the working tree (committed or not; the checkout is
# never written), checks the file list, the config files, the dependencies and
# the scriptlets, installs the package into a scratch root with its own rpm
# database (never the host's), verifies it with `rpm -V`, runs the installed
# binary, checks that an edited profile survives a reinstall, and erases it:
# erase deletes the sysctl drop-in shmprov wrote (a reinstall does not), and
# keeps one edited since, with a message.
#
# Usage: tests/packaging/rpm.sh        KEEP=1 keeps the work directory.
set -uo pipefail
export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8

src=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d /tmp/shmprov-rpm.XXXXXX)
pass=0 fail=0 rpmfile=
step_name='' step_t0='' all_t0=${EPOCHREALTIME/./}
timings=()

cleanup() { if [ "${KEEP:-0}" = 1 ]; then echo "kept $work"; else rm -rf "$work"; fi; }
trap cleanup EXIT

ok()  { pass=$((pass + 1)); echo "ok   $*"; }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }
# check DESCRIPTION COMMAND...: one counted check.
check() { local d=$1; shift; if "$@"; then ok "$d"; else bad "$d"; return 1; fi; }
ms() { echo $(( (${EPOCHREALTIME/./} - $1) / 1000 )); }
secs() { printf '%d.%03d s' $(($1 / 1000)) $(($1 % 1000)); }
step() {
    if [ -n "$step_name" ]; then
        local t; t=$(ms "$step_t0")
        timings+=("$(printf '%-42s %s' "$step_name" "$(secs "$t")")")
        echo "   ($(secs "$t"))"
    fi
    step_name=${1:-} step_t0=${EPOCHREALTIME/./}
    [ -n "$step_name" ] && echo "== $step_name"
    return 0
}
finish() {
    step
    echo "== summary"
    printf '   %s\n' "${timings[@]}"
    printf '   %-42s %s\n' total "$(secs "$(ms "$all_t0")")"
    if [ -n "$rpmfile" ] && [ -f "$rpmfile" ]; then
        echo "   package: ${rpmfile##*/}: $(stat -c %s "$rpmfile") bytes" \
             "($(( ($(stat -c %s "$rpmfile") + 1023) / 1024 )) KiB)," \
             "installed size $(rpm -qp --qf '%{SIZE}' "$rpmfile" 2>/dev/null) bytes"
    fi
    echo "$pass passed, $fail failed"
    [ "$fail" -eq 0 ]
    exit
}
# die MESSAGE: a failure the later steps cannot go on from.
die() { bad "$*"; finish; }

# A fingerprint of what must not change: the host's rpm databases (Debian
# has none, but rpm would create $HOME/.rpmdb) and the checkout's status.
host_dbs=("$(rpm --eval '%{_dbpath}' 2>/dev/null || echo ~/.rpmdb)" /var/lib/rpm)
fingerprint() {
    { find "${host_dbs[@]}" -printf '%p %s %T@\n' 2>/dev/null | sort
      git -C "$src" status --porcelain --untracked-files=all --ignored 2>/dev/null; } | md5sum
}

step "build tools (apt-get)"
need=(rpm cmake gcc make pkg-config libyaml-dev libjson-c-dev libmd-dev cpio devscripts)
missing=()
for p in "${need[@]}"; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed' || missing+=("$p")
done
compgen -G '/usr/include/curl/curl.h' >/dev/null || compgen -G '/usr/include/*/curl/curl.h' >/dev/null ||
    missing+=(libcurl4-openssl-dev)
if [ "${#missing[@]}" -gt 0 ]; then
    echo "   installing: ${missing[*]}"
    apt=(apt-get -o DPkg::Lock::Timeout=600 -y -qq --no-install-recommends)
    { "${apt[@]}" install "${missing[@]}" || { "${apt[@]}" update && "${apt[@]}" install "${missing[@]}"; }; } \
        >"$work/apt.log" 2>&1 || { tail -20 "$work/apt.log"; die "apt-get install ${missing[*]}"; }
fi
before=$(fingerprint)
# Debian's rpm keeps its database in ~/.rpmdb, and even `rpm -qp` creates it.
# A private HOME with a private ~/.rpmmacros keeps every rpm command below
# off the host's database and free of the caller's macros.
export HOME=$work/home
mkdir -p "$HOME" "$work/rpmdb"
echo "%_dbpath $work/rpmdb" >"$HOME/.rpmmacros"
# Debian's rpm nags about alien on every install unless told.
force_debian=()
[[ $(rpm --help 2>&1) == *--force-debian* ]] && force_debian=(--force-debian)
echo "   $(rpm --version), $(rpmbuild --version | head -1)"

step "copy of the working tree"
ver=$(sed -n 's/^project(shmprov VERSION \([0-9][0-9.]*\).*/\1/p' "$src/CMakeLists.txt")
[ -n "$ver" ] || die "no version in CMakeLists.txt project()"
tree=$work/shmprov-$ver
mkdir -p "$tree"
if git -C "$src" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    # Tracked and untracked files, not ignored ones (build/, debian/, *.deb).
    (cd "$src" && git ls-files -z --cached --others --exclude-standard |
        while IFS= read -r -d '' f; do
            if [ -e "$f" ] || [ -L "$f" ]; then printf '%s\0' "$f"; fi
        done | tar --null -T - -cf -) | tar -C "$tree" -xf - || die "copy the tree"
else
    tar -C "$src" --exclude=./.git --exclude=./build --exclude='./build-*' --exclude=./debian -cf - . |
        tar -C "$tree" -xf - || die "copy the tree"
fi
echo "   $(find "$tree" -type f | wc -l) files, version $ver (CMakeLists.txt)"
inputs_ok=1
for f in packaging/rpm/shmprov.spec packaging/man/shmprov.8 packaging/systemd/shmprov.service \
         packaging/systemd/shmprov-drift.service packaging/systemd/shmprov-drift.timer \
         profiles/default.yaml schemas/profile.schema.json schemas/report.schema.json README.md; do
    [ -f "$tree/$f" ] || { bad "tree has $f"; inputs_ok=0; }
done
[ "$inputs_ok" = 1 ] || die "the tree lacks files that CMake installs or the spec packages"
ok "tree has the spec, man page, units, default profile, schemas"
spec=$tree/packaging/rpm/shmprov.spec
specver=$(rpmspec -q --srpm --qf '%{VERSION}' "$spec" 2>"$work/rpmspec.err")
check "spec Version ($specver) = CMake project version ($ver)" [ "$specver" = "$ver" ]

step "Fedora branch of the spec (rpmspec -P)"
# Debian's rpm has neither %cmake nor the systemd macros, so the build below
# takes the fallback branch. Parse the spec again with stand-ins for those
# macros (non-parametric %cmake as in Fedora's macros.cmake, parametric
# %systemd_* as in systemd's macros.systemd) to see what Fedora/EL would run.
rpmspec -P "$spec" \
    --define 'cmake CMAKE-CONFIGURE' --define 'cmake_build CMAKE-BUILD' \
    --define 'cmake_install CMAKE-INSTALL' --define '_unitdir /usr/lib/systemd/system' \
    --define 'systemd_requires Requires(post): systemd' \
    --define 'systemd_post() SYSTEMD-POST %*' --define 'systemd_preun() SYSTEMD-PREUN %*' \
    --define 'systemd_postun() SYSTEMD-POSTUN %*' \
    --define 'systemd_postun_with_restart() SYSTEMD-POSTUN-RESTART %*' \
    >"$work/fedora.spec" 2>&1 || { cat "$work/fedora.spec"; die "rpmspec -P with Fedora macros"; }
# rpmspec -P drops the %build line itself: %build is what follows %prep.
section() {
    awk -v s="$1" '/^%[a-z]+/ { on = ($1 == s) } on' "$work/fedora.spec"
    [ "$1" = %build ] && awk '/^%install/ { exit } on; /^%prep/ { on = 1 }' "$work/fedora.spec"
}
check "%build runs %cmake with -DSHMPROV_UNIT_DIR=%{_unitdir} -DSHMPROV_TESTS=OFF, then %cmake_build" \
    bash -c '[[ $(tr "\n" " " <<<"$1") =~ CMAKE-CONFIGURE.*-DSHMPROV_UNIT_DIR=/usr/lib/systemd/system.*-DSHMPROV_TESTS=OFF.*CMAKE-BUILD ]] &&
             ! grep -q build-rpm <<<"$1"' _ "$(section %build)"
check "%install runs %cmake_install" grep -qx CMAKE-INSTALL <(section %install)
check "%post: systemd_post shmprov.service shmprov-drift.timer (preset only; starts nothing)" \
    grep -qx 'SYSTEMD-POST shmprov.service shmprov-drift.timer' <(section %post)
check "%preun: systemd_preun on all three units" \
    grep -qx 'SYSTEMD-PREUN shmprov.service shmprov-drift.service shmprov-drift.timer' <(section %preun)
check "%postun: systemd_postun on all three units" \
    grep -qx 'SYSTEMD-POSTUN shmprov.service shmprov-drift.service shmprov-drift.timer' <(section %postun)
check "%postun: restarts nothing on upgrade (a restarted timer fires at once)" \
    bash -c '! grep -q SYSTEMD-POSTUN-RESTART "$1"' _ <(section %postun)
check "the report-sending shmprov-drift.service is never started or restarted by a scriptlet" \
    bash -c '! grep -E "^SYSTEMD-(POST|POSTUN-RESTART) .*shmprov-drift\.service" "$1"' _ "$work/fedora.spec"
check "Requires(post): systemd from %systemd_requires" grep -qx 'Requires(post): systemd' "$work/fedora.spec"
check "%postun: the drop-in on erase only (\$1 -eq 0), after systemd_postun" \
    bash -c 'awk "/^SYSTEMD-POSTUN /{s=1} s && /^if \\[ \"\\\$1\" -eq 0 \\]; then\$/{f=1} END{exit !f}" "$1"' _ <(section %postun)

step "source tarball"
top=$work/rpmbuild
mkdir -p "$top"/{SOURCES,SPECS,BUILD,BUILDROOT,RPMS,SRPMS}
tar -C "$work" --sort=name --owner=0 --group=0 --numeric-owner -czf "$top/SOURCES/shmprov-$ver.tar.gz" \
    "shmprov-$ver" || die "tar czf shmprov-$ver.tar.gz"
echo "   shmprov-$ver.tar.gz: $(stat -c %s "$top/SOURCES/shmprov-$ver.tar.gz") bytes"

step "rpmbuild -bb --nodeps"
echo "   \$ rpmbuild -bb --nodeps --define '_topdir $top' $spec"
if ! rpmbuild -bb --nodeps --define "_topdir $top" "$spec" >"$work/rpmbuild.log" 2>&1; then
    tail -40 "$work/rpmbuild.log"
    die "rpmbuild -bb --nodeps"
fi
ok "rpmbuild -bb --nodeps"
grep -i 'warning' "$work/rpmbuild.log" | grep -v -e '-Wall' -e '-W[a-z]' >"$work/warnings" || true
check "rpmbuild printed no warnings" [ ! -s "$work/warnings" ] || sed 's/^/   /' "$work/warnings"
rpmfile=$(find "$top/RPMS" -name "shmprov-$ver-*.rpm" ! -name '*debug*' | head -1)
[ -n "$rpmfile" ] || die "no shmprov-$ver-*.rpm under $top/RPMS"
echo "   ${rpmfile#"$top"/}: $(stat -c %s "$rpmfile") bytes"
# The spec's %optflags and CMakeLists.txt's flags together: the binary that
# ships must be as hardened as the one CI builds.
mkdir -p "$work/unpacked"
(cd "$work/unpacked" && rpm2cpio "$rpmfile" | cpio -idm --quiet)
check "the packaged binary is hardened (PIE, stack protector, fortify, RELRO, bind-now)" \
    "$src/tests/static/hardening.sh" "$work/unpacked$(rpm --eval '%{_sbindir}')/shmprov"

step "rpm -qpl, -qpc, -qpR, --scripts"
# Where things go, from the macros the spec uses (same fallback for %_unitdir).
sbindir=$(rpm --eval '%{_sbindir}') datadir=$(rpm --eval '%{_datadir}')
mandir=$(rpm --eval '%{_mandir}') sysconfdir=$(rpm --eval '%{_sysconfdir}')
unitdir=$(rpm --eval '%{?_unitdir}%{!?_unitdir:%{_prefix}/lib/systemd/system}')
rpm -qpl "$rpmfile" >"$work/files" || die "rpm -qpl"
sed 's/^/   /' "$work/files"
expected=("$sbindir/shmprov" "$sysconfdir/shmprov" "$sysconfdir/shmprov/profile.yaml"
          "$datadir/shmprov" "$datadir/shmprov/profiles" "$datadir/shmprov/schemas"
          "$datadir/shmprov/schemas/profile.schema.json" "$datadir/shmprov/schemas/report.schema.json"
          "$unitdir/shmprov.service" "$unitdir/shmprov-drift.service" "$unitdir/shmprov-drift.timer"
          "$datadir/shmprov/prometheus" "$datadir/shmprov/prometheus/shmprov.rules.yml"
          "$datadir/shmprov/prometheus/shmprov.rules.test.yml")
for p in "$tree"/profiles/*.yaml; do expected+=("$datadir/shmprov/profiles/${p##*/}"); done
missing_files=()
for f in "${expected[@]}"; do grep -qxF "$f" "$work/files" || missing_files+=("$f"); done
check "rpm -qpl lists the binary, conffile, profiles, schemas, alert rules, units (${#expected[@]} paths)" \
    [ "${#missing_files[@]}" -eq 0 ] || printf '   missing: %s\n' "${missing_files[@]}"
man_re="^${mandir//./\\.}/man8/shmprov\.8(\.(gz|bz2|xz|zst))?$"
check "rpm -qpl lists the man page shmprov(8)" grep -qE "$man_re" "$work/files"
check "rpm -qpl lists README.md as %doc" \
    bash -c 'rpm -qpd "$1" | grep -qE "^/usr/share/doc/shmprov[^/]*/README\.md$"' _ "$rpmfile"
if [ -f "$tree/LICENSE" ]; then
    check "rpm -qpL lists LICENSE as %license" bash -c 'rpm -qpL "$1" | grep -q "/LICENSE$"' _ "$rpmfile"
else
    echo "   note: the tree has no LICENSE file, so the package carries no %license"
fi
# Nothing else: only the doc/license directories and rpm's build-id links.
grep -vxF -f <(printf '%s\n' "${expected[@]}") "$work/files" |
    grep -vE -e "$man_re" -e '^/usr/share/(doc|licenses)/shmprov' -e '^/usr/lib/\.build-id(/|$)' >"$work/extra" || true
check "rpm -qpl lists nothing unexpected" [ ! -s "$work/extra" ] || sed 's/^/   extra: /' "$work/extra"
echo "   \$ rpm -qpc ${rpmfile##*/}"
rpm -qpc "$rpmfile" | tee "$work/config" | sed 's/^/   /'
check "rpm -qpc: exactly $sysconfdir/shmprov/profile.yaml is config" \
    [ "$(cat "$work/config")" = "$sysconfdir/shmprov/profile.yaml" ]
attrs=$(rpm -qp --qf '[%{FILEFLAGS:fflags} %{FILEMODES:perms} %{FILEUSERNAME}:%{FILEGROUPNAME} %{FILENAMES}\n]' "$rpmfile")
prof=$(grep " $sysconfdir/shmprov/profile.yaml$" <<<"$attrs")
echo "   $prof"
conffile_attrs() { [[ "${prof%% *}" == *c* && "${prof%% *}" == *n* && "$prof" == *" -rw-r--r-- root:root "* ]]; }
check "profile.yaml is %config(noreplace), -rw-r--r-- root:root" conffile_attrs
check "the binary is -rwxr-xr-x root:root" grep -qE "^ *-rwxr-xr-x root:root $sbindir/shmprov$" <<<"$attrs"
rpm -qpR "$rpmfile" >"$work/requires"
sed 's/^/   requires: /' "$work/requires"
check "Requires: libcurl (explicit: libcurl is dlopen()ed, invisible to rpm's ELF scan)" \
    grep -qE '^libcurl(\(|$| )' "$work/requires"
check "the binary is not linked with libcurl (no libcurl.so.4 ELF requirement)" \
    bash -c '! grep -q "^libcurl\.so" "$1"' _ "$work/requires"
check "ELF requirements on libyaml, json-c and libmd were generated" \
    bash -c 'grep -q "^libyaml-0\.so" "$1" && grep -q "^libjson-c\.so" "$1" && grep -q "^libmd\.so" "$1"' _ "$work/requires"
# The scratch root below has no libraries; the host's satisfy each soname.
ldconfig -p | awk 'NR > 1 { print $1 }' | sort -u >"$work/host-sonames"
unresolved=()
while read -r so; do
    grep -qxF "$so" "$work/host-sonames" || unresolved+=("$so")
done < <(sed -n 's/^\(lib[^(]*\.so[^(]*\)(.*64bit)$/\1/p' "$work/requires"; echo libcurl.so.4)
check "every soname required (and libcurl.so.4 for dlopen) is on the host" \
    [ "${#unresolved[@]}" -eq 0 ] || printf '   unresolved: %s\n' "${unresolved[@]}"
rpm -qp --scripts "$rpmfile" >"$work/scripts"
# Without the systemd macros (Debian's rpm) the one scriptlet left is the
# one that deletes the drop-in on erase; it calls no systemctl.
check "where the systemd macros are missing, %postun is the only scriptlet, and it calls no systemctl" \
    bash -c '[ "$(grep -c "^[a-z]* *scriptlet" "$1")" = 1 ] && grep -q "^postuninstall scriptlet" "$1" &&
             ! grep -q systemctl "$1"' _ "$work/scripts" || sed 's/^/   /' "$work/scripts"
check "rpm -qpR: Requires(postun) coreutils (sha256sum and rm, for the drop-in)" \
    grep -qx 'coreutils' "$work/requires"

step "install into a scratch root"
root=$work/root
mkdir -p "$root"
# rpm runs %postun chrooted into the scratch root: it gets a /bin/sh (dash)
# and the two tools the scriptlet calls, with their libraries, copied from
# this host. They belong to no package; the checks after erase skip them.
toolbox=()
for t in /bin/sh /usr/bin/sha256sum /bin/rm; do
    for f in "$t" $(ldd "$(readlink -f "$t")" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'); do
        [ -e "$root$f" ] && continue
        mkdir -p "$root$(dirname "$f")" && cp -L "$f" "$root$f" && toolbox+=(".$f")
    done
done
mkdir -p "$root/var/tmp" "$root/tmp"
echo "   scriptlet toolbox in the scratch root: ${toolbox[*]}"
R=(rpm --root "$root" --dbpath /var/lib/rpm)
I=("${R[@]}" "${force_debian[@]}" --nodeps)
echo "   \$ ${R[*]} --initdb"
"${R[@]}" --initdb || die "rpm --initdb in the scratch root"
echo "   \$ ${I[*]} -i ${rpmfile##*/}"
"${I[@]}" -i "$rpmfile" >"$work/install.log" 2>&1 || { cat "$work/install.log"; die "rpm --nodeps -i"; }
check "rpm -i printed nothing" [ ! -s "$work/install.log" ] || sed 's/^/   /' "$work/install.log"
check "rpm -q finds shmprov-$ver in the scratch database" grep -q "^shmprov-$ver-" <("${R[@]}" -q shmprov)
check "the scratch root holds its own rpm database" [ -n "$(ls -A "$root/var/lib/rpm" 2>/dev/null)" ]

step "rpm -V"
echo "   \$ ${R[*]} -V shmprov"
"${R[@]}" -V shmprov >"$work/verify" 2>&1; rc=$?
sed 's/^/   /' "$work/verify"
vmode="rpm -V"
if grep -q '^Unsatisfied dependencies' "$work/verify" && ! grep -vq -e '^Unsatisfied' -e '^	' "$work/verify"; then
    # Only the dependencies the scratch root cannot have (it holds nothing
    # but this package; the host's libraries are checked above). Files:
    echo "   \$ ${R[*]} -V --nodeps shmprov"
    "${R[@]}" -V --nodeps shmprov >"$work/verify" 2>&1; rc=$?
    sed 's/^/   /' "$work/verify"
    vmode="rpm -V --nodeps (the dependencies: on the host, checked above)"
fi
check "$vmode reports nothing (exit $rc)" [ "$rc" -eq 0 -a ! -s "$work/verify" ]

step "run the installed binary"
bin=$root$sbindir/shmprov
out=$("$bin" --version 2>&1); rc=$?
echo "   \$ $bin --version"
echo "   $out"
check "shmprov --version exits 0 and prints $ver" [ "$rc" -eq 0 -a "${out/$ver/}" != "$out" ]
out=$("$bin" validate "$root$sysconfdir/shmprov/profile.yaml" "$root$datadir"/shmprov/profiles/*.yaml 2>&1); rc=$?
sed 's/^/   /' <<<"$out"
check "installed shmprov validates the installed conffile and profiles" [ "$rc" -eq 0 ]

step "edited profile survives reinstall; erase"
conf=$root$sysconfdir/shmprov/profile.yaml
echo '# edited by the operator' >>"$conf"
"${R[@]}" -V --nodeps shmprov >"$work/verify" 2>&1
sed 's/^/   /' "$work/verify"
check "rpm -V flags the edited profile as a changed config file, and nothing else" \
    [ "$(cat "$work/verify")" = "S.5....T.  c $sysconfdir/shmprov/profile.yaml" ]
# A drop-in as "shmprov apply" leaves it, with its record.
dropin=$root/etc/sysctl.d/60-shmprov.conf record=$root/var/lib/shmprov/dropin.sha256
put_dropin() {
    mkdir -p "$root/etc/sysctl.d" "$root/var/lib/shmprov"
    printf '# Managed by shmprov.\nkernel.shmmax = 4294967296\n' >"$dropin"
    echo "$(sha256sum <"$dropin" | cut -d' ' -f1)  /etc/sysctl.d/60-shmprov.conf" >"$record"
}
put_dropin
"${I[@]}" -i --replacepkgs "$rpmfile" >"$work/install.log" 2>&1 || cat "$work/install.log"
check "rpm -i --replacepkgs keeps the operator's edit (no .rpmnew)" \
    bash -c 'grep -q "^# edited by the operator" "$1" && [ ! -e "$1.rpmnew" ]' _ "$conf"
check "a reinstall (%postun with \$1 = 1) leaves the drop-in and its record alone" \
    test -f "$dropin" -a -f "$record"
"${R[@]}" "${force_debian[@]}" -e shmprov >"$work/erase.log" 2>&1; rc=$?
sed 's/^/   /' "$work/erase.log"
check "rpm -e exits 0" [ "$rc" -eq 0 ]
check "rpm -e deletes the drop-in shmprov wrote, and its record" test ! -e "$dropin" -a ! -e "$record"
check "rpm -e says so, naming the file" grep -q '^shmprov: removed /etc/sysctl.d/60-shmprov.conf' "$work/erase.log"
left=$(cd "$root" && find . \( -type f -o -type l \) ! -path './var/lib/rpm/*' ! -name profile.yaml.rpmsave |
       grep -vxF -f <(printf '%s\n' "${toolbox[@]}"))
[ -e "$root$datadir/shmprov" ] && left+=" .$datadir/shmprov/"
check "rpm -e removes every file and directory the package owns" [ -z "$left" ] || echo "   left: $left"
check "the edited profile is kept as profile.yaml.rpmsave" grep -q '^# edited by the operator' "$conf.rpmsave"
check "rpm -q no longer finds shmprov" bash -c '! "$@" -q shmprov' _ "${R[@]}"

step "an edited drop-in survives erase"
"${I[@]}" -i "$rpmfile" >"$work/install.log" 2>&1 || cat "$work/install.log"
put_dropin
echo '# kept by the operator' >>"$dropin"
"${R[@]}" "${force_debian[@]}" -e shmprov >"$work/erase.log" 2>&1; rc=$?
sed 's/^/   /' "$work/erase.log"
check "rpm -e exits 0" [ "$rc" -eq 0 ]
check "the edited drop-in is still there, as edited" grep -qx '# kept by the operator' "$dropin"
check "rpm -e names it and says it was edited" \
    grep -q '^shmprov: kept /etc/sysctl.d/60-shmprov.conf: edited since shmprov wrote it' "$work/erase.log"

step "the host is untouched"
check "host rpm databases (${host_dbs[*]}) and the checkout's git status unchanged" [ "$(fingerprint)" = "$before" ]

finish
