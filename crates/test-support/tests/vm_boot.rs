//! The test servers themselves: each image boots under QEMU, its init system comes up clean,
//! root and the sudo user `admin` log in with the test key, the host key on record is the
//! one the guest serves, and a reboot comes back on the same disk.
//!
//! Boots real VMs (a minute or two each without KVM); built with `BLARGH_SKIP_VM_TESTS=1`
//! they show as ignored.

use std::io;
use std::time::{Duration, Instant};

use test_support::vm::{self, Init, Vm};

#[test]
#[cfg_attr(blargh_skip_vm_tests, ignore = "BLARGH_SKIP_VM_TESTS=1: boots a VM")]
fn systemd_vm_boots_and_reboots() -> io::Result<()> {
    let _one = vm::one_at_a_time();
    let vm = boot(Init::Systemd)?;

    let state = vm.ssh_ok("systemctl is-system-running --wait || true")?;
    if state.trim() != "running" {
        let failed = vm.ssh_ok(
            "systemctl --failed --no-legend; journalctl -b -p warning --no-pager | tail -n 30",
        )?;
        panic!("systemd is {:?}, not running:\n{failed}", state.trim());
    }
    assert_eq!(vm.ssh_ok("cat /proc/1/comm")?.trim(), "systemd");
    common_checks(&vm)?;

    reboot(&vm)?;
    let state = vm.ssh_ok("systemctl is-system-running --wait || true")?;
    assert_eq!(state.trim(), "running", "after the reboot");
    Ok(())
}

#[test]
#[cfg_attr(blargh_skip_vm_tests, ignore = "BLARGH_SKIP_VM_TESTS=1: boots a VM")]
fn openrc_vm_boots_and_reboots() -> io::Result<()> {
    let _one = vm::one_at_a_time();
    let vm = boot(Init::OpenRc)?;

    assert_eq!(vm.ssh_ok("cat /proc/1/comm")?.trim(), "init");
    let status = vm.ssh_ok("rc-status default")?;
    assert!(
        status.contains("ssh") && status.contains("started"),
        "rc-status: {status}"
    );
    assert!(
        vm.ssh_ok("test ! -d /run/systemd/system && echo no-systemd")?
            .contains("no-systemd"),
        "systemd is not running on the OpenRC image"
    );
    common_checks(&vm)?;

    reboot(&vm)?;
    assert_eq!(vm.ssh_ok("cat /proc/1/comm")?.trim(), "init");
    vm.ssh_ok("rc-status default")?;
    Ok(())
}

fn boot(init: Init) -> io::Result<Vm> {
    // Build the image (if needed) outside the boot timing.
    let started = Instant::now();
    let image = vm::ensure_image(init)?;
    eprintln!(
        "{init}: image {} ready after {:.1?}",
        image.dir.display(),
        started.elapsed()
    );
    let vm = Vm::boot(init)?;
    eprintln!(
        "{init}: boot to ssh took {:.1?} (ssh on 127.0.0.1:{})",
        vm.boot_duration(),
        vm.ssh_port()
    );
    Ok(vm)
}

fn common_checks(vm: &Vm) -> io::Result<()> {
    // The sudo user: logs in with the same key, sudo works without a password.
    assert_eq!(vm.ssh_ok_as("admin", "id -un")?.trim(), "admin");
    assert_eq!(vm.ssh_ok_as("admin", "sudo -n id -u")?.trim(), "0");
    let out = vm.ssh_as("admin", "sudo -n true")?;
    assert!(
        out.status.success(),
        "sudo -n true as admin: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The host key on record is the one the guest serves.
    let served = vm.ssh_ok("cat /etc/ssh/ssh_host_ed25519_key.pub")?;
    assert_eq!(served.trim(), vm.host_key()?);
    let line = vm.known_hosts_line()?;
    assert!(line.starts_with(&format!("[127.0.0.1]:{} ssh-ed25519 ", vm.ssh_port())));

    // Strict host key checking against that line connects.
    let known_hosts = vm.dir().join("known_hosts");
    std::fs::write(&known_hosts, format!("{line}\n"))?;
    let mut strict = std::process::Command::new("ssh");
    let mut args = vm.ssh_args("root");
    for arg in args.iter_mut() {
        if arg == "StrictHostKeyChecking=no" {
            *arg = "StrictHostKeyChecking=yes".into();
        } else if arg == "UserKnownHostsFile=/dev/null" {
            *arg = format!("UserKnownHostsFile={}", known_hosts.display());
        }
    }
    let out = strict.args(&args).arg("true").output()?;
    assert!(
        out.status.success(),
        "ssh with the recorded host key: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Guest port 80 is forwarded to a host port (nothing listens there yet).
    assert_ne!(vm.http_port(80), vm.http_port(8080));
    Ok(())
}

fn reboot(vm: &Vm) -> io::Result<()> {
    let before = vm.boot_id()?;
    vm.ssh_ok("echo survives > /root/marker")?;
    let took = vm.reboot_and_wait()?;
    eprintln!("{}: reboot back to ssh took {took:.1?}", vm.init());
    assert_ne!(vm.boot_id()?, before, "a new boot");
    assert_eq!(
        vm.ssh_ok("cat /root/marker")?.trim(),
        "survives",
        "same disk"
    );
    assert!(took < Duration::from_secs(600));
    Ok(())
}
