// Shared by the build scripts of the packages whose tests boot VMs (test-support and
// cargo-blargh, through `include!`): sets `cfg(blargh_skip_vm_tests)` when the build runs
// with BLARGH_SKIP_VM_TESTS=1, so those tests carry
// `#[cfg_attr(blargh_skip_vm_tests, ignore = "…")]` and show as ignored, not passed.
// Cargo reruns the script (and rebuilds the package) when the variable changes.

/// Prints the cargo directives for `cfg(blargh_skip_vm_tests)`.
fn emit_vm_skip_cfg() {
    println!("cargo::rustc-check-cfg=cfg(blargh_skip_vm_tests)");
    println!("cargo::rerun-if-env-changed=BLARGH_SKIP_VM_TESTS");
    if std::env::var("BLARGH_SKIP_VM_TESTS").is_ok_and(|v| v == "1") {
        println!("cargo::rustc-cfg=blargh_skip_vm_tests");
    }
}
