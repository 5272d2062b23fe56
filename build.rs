//! Build probe: bobine supports Linux on x86_64 and aarch64 only.
//!
//! Emits `bobine_supported` plus one `bobine_arch_*` cfg for the target; on any other target the
//! crate refuses to compile with a `compile_error!` naming the target (see `src/lib.rs`).

fn main() {
    println!("cargo::rustc-check-cfg=cfg(bobine_supported)");
    println!("cargo::rustc-check-cfg=cfg(bobine_arch_x86_64)");
    println!("cargo::rustc-check-cfg=cfg(bobine_arch_aarch64)");
    println!("cargo::rerun-if-changed=build.rs");

    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    if os != "linux" {
        return;
    }
    match arch.as_str() {
        "x86_64" => println!("cargo::rustc-cfg=bobine_arch_x86_64"),
        "aarch64" => println!("cargo::rustc-cfg=bobine_arch_aarch64"),
        _ => return,
    }
    println!("cargo::rustc-cfg=bobine_supported");
}
