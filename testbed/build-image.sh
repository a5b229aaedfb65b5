#!/usr/bin/env bash
# Build blargh's test servers: two Debian 12 (bookworm) VM images, one booting systemd and one
# booting OpenRC (sysvinit), for QEMU; or, with `bullseye`, one Debian 11 image booting
# systemd (glibc 2.31: a server older than the machine that builds). See testbed/README.md.
#
#   testbed/build-image.sh [bookworm|bullseye]   # build if needed, print the cache directory
#
# Output: $BLARGH_TESTBED_DIR (default <repo>/target/testbed)/<suite>-<hash>/{systemd,openrc}/
# (bullseye: systemd/ only) with
#   disk.img        raw ext4 root filesystem (the whole disk is the filesystem: root=/dev/vda)
#   vmlinuz         kernel for -kernel
#   initrd.img      initramfs for -initrd
#   cmdline         kernel command line for -append
#   id_ed25519      test private key; root's and admin's authorized_keys hold id_ed25519.pub
#   host_ed25519.pub  the guest's ed25519 host public key (for known_hosts)
# <hash> is taken from this script's content and the suite, so editing the script builds a new
# image.
# Already built for this hash: exits 0 at once. A build goes to a temporary directory and is
# renamed into place, so a half-built image is never used. Progress goes to stderr; the only
# thing on stdout is the cache directory. Needs root, debootstrap, e2fsprogs (mkfs.ext4 -d),
# ssh-keygen, sha256sum, flock.
#
# The Debian mirror comes from this machine's apt configuration at run time (or from
# $BLARGH_DEBIAN_MIRROR); no mirror name is written in this repository.
set -euo pipefail

SCRIPT="$(readlink -f "${BASH_SOURCE[0]}")"
ROOT="$(dirname "$(dirname "$SCRIPT")")"
CACHE="${BLARGH_TESTBED_DIR:-$ROOT/target/testbed}"
SUITE="${1:-bookworm}"
case "$SUITE" in
bookworm) INITS="systemd openrc" ;;
bullseye) INITS="systemd" ;;
*)
    echo "build-image.sh: unknown suite $SUITE (bookworm or bullseye)" >&2
    exit 2
    ;;
esac
HASH="$({ cat "$SCRIPT"; echo "suite=$SUITE"; } | sha256sum | cut -c1-16)"
FINAL="$CACHE/$SUITE-$HASH"

# stdout is reserved for the result; everything else goes to stderr.
exec 3>&1 1>&2

START=$SECONDS
log() { printf '[build-image +%3ds] %s\n' "$((SECONDS - START))" "$*" >&2; }
done_exit() {
    touch "$FINAL" # last use, for pruning old versions (below)
    echo "$FINAL" >&3
    exit 0
}

complete() {
    local init
    for init in $INITS; do [ -f "$FINAL/$init/disk.img" ] || return 1; done
}

complete && done_exit

[ "$(id -u)" = 0 ] || { log "must run as root (debootstrap, chroot)"; exit 1; }
for tool in debootstrap mkfs.ext4 ssh-keygen chroot flock; do
    command -v "$tool" >/dev/null || { log "missing tool: $tool"; exit 1; }
done

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
if ! flock -n 9; then
    log "another build is running; waiting for $CACHE/.lock"
    flock 9
fi
complete && done_exit

find_mirror() {
    if [ -n "${BLARGH_DEBIAN_MIRROR:-}" ]; then
        echo "$BLARGH_DEBIAN_MIRROR"
        return
    fi
    local f uri
    # deb822 format: the first URIs: that is not the security archive.
    for f in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        uri="$(awk 'tolower($1) == "uris:" { for (i = 2; i <= NF; i++) if ($i !~ /security/) { print $i; exit } }' "$f")"
        if [ -n "$uri" ]; then echo "$uri"; return; fi
    done
    # one-line format: "deb [options] URI suite components".
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        uri="$(awk '$1 == "deb" { i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
                                 if ($i !~ /security/) { print $i; exit } }' "$f")"
        if [ -n "$uri" ]; then echo "$uri"; return; fi
    done
}
MIRROR="$(find_mirror)"
[ -n "$MIRROR" ] || { log "no Debian mirror found in apt config; set BLARGH_DEBIAN_MIRROR"; exit 1; }

