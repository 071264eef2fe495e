//! Sets two cfg aliases, so that the sources say once what the features mean:
//! `inner_glibc` when the `glibc` feature is on and the target's malloc is
//! glibc's (Linux, gnu), and `inner_stats` when any inner-allocator feature
//! compiles a source of figures in (`jemalloc`, `mimalloc`, or `inner_glibc`).

fn main() {
    println!("cargo::rustc-check-cfg=cfg(inner_stats)");
    println!("cargo::rustc-check-cfg=cfg(inner_glibc)");
    let feature = |name: &str| std::env::var_os(format!("CARGO_FEATURE_{name}")).is_some();
    let target = |key: &str| std::env::var(format!("CARGO_CFG_TARGET_{key}")).unwrap_or_default();
    let glibc = feature("GLIBC") && target("OS") == "linux" && target("ENV") == "gnu";
    if glibc {
        println!("cargo::rustc-cfg=inner_glibc");
    }
    if glibc || feature("JEMALLOC") || feature("MIMALLOC") {
        println!("cargo::rustc-cfg=inner_stats");
    }
}
