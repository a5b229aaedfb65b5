//! Sets `cfg(blargh_skip_vm_tests)` under BLARGH_SKIP_VM_TESTS=1, so the VM tests in
//! tests/ show as ignored (the logic lives in crates/test-support/vm_skip_cfg.rs).

include!("../test-support/vm_skip_cfg.rs");

fn main() {
    println!("cargo::rerun-if-changed=../test-support/vm_skip_cfg.rs");
    emit_vm_skip_cfg();
}
