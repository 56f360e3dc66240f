#!/usr/bin/env bash
# Builds the appliance (image/README.md):
#   OUT/tephra-<version>.raw     a GPT disk to flash: the ESP (systemd-boot and
#                                one unified kernel image), root slot a (erofs)
#                                and its dm-verity hash partition, an empty slot b
#   OUT/tephra-<version>.update  the same root and kernel image as an update
#                                bundle for `tephra update apply`
#
# image/build.sh [--version V] [--tephra BINARY] [--out DIR] [--authorized-keys FILE] [--ready-wait-s N]
#   --version          the image version (default: the workspace's)
#   --tephra           the binary to ship (default: target/release/tephra, built
#                      with the yubihsm-usb feature)
#   --authorized-keys  SSH keys for root; without them the image has no login
#   --ready-wait-s     how long a boot waits for tephra to answer ready before
#                      it counts as failed (default 180)
#
# Root, with mmdebstrap, erofs-utils, cryptsetup-bin, dosfstools, mtools,
# fdisk and binutils (scripts/image-deps.sh). The Debian base (packages,
# initramfs) is cached in image/cache by the hash of what goes into it, so a
# second build of another version takes seconds.
set -euo pipefail
self="$(realpath "$0")"
cd "$(dirname "$self")/.."

version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)"
tephra=""
out=image/out
keys=""
ready_wait_s=180
while [ $# -gt 0 ]; do
  case "$1" in
    --version) version="$2"; shift 2 ;;
    --tephra) tephra="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --authorized-keys) keys="$2"; shift 2 ;;
    --ready-wait-s) ready_wait_s="$2"; shift 2 ;;
    *) echo "image/build.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
# systemd-boot orders images by version, and `tephra update apply` by the
# same rule: numbers separated by dots.
if ! [[ "$version" =~ ^[0-9]+(\.[0-9]+)*$ ]]; then
  echo "image/build.sh: version $version: dot-separated numbers only (1.2.3)" >&2
  exit 2
fi
if ! [[ "$ready_wait_s" =~ ^[0-9]+$ ]] || [ "$ready_wait_s" -lt 10 ] || [ "$ready_wait_s" -gt 3600 ]; then
  echo "image/build.sh: --ready-wait-s $ready_wait_s: 10 to 3600 seconds" >&2
  exit 2
fi
if [ -z "$tephra" ]; then
  # With the YubiHSM 2 USB connector (libusb), for an HSM plugged into the server.
  cargo build --release --locked -p tephra-cli --features yubihsm-usb
  tephra=target/release/tephra
fi

# Partition sizes (MiB). A root slot holds any later image's root: keep room.
esp_mib=256
root_mib=1024
verity_mib=64

# The Debian base: systemd, the kernel with an initramfs that opens the root
# through dm-verity, tephra's runtime libraries, sshd for operators.
suite=bookworm
packages=(systemd systemd-sysv systemd-boot udev dbus kmod linux-image-amd64 initramfs-tools busybox
  cryptsetup-bin fdisk e2fsprogs openssh-server libhwloc15 libelf1 zlib1g libudev1 libusb-1.0-0 iproute2 ethtool)
# Kernel modules a sequencer never loads.
unused_modules=(sound drivers/gpu drivers/media drivers/net/wireless drivers/staging drivers/infiniband
  drivers/bluetooth drivers/iio drivers/isdn net/wireless net/bluetooth net/mac80211)
# The tephra user's id is fixed: the data partition keeps what it owns
# across images, whatever else a later base installs.
tephra_uid=990
cache="${TEPHRA_IMAGE_CACHE:-image/cache}"
mkdir -p "$cache" "$out"
base_key="$( (echo "$suite ${packages[*]} ${unused_modules[*]} uid $tephra_uid"; sed -n '/^# BASE-BEGIN/,/^# BASE-END/p' "$self";
  cat image/initramfs/hooks/* image/initramfs/scripts/local-top/*) | sha256sum | cut -c1-16)"
base="$cache/base-$base_key.tar"
# BASE-BEGIN (the base's cache key covers these lines)
if [ ! -f "$base" ]; then
  echo "image: building the Debian base ($suite) into $base"
  rm -f "$cache"/base-*.tar
  modules_cleanup="for m in ${unused_modules[*]}; do rm -rf \"\$1\"/usr/lib/modules/*/kernel/\$m; done"
  mmdebstrap --variant=minbase --mode=root --format=tar --include="$(IFS=,; echo "${packages[*]}")" \
    --customize-hook='copy-in image/initramfs/hooks/tephra-verity /etc/initramfs-tools/hooks' \
    --customize-hook='copy-in image/initramfs/scripts/local-top/tephra-verity /etc/initramfs-tools/scripts/local-top' \
    --customize-hook="$modules_cleanup" \
    --customize-hook='chroot "$1" sh -c "depmod -a \$(ls /usr/lib/modules) && update-initramfs -u -k all"' \
    --customize-hook="chroot \"\$1\" sh -c 'groupadd --system --gid $tephra_uid tephra && useradd --system --uid $tephra_uid --gid $tephra_uid --home-dir /var/lib/tephra --no-create-home --shell /usr/sbin/nologin tephra'" \
    --customize-hook='rm -f "$1"/etc/ssh/ssh_host_* "$1"/etc/systemd/system/timers.target.wants/*' \
    "$suite" "$base.partial"
  mv "$base.partial" "$base"
