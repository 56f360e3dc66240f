//! The `dpdk` feature's build step: finds the system DPDK (22.11, Debian's
//! libdpdk-dev) with pkg-config, compiles the C shim over its `static inline`
//! fast path (dpdk/shim.c), generates Rust bindings for the items the backend
//! calls into `$OUT_DIR/dpdk_bindings.rs`, and links the `librte_*` shared
//! libraries. The poll-mode drivers are not linked: the shared EAL loads them
//! at `rte_eal_init` from its plugin directory (Debian:
//! /usr/lib/x86_64-linux-gnu/dpdk/pmds-23.0), and `-d PATH` in the EAL
//! arguments adds others.
//!
//! Debian's libdpdk.pc asks for `-march=corei7`; a `-march=native` from a
//! locally built DPDK would tie the binary to the build machine. Every
//! `-march`/`-mtune`/`-mcpu` flag is dropped, and on x86_64 the shim is built
//! for `x86-64-v2` (SSE4.2 and POPCNT, what corei7 means and the least the
//! DPDK headers' inline code and Debian's libraries assume), or for
//! `$TEPHRA_DPDK_MARCH` when that is set.

use std::{env, path::PathBuf, process::Command};

/// The DPDK release the bindings and the shim are written against.
const DPDK_VERSION: &str = "22.11";
const SHIM_SOURCE: &str = "dpdk/shim.c";
const SHIM_HEADER: &str = "dpdk/shim.h";
const MARCH_ENV: &str = "TEPHRA_DPDK_MARCH";
const X86_64_BASELINE: &str = "x86-64-v2";

/// The DPDK functions the backend calls (the shim's own are matched by prefix).
const FUNCTIONS: &[&str] = &[
    "rte_eal_init",
    "rte_eal_cleanup",
    "rte_strerror",
    "rte_eth_dev_count_avail",
    "rte_eth_dev_is_valid_port",
    "rte_eth_dev_configure",
    "rte_eth_dev_adjust_nb_rx_tx_desc",
    "rte_eth_rx_queue_setup",
    "rte_eth_tx_queue_setup",
    "rte_eth_dev_start",
    "rte_eth_dev_stop",
    "rte_eth_dev_close",
    "rte_eth_dev_socket_id",
    "rte_eth_macaddr_get",
    "rte_eth_promiscuous_enable",
    "rte_eth_stats_get",
    "rte_eth_tx_done_cleanup",
    "rte_pktmbuf_pool_create",
    "rte_mempool_free",
    "rte_mempool_avail_count",
];
const TYPES: &[&str] = &["rte_mbuf", "rte_mempool", "rte_eth_conf", "rte_ether_addr", "rte_eth_stats"];
/// Types only ever handled by pointer: their layout (cache-aligned, bitfields,
/// unions) is DPDK's business, reached through the shim.
const OPAQUE_TYPES: &[&str] = &["rte_mbuf", "rte_mempool"];
const VARS: &[&str] = &["RTE_MEMPOOL_CACHE_MAX_SIZE", "RTE_MAX_ETHPORTS", "RTE_ETHER_ADDR_LEN"];

pub fn build() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    println!("cargo:rerun-if-changed={SHIM_SOURCE}");
    println!("cargo:rerun-if-changed={SHIM_HEADER}");
    println!("cargo:rerun-if-env-changed={MARCH_ENV}");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_LIBDIR");

    let version = pkg_config(&["--modversion"]);
    if !version.trim().starts_with(DPDK_VERSION) {
        println!(
            "cargo:warning=tephra's DPDK bindings are written for DPDK {DPDK_VERSION}; pkg-config found libdpdk {}",
            version.trim()
        );
    }
    let cflags = portable_cflags(&pkg_config(&["--cflags"]));

    // The shim: DPDK's static inline functions as symbols.
    let mut shim = cc::Build::new();
    shim.file(manifest_dir.join(SHIM_SOURCE)).opt_level(2).warnings(true).extra_warnings(true);
    for flag in &cflags {
        shim.flag(flag);
    }
    if let Some(march) = march() {
        shim.flag(format!("-march={march}"));
    }
    shim.compile("tephra_dpdk_shim");

    // The bindings: only what the backend uses, and the types they need.
    let mut bindings = bindgen::Builder::default()
        .header(manifest_dir.join(SHIM_HEADER).to_string_lossy())
        .clang_args(&cflags)
        .clang_args(march().map(|march| format!("-march={march}")))
        .allowlist_function("tephra_dpdk_.*")
        .derive_default(true)
        .derive_debug(true)
        .generate_comments(false)
        .default_enum_style(bindgen::EnumVariation::Consts)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()));
    for function in FUNCTIONS {
        bindings = bindings.allowlist_function(function);
    }
    for ty in TYPES {
        bindings = bindings.allowlist_type(ty);
    }
    for ty in OPAQUE_TYPES {
        // Opaque, but bindgen still emits their anonymous inner unions: drop those.
        bindings = bindings.opaque_type(ty).blocklist_type(format!("{ty}__bindgen_ty_.*"));
    }
    bindings = bindings.blocklist_type("rte_mbuf_sched");
    for var in VARS {
        bindings = bindings.allowlist_var(var);
    }
    bindings
        .generate()
        .unwrap_or_else(|error| panic!("bindgen failed on {SHIM_HEADER} (is libclang-dev installed?): {error}"))
        .write_to_file(out_dir.join("dpdk_bindings.rs"))
        .expect("write the DPDK bindings to OUT_DIR");

    // The shared librte_* libraries; rustc links with --as-needed, so only
    // the ones the shim and the backend reference end up as dependencies.
    for flag in pkg_config(&["--libs"]).split_whitespace() {
        if let Some(dir) = flag.strip_prefix("-L") {
            println!("cargo:rustc-link-search=native={dir}");
        } else if let Some(lib) = flag.strip_prefix("-l") {
            println!("cargo:rustc-link-lib=dylib={lib}");
        }
        // -Wl,--as-needed is rustc's default already.
    }
}

/// `pkg-config ARGS libdpdk`, or a build failure that says what to install.
fn pkg_config(args: &[&str]) -> String {
    let output = Command::new(env::var("PKG_CONFIG").unwrap_or_else(|_| "pkg-config".into()))
        .args(args)
        .arg("libdpdk")
        .output()
        .unwrap_or_else(|error| panic!("the `dpdk` feature needs pkg-config: {error}"));
    assert!(
        output.status.success(),
        "pkg-config {} libdpdk failed (install DPDK {DPDK_VERSION}: apt-get install libdpdk-dev): {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr).trim()
    );
    String::from_utf8(output.stdout).expect("pkg-config prints UTF-8")
}

/// The pkg-config cflags without the CPU-tuning flags (`-include FILE` stays
/// one pair of arguments).
fn portable_cflags(cflags: &str) -> Vec<String> {
    cflags
        .split_whitespace()
        .filter(|flag| !["-march=", "-mtune=", "-mcpu="].iter().any(|prefix| flag.starts_with(prefix)))
        .map(str::to_owned)
        .collect()
}

/// The `-march` to build the shim for: the override, else x86_64's baseline.
fn march() -> Option<String> {
    match env::var(MARCH_ENV) {
        Ok(march) if !march.is_empty() => Some(march),
        _ => (env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("x86_64")).then(|| X86_64_BASELINE.to_owned()),
    }
}
