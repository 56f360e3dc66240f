#!/usr/bin/env bash
# The system packages that build the appliance image and boot it in QEMU
# (image/README.md), installed when missing (root, apt). Sourced by
# scripts/test.sh; image/build.sh needs the first line only.
#   mmdebstrap (the Debian root), erofs-utils, cryptsetup-bin (veritysetup),
#   dosfstools and mtools (the ESP, unmounted), fdisk (sfdisk), binutils
#   (objcopy: the unified kernel image), openssh-client (the test's operator);
#   qemu-system-x86 and ovmf (the boot test, TCG and UEFI).
image_packages=(mmdebstrap erofs-utils cryptsetup-bin dosfstools mtools fdisk binutils openssh-client ovmf)
image_missing=()
for package in "${image_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || image_missing+=("$package")
done
# QEMU from bookworm-backports: bookworm's own qemu-system-x86 would remove
# the machine's backported qemu-utils (it pins qemu-system-common to 7.2).
if ! command -v qemu-system-x86_64 >/dev/null; then
  if [ ! -f /etc/apt/sources.list.d/bookworm-backports.list ]; then
    echo 'deb http://deb.debian.org/debian bookworm-backports main' > /etc/apt/sources.list.d/bookworm-backports.list
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends -t bookworm-backports qemu-system-x86
fi
if [ "${#image_missing[@]}" -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${image_missing[@]}"
fi
