//! The address-space layout exec builds, read from the VMAs the guest
//! exports at exec: fixed and Linux-like by default (a PIE at
//! 0x555555554000, the stack ending at 0x7ffffffff000), randomised with
//! `--aslr`.

mod common;

use common::*;
use vmm::stdio::Discard;
use vmm::vm::{Event, Observe, Vm, VmConfig};
use vmrun_contract::{vma_flags, VmaRecord};

/// The VMAs of `program` right after exec.
fn vmas_at_exec(program: &str, aslr: bool) -> Vec<VmaRecord> {
    let config = VmConfig {
        env: vec!["A=1".into()],
        aslr,
        observe: Observe {
            stop_at_exec_exit: true,
            ..Default::default()
        },
        ..VmConfig::for_program(image(program))
    };
    let mut vm = Vm::new(&config).expect("create the VM");
    match vm
        .resume(&mut Discard::default(), &mut |_| {})
        .expect("run to exec")
    {
        Event::Exec { .. } => {}
        other => panic!("expected the exec event, got {other:?}"),
    }
    let export = vm.vma_export().expect("read the exported VMAs");
    export.vmas[..export.count as usize].to_vec()
}

fn stack(vmas: &[VmaRecord]) -> VmaRecord {
    *vmas
        .iter()
        .find(|v| v.flags & vma_flags::GROWSDOWN != 0)
        .expect("a stack VMA")
}

#[test]
fn pie_and_stack_sit_at_linux_addresses_without_aslr() {
    if !require_kvm() {
        return;
    }
    let a = vmas_at_exec("hello_pie", false);
    assert_eq!(a[0].start, 0x5555_5555_4000);
    assert_eq!(stack(&a).end, 0x7fff_ffff_f000);
    assert_eq!(
        a,
        vmas_at_exec("hello_pie", false),
        "the fixed layout is reproducible"
    );
}

#[test]
fn aslr_moves_the_pie_and_the_stack_between_runs() {
    if !require_kvm() {
        return;
    }
    let a = vmas_at_exec("hello_pie", true);
    let b = vmas_at_exec("hello_pie", true);
    assert_ne!(a[0].start, 0x5555_5555_4000);
    assert_ne!(stack(&a).end, 0x7fff_ffff_f000);
    assert!(stack(&a).end <= 0x7fff_ffff_f000);
    assert_ne!((a[0].start, stack(&a).end), (b[0].start, stack(&b).end));
}

#[test]
fn aslr_keeps_an_et_exec_program_at_its_link_address() {
    if !require_kvm() {
        return;
    }
    let a = vmas_at_exec("hello_static", true);
    assert_eq!(a[0].start, 0x40_0000);
}