WORK="$(mktemp -d "$CACHE/.build-$HASH.XXXXXX")"
MOUNTS=()
cleanup() {
    local m
    for m in "${MOUNTS[@]}"; do umount -l "$m" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

# Run a command in a chroot with /proc and /sys mounted.
in_chroot() {
    local rootfs="$1"
    shift
    mount -t proc proc "$rootfs/proc" && MOUNTS+=("$rootfs/proc")
    mount -t sysfs sysfs "$rootfs/sys" && MOUNTS+=("$rootfs/sys")
    local rc=0
    DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 chroot "$rootfs" "$@" || rc=$?
    umount "$rootfs/sys" "$rootfs/proc"
    MOUNTS=()
    return $rc
}
APT_INSTALL=(apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-confold)

R="$WORK/rootfs-systemd"
log "debootstrap $SUITE from $MIRROR (systemd, openssh-server, sudo)"
debootstrap --variant=minbase \
    --include=systemd,systemd-sysv,openssh-server,dbus,iproute2,ca-certificates,sudo \
    "$SUITE" "$R" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 || {
    tail -n 30 "$WORK/debootstrap.log" >&2
    exit 1
}

# Nothing may start services inside the chroot while packages are installed.
printf '#!/bin/sh\nexit 101\n' >"$R/usr/sbin/policy-rc.d"
chmod 755 "$R/usr/sbin/policy-rc.d"

log "installing the kernel (linux-image-cloud-amd64)"
in_chroot "$R" "${APT_INSTALL[@]}" linux-image-cloud-amd64 >"$WORK/kernel.log" 2>&1 || {
    tail -n 30 "$WORK/kernel.log" >&2
    exit 1
}

log "configuring login, users, network"
ssh-keygen -q -t ed25519 -N '' -C blargh-testbed -f "$WORK/id_ed25519"
PUB="$(cat "$WORK/id_ed25519.pub")"

# No fsck: every boot starts from a fresh overlay, and fsck is slow without KVM.
echo "/dev/vda / ext4 rw,errors=remount-ro 0 0" >"$R/etc/fstab"
# -cpu max offers SVM/VMX to the guest; loading KVM in it is wasted time.
printf 'blacklist kvm_amd\nblacklist kvm_intel\nblacklist kvm\n' >"$R/etc/modprobe.d/blargh-testbed.conf"

install -d -m 700 "$R/root/.ssh"
echo "$PUB" >"$R/root/.ssh/authorized_keys"
chmod 600 "$R/root/.ssh/authorized_keys"

# A non-root user with passwordless sudo, for seeds that log in as a sudo user.
in_chroot "$R" useradd --create-home --shell /bin/bash --groups sudo admin
in_chroot "$R" usermod --password '*' admin # no password, but not locked
install -d -m 700 "$R/home/admin/.ssh"
echo "$PUB" >"$R/home/admin/.ssh/authorized_keys"
chmod 600 "$R/home/admin/.ssh/authorized_keys"
in_chroot "$R" chown -R admin:admin /home/admin/.ssh
echo 'admin ALL=(ALL:ALL) NOPASSWD: ALL' >"$R/etc/sudoers.d/admin"
chmod 440 "$R/etc/sudoers.d/admin"

cat >"$R/etc/ssh/sshd_config.d/blargh-testbed.conf" <<'EOF'
PermitRootLogin prohibit-password
PasswordAuthentication no
UseDNS no
EOF

# Host keys were made by openssh-server's postinst; make fresh ones for this build.
rm -f "$R"/etc/ssh/ssh_host_*
ssh-keygen -q -t ed25519 -N '' -C root@blargh-testbed -f "$R/etc/ssh/ssh_host_ed25519_key"
ssh-keygen -q -t rsa -b 3072 -N '' -C root@blargh-testbed -f "$R/etc/ssh/ssh_host_rsa_key"
ssh-keygen -q -t ecdsa -N '' -C root@blargh-testbed -f "$R/etc/ssh/ssh_host_ecdsa_key"

# OpenRC copy, taken before systemd-only configuration.
O="$WORK/rootfs-openrc"
if [ "$INITS" != systemd ]; then
    log "copying the root filesystem for the OpenRC image"
    cp -a "$R" "$O"
fi

# systemd: networkd with DHCP on en*.
echo blargh-systemd >"$R/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tblargh-systemd\n' >"$R/etc/hosts"
cat >"$R/etc/systemd/network/80-dhcp.network" <<'EOF'
[Match]
Name=en*

[Network]
DHCP=yes
EOF
in_chroot "$R" systemctl enable systemd-networkd ssh >/dev/null 2>&1
# A test server changes no packages by itself (and has no network to fetch them).
in_chroot "$R" systemctl disable apt-daily.timer apt-daily-upgrade.timer >/dev/null 2>&1
echo "root=/dev/vda rw console=ttyS0" >"$WORK/cmdline-systemd"

if [ "$INITS" != systemd ]; then
log "OpenRC: installing sysvinit-core openrc ifupdown isc-dhcp-client, purging systemd"
{
    in_chroot "$O" "${APT_INSTALL[@]}" sysvinit-core openrc ifupdown isc-dhcp-client \
        orphan-sysvinit-scripts &&
        in_chroot "$O" apt-get purge -y -q systemd
} >"$WORK/openrc.log" 2>&1 || {
    tail -n 30 "$WORK/openrc.log" >&2
    exit 1
}
echo blargh-openrc >"$O/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tblargh-openrc\n' >"$O/etc/hosts"
cat >"$O/etc/network/interfaces" <<'EOF'
auto lo
iface lo inet loopback

auto eth0
iface eth0 inet dhcp
EOF
in_chroot "$O" rc-update add networking boot >/dev/null 2>&1 || true
in_chroot "$O" rc-update add ssh default >/dev/null 2>&1 || true
echo "root=/dev/vda rw console=ttyS0 net.ifnames=0" >"$WORK/cmdline-openrc"
fi

for init in $INITS; do
    rootfs="$WORK/rootfs-$init"
    out="$WORK/out/$init"
    mkdir -p "$out"
    log "$init: slimming and writing disk.img"
    in_chroot "$rootfs" apt-get clean
    rm -f "$rootfs/usr/sbin/policy-rc.d"
    : >"$rootfs/etc/resolv.conf" # the build host's resolver means nothing in the guest
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
        "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
        "$rootfs"/usr/share/locale/* "$rootfs"/var/log/*.log "$rootfs"/tmp/*
    cp "$rootfs"/boot/vmlinuz-* "$out/vmlinuz"
    cp "$rootfs"/boot/initrd.img-* "$out/initrd.img"
    cp "$rootfs/etc/ssh/ssh_host_ed25519_key.pub" "$out/host_ed25519.pub"
    cp "$WORK/id_ed25519" "$WORK/id_ed25519.pub" "$out/"
    cp "$WORK/cmdline-$init" "$out/cmdline"
    mkfs.ext4 -q -F -L root -d "$rootfs" "$out/disk.img" 2G
    chmod 444 "$out/disk.img"
    rm -rf "$rootfs"
done

mv "$WORK/out" "$FINAL"
# Images of this suite from older versions of this script (and bookworm's from before the
# suite was in the name): delete those unused for an hour and not open in any process (a test
# run of an older checkout may still be booting them).
for old in "$CACHE/$SUITE"-* $([ "$SUITE" = bookworm ] && echo "$CACHE"/????????????????); do
    [ "$old" != "$FINAL" ] && [ -d "$old" ] || continue
    [ -n "$(find "$old" -maxdepth 0 -mmin +60)" ] || continue
    [ -z "$(find /proc/[0-9]*/fd -lname "$old/*" 2>/dev/null | head -n 1)" ] || continue
    log "removing the unused image of an older version: $old"
    rm -rf "$old"
done
log "done: $FINAL"
du -sh --apparent-size "$FINAL"/*/disk.img >&2
du -sh "$FINAL"/*/disk.img >&2
done_exit
