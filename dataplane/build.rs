//! Compiles the XDP program (bpf/tephra_xdp.c) with clang for the `af_xdp`
//! backend, and, with the `dpdk` feature, the DPDK shim and its bindings.

#[cfg(feature = "dpdk")]
#[path = "build_dpdk.rs"]
mod dpdk;

use std::{env, path::PathBuf, process::Command};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    println!("cargo:rerun-if-changed=bpf/tephra_xdp.c");
    let object = out.join("tephra_xdp.o");
    // asm/types.h lives under the multiarch include directory on Debian.
    let multiarch = format!("/usr/include/{}-linux-gnu", env::var("CARGO_CFG_TARGET_ARCH").expect("cargo sets it"));
    let status = Command::new("clang")
        .args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror", "-I", &multiarch, "-c", "bpf/tephra_xdp.c", "-o"])
        .arg(&object)
        .status()
        .unwrap_or_else(|error| panic!("clang is needed to build the XDP program (apt install clang): {error}"));
    assert!(status.success(), "clang failed on bpf/tephra_xdp.c (needs libbpf-dev for bpf/bpf_helpers.h)");
    #[cfg(feature = "dpdk")]
    dpdk::build();
}
