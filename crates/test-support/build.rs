//! Sets `cfg(blargh_skip_vm_tests)` under BLARGH_SKIP_VM_TESTS=1 (see vm_skip_cfg.rs).

include!("vm_skip_cfg.rs");

fn main() {
    println!("cargo::rerun-if-changed=vm_skip_cfg.rs");
    emit_vm_skip_cfg();
}
