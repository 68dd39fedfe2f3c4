//! When the guest stops in a way no program should cause, vmrun ends the
//! run with a clear report instead of hanging: a guest kernel panic carries
//! its message, an unexpected VM exit carries a register dump. These drive
//! the `vmm` library directly and damage guest memory before the first
//! instruction.

mod common;

use common::*;
use vmm::hypercall::Outcome;
use vmm::stdio::Discard;
use vmm::vm::{RunEnd, Vm, VmConfig};
use vmrun_contract::layout::{BOOT_INFO_PHYS, KERNEL_TEXT_PHYS};

fn vm_for(program: &str) -> Vm {
    Vm::new(&VmConfig::for_program(image(program))).expect("create the VM")
}

#[test]
fn corrupt_boot_info_makes_the_guest_kernel_panic_with_its_message() {
    if !require_kvm() {
        return;
    }
    let mut vm = vm_for("hello_raw");
    vm.ram().write_bytes(BOOT_INFO_PHYS, &[0xff; 8]).unwrap();
    let report = vm.run(&mut Discard::default()).unwrap();
    match report.outcome {
        RunEnd::Guest(Outcome::GuestPanic(msg)) => assert!(msg.contains("magic"), "{msg}"),
        other => panic!("expected a guest panic, got {other:?}"),
    }
}

#[test]
fn halting_kernel_ends_the_run_with_a_register_dump() {
    if !require_kvm() {
        return;
    }
    let mut vm = vm_for("hello_raw");
    vm.ram()
        .write_bytes(KERNEL_TEXT_PHYS, &[0xfa, 0xf4])
        .unwrap(); // cli; hlt
    let report = vm.run(&mut Discard::default()).unwrap();
    match report.outcome {
        RunEnd::VmFailure(dump) => {
            assert!(dump.contains("halted"), "{dump}");
            assert!(dump.contains("rip 0xffffffff80200002"), "{dump}");
        }
        other => panic!("expected a VM failure, got {other:?}"),
    }
}

#[test]
fn fault_before_the_idt_exists_is_reported_as_a_triple_fault() {
    if !require_kvm() {
        return;
    }
    let mut vm = vm_for("hello_raw");
    vm.ram()
        .write_bytes(KERNEL_TEXT_PHYS, &[0x0f, 0x0b])
        .unwrap(); // ud2
    let report = vm.run(&mut Discard::default()).unwrap();
    match report.outcome {
        RunEnd::VmFailure(dump) => assert!(dump.contains("triple fault"), "{dump}"),
        other => panic!("expected a VM failure, got {other:?}"),
    }
}

#[test]
fn too_small_guest_memory_exits_125_naming_the_option() {
    let output = vmrun(["--mem", "8M", "/bin/true"]);
    assert_status(&output, 125);
    assert_stderr_contains(&output, "--mem");
}
