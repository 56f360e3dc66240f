#!/usr/bin/env bash
# The system packages tephra builds and runs with, installed when missing
# (root, apt). Sourced by scripts/run.sh and scripts/test.sh.
#   hwloc (topology), libxdp/libbpf and clang (AF_XDP and its XDP program),
#   DPDK 22.11 and libclang (the dpdk feature's bindings), ethtool, iproute2;
#   SoftHSM2 and opensc (the PKCS#11 tests), libusb (the YubiHSM USB connector),
#   fuse3 and python3-fusepy (the slow-disk test's FUSE file system);
#   protoc (the etcd client's gRPC bindings), etcd 3.4 (the HA tests' cluster),
#   openssl (their TLS certificates); jq (scripts/test.sh reads cargo's list of
#   test executables).
tephra_packages=(pkg-config clang libclang-dev libhwloc-dev libudev-dev libxdp-dev libbpf-dev
  libdpdk-dev dpdk ethtool iproute2 iputils-ping softhsm2 opensc libusb-1.0-0-dev fuse3 python3-fusepy
  protobuf-compiler etcd-server etcd-client openssl jq)
tephra_missing=()
for package in "${tephra_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || tephra_missing+=("$package")
done
if [ "${#tephra_missing[@]}" -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${tephra_missing[@]}"
fi