fi
# BASE-END

work="$(mktemp -d "$out/build.XXXXXX")"
trap 'rm -rf "$work"' EXIT
rootfs="$work/rootfs"
mkdir "$rootfs"
tar -C "$rootfs" --numeric-owner -xpf "$base"

# The kernel and initramfs go into the unified kernel image, not the root.
mv "$rootfs"/boot/vmlinuz-* "$work/vmlinuz"
mv "$rootfs"/boot/initrd.img-* "$work/initrd"
rm -rf "${rootfs:?}"/boot/*

# tephra, its units, the image's own files.
if head -c 4 "$tephra" | grep -q ELF; then
  objcopy --strip-debug "$tephra" "$rootfs/usr/bin/tephra"
else
  install -m 0755 "$tephra" "$rootfs/usr/bin/tephra"
fi
cp -a image/rootfs/. "$rootfs/"
healthy="$rootfs/usr/lib/systemd/system/tephra-healthy.service"
sed -i "s/--wait-s 180\$/--wait-s $ready_wait_s/; s/^TimeoutStartSec=200s\$/TimeoutStartSec=$((ready_wait_s + 20))s/" "$healthy"
grep -q -- "--wait-s $ready_wait_s\$" "$healthy" || { echo "image/build.sh: $healthy lost its --wait-s" >&2; exit 1; }
install -m 0644 systemd/*.service "$rootfs/usr/lib/systemd/system/"
mkdir -p "$rootfs/efi"
mkdir -p -m 0700 "$rootfs/etc/ssh/authorized_keys"
if [ -n "$keys" ]; then
  install -m 0600 "$keys" "$rootfs/etc/ssh/authorized_keys/root"
fi
cat > "$rootfs/usr/lib/os-release" <<EOF
NAME="tephra"
ID=tephra
ID_LIKE=debian
PRETTY_NAME="tephra $version"
VERSION_ID="$version"
IMAGE_ID=tephra
IMAGE_VERSION=$version
HOME_URL="https://github.com/tephra-sequencer/tephra"
EOF
ln -sf ../usr/lib/os-release "$rootfs/etc/os-release"
echo "LANG=C.UTF-8" > "$rootfs/etc/default/locale"
# /etc/machine-id stays empty on the read-only root: systemd makes one per boot.
: > "$rootfs/etc/machine-id"
chroot "$rootfs" systemctl --quiet enable tephra.service tephra-configure.service tephra-healthy.service \
  tephra-data-partition.service systemd-networkd.service ssh.service
# No console login, no waiting for a network that may not have a DHCP server.
chroot "$rootfs" systemctl --quiet mask getty.target systemd-networkd-wait-online.service

# The root: erofs, then its dm-verity hash tree and root hash.
mkfs.erofs -zlz4hc -T 0 "$work/root.img" "$rootfs" >/dev/null
veritysetup format "$work/root.img" "$work/root.verity" --root-hash-file="$work/roothash" >/dev/null
roothash="$(cat "$work/roothash")"
root_bytes="$(stat -c %s "$work/root.img")"
verity_bytes="$(stat -c %s "$work/root.verity")"
[ "$root_bytes" -le $((root_mib * 1048576)) ] || { echo "image: root of $root_bytes bytes exceeds the slot" >&2; exit 1; }
[ "$verity_bytes" -le $((verity_mib * 1048576)) ] || { echo "image: verity of $verity_bytes bytes exceeds its partition" >&2; exit 1; }

# The unified kernel image: systemd's stub, os-release (systemd-boot sorts
# by its version), the command line binding this root hash, kernel, initrd.
printf '%s' "root=/dev/mapper/root rootfstype=erofs ro tephra.roothash=$roothash systemd.gpt_auto=0 console=tty0 console=ttyS0,115200 panic=5" \
  > "$work/cmdline"
objcopy \
  --add-section .osrel="$rootfs/usr/lib/os-release" --change-section-vma .osrel=0x20000 \
  --add-section .cmdline="$work/cmdline" --change-section-vma .cmdline=0x30000 \
  --add-section .linux="$work/vmlinuz" --change-section-vma .linux=0x2000000 \
  --add-section .initrd="$work/initrd" --change-section-vma .initrd=0x3000000 \
  "$rootfs/usr/lib/systemd/boot/efi/linuxx64.efi.stub" "$work/tephra.efi"

# The ESP, without mounting anything: mkfs.vfat and mtools.
esp="$work/esp.img"
mkfs.vfat -C -F 32 -n TEPHRA-ESP "$esp" $((esp_mib * 1024)) >/dev/null
mmd -i "$esp" ::/EFI ::/EFI/BOOT ::/EFI/systemd ::/EFI/Linux ::/loader
mcopy -i "$esp" "$rootfs/usr/lib/systemd/boot/efi/systemd-bootx64.efi" ::/EFI/BOOT/BOOTX64.EFI
mcopy -i "$esp" "$rootfs/usr/lib/systemd/boot/efi/systemd-bootx64.efi" ::/EFI/systemd/systemd-bootx64.efi
printf 'timeout 0\neditor no\n' > "$work/loader.conf"
mcopy -i "$esp" "$work/loader.conf" ::/loader/loader.conf
mcopy -i "$esp" "$work/tephra.efi" "::/EFI/Linux/tephra-$version.efi"

# The disk: slot a's partition UUIDs are the halves of its root hash, which
# is how the initramfs finds them (image/src/disk.rs).
uuid() { echo "$1" | sed 's/^\(.\{8\}\)\(.\{4\}\)\(.\{4\}\)\(.\{4\}\)\(.\{12\}\)$/\1-\2-\3-\4-\5/'; }
root_type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709
verity_type=2C7357ED-EBD2-46D9-AEC1-23D437EC2BF5
raw="$out/tephra-$version.raw"
rm -f "$raw"
truncate -s $(( (2 + esp_mib + 2 * (root_mib + verity_mib)) * 1048576 )) "$raw"
sfdisk --quiet "$raw" <<EOF
label: gpt
start=1MiB, size=${esp_mib}MiB, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=tephra-esp
size=${root_mib}MiB, type=$root_type, name=tephra-root-a, uuid=$(uuid "${roothash:0:32}")
size=${verity_mib}MiB, type=$verity_type, name=tephra-verity-a, uuid=$(uuid "${roothash:32:32}")
size=${root_mib}MiB, type=$root_type, name=tephra-root-b
size=${verity_mib}MiB, type=$verity_type, name=tephra-verity-b
EOF
dd if="$esp" of="$raw" bs=1M seek=1 conv=notrunc,sparse status=none
dd if="$work/root.img" of="$raw" bs=1M seek=$((1 + esp_mib)) conv=notrunc,sparse status=none
dd if="$work/root.verity" of="$raw" bs=1M seek=$((1 + esp_mib + root_mib)) conv=notrunc,sparse status=none

# The update bundle (image/src/bundle.rs).
member() { printf '{"bytes": %s, "sha256": "%s"}' "$(stat -c %s "$1")" "$(sha256sum "$1" | cut -d' ' -f1)"; }
cat > "$work/manifest.json" <<EOF
{"format": 1, "version": "$version", "roothash": "$roothash",
 "root": $(member "$work/root.img"),
 "verity": $(member "$work/root.verity"),
 "uki": $(member "$work/tephra.efi")}
EOF
tar --format=gnu -C "$work" -cf "$out/tephra-$version.update" manifest.json root.img root.verity tephra.efi

echo "image: $raw ($(du -h --apparent-size "$raw" | cut -f1) sparse, $(du -h "$raw" | cut -f1) used)"
echo "image: $out/tephra-$version.update ($(du -h "$out/tephra-$version.update" | cut -f1))"
echo "image: root $root_bytes bytes, kernel image $(stat -c %s "$work/tephra.efi") bytes, roothash $roothash"
