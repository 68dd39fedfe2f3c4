//! Opening /dev/kvm, checking what vmrun needs of it, and telling which
//! kind of KVM this host has.

use crate::error::{Error, Result};
use kvm_ioctls::{Cap, Kvm};
use std::fs::OpenOptions;
use std::io::ErrorKind;
use std::os::unix::io::{AsRawFd, FromRawFd, IntoRawFd};

/// The KVM API version vmrun is written against (stable since Linux 2.6.22).
pub const KVM_API_VERSION: i32 = 12;

/// Which kind of virtualisation backs /dev/kvm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Platform {
    /// Intel VMX or AMD SVM: guest ring 0 runs natively.
    Hardware,
    /// kvm_pvm ("Pagetable-based Virtual Machine"): guest ring 0 is emulated
    /// and SYSCALL keeps user memory rights.
    Pvm,
}

impl Platform {
    /// Detect the platform from the host's loaded modules and CPU flags.
    /// A loaded kvm_pvm module decides alone, so /proc/cpuinfo (a few KiB
    /// the kernel formats anew for every read) is read only without it.
    pub fn detect() -> Platform {
        if std::path::Path::new("/sys/module/kvm_pvm").exists() {
            return Platform::Pvm;
        }
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        Self::from_host_facts(&cpuinfo, false)
    }

    /// The decision itself, from /proc/cpuinfo's text and whether the
    /// kvm_pvm module is loaded.
    pub fn from_host_facts(cpuinfo: &str, pvm_module: bool) -> Platform {
        let has_hw = cpuinfo
            .lines()
            .filter(|l| l.starts_with("flags"))
            .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"));
        if pvm_module || !has_hw {
            Platform::Pvm
        } else {
            Platform::Hardware
        }
    }

    /// One line for `vmrun --version`: what the platform means for speed.
    pub fn describe(self) -> &'static str {
        match self {
            Platform::Hardware => {
                "hardware virtualisation (VMX/SVM): guest kernel code runs natively"
            }
            Platform::Pvm => {
                "kvm_pvm (no VMX/SVM): guest kernel code is emulated, about 1 us per \
                 instruction; user code runs natively"
            }
        }
    }
}

/// Open /dev/kvm and check the API version and the capabilities vmrun uses.
pub fn open() -> Result<Kvm> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .map_err(|e| Error::Kvm(open_error_message(e.kind())))?;
    // SAFETY: the fd was just opened on /dev/kvm and is owned by nobody else.
    let kvm = unsafe { Kvm::from_raw_fd(file.into_raw_fd()) };
    check(&kvm)?;
    Ok(kvm)
}

/// A second handle of the same /dev/kvm (a duplicated fd), for another
/// thread's system ioctls; None if the fd cannot be duplicated.
pub fn try_clone(kvm: &Kvm) -> Option<Kvm> {
    // SAFETY: `kvm` owns its open fd for as long as the borrow lasts.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(kvm.as_raw_fd()) };
    let owned = fd.try_clone_to_owned().ok()?;
    // SAFETY: the duplicate was just made and is owned by nobody else.
    Some(unsafe { Kvm::from_raw_fd(owned.into_raw_fd()) })
}

/// The message for a failed open of /dev/kvm, naming the fix.
pub fn open_error_message(kind: ErrorKind) -> String {
    match kind {
        ErrorKind::NotFound => "/dev/kvm does not exist: enable virtualisation and load KVM \
                                (modprobe kvm_intel, kvm_amd or kvm_pvm)"
            .into(),
        ErrorKind::PermissionDenied => "permission denied opening /dev/kvm: add your user to \
                                        the kvm group (sudo usermod -aG kvm $USER) or run as root"
            .into(),
        other => format!("cannot open /dev/kvm: {other}"),
    }
}

fn check(kvm: &Kvm) -> Result<()> {
    let version = kvm.get_api_version();
    if version != KVM_API_VERSION {
        return Err(Error::Kvm(format!(
            "/dev/kvm speaks KVM API version {version}, vmrun needs {KVM_API_VERSION}: \
             use a Linux kernel with standard KVM"
        )));
    }
    for (cap, name) in [
        (Cap::UserMemory, "KVM_CAP_USER_MEMORY"),
        (Cap::ExtCpuid, "KVM_CAP_EXT_CPUID"),
    ] {
        if !kvm.check_extension(cap) {
            return Err(Error::Kvm(format!(
                "/dev/kvm lacks {name}, which vmrun needs: use a newer host kernel"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpuinfo_with_vmx_is_hardware() {
        let info = "processor : 0\nflags : fpu vme vmx sse\n";
        assert_eq!(Platform::from_host_facts(info, false), Platform::Hardware);
    }

    #[test]
    fn cpuinfo_without_vmx_or_svm_is_pvm() {
        let info = "flags : fpu vme sse smep\n";
        assert_eq!(Platform::from_host_facts(info, false), Platform::Pvm);
    }

    #[test]
    fn loaded_pvm_module_wins_over_flags() {
        assert_eq!(
            Platform::from_host_facts("flags : svm\n", true),
            Platform::Pvm
        );
    }

    #[test]
    fn open_errors_name_the_fix() {
        assert!(open_error_message(ErrorKind::NotFound).contains("modprobe"));
        assert!(open_error_message(ErrorKind::PermissionDenied).contains("kvm group"));
    }
}
