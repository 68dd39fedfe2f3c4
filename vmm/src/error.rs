//! Errors of the host side, each with the exit status vmrun reports.

use std::fmt;
use std::path::PathBuf;

/// Exit status for vmrun's own failures (as `docker run` and `env` use it).
pub const EXIT_VMRUN_FAILURE: i32 = 125;
/// Exit status when the program cannot be executed.
pub const EXIT_CANNOT_EXECUTE: i32 = 126;
/// Exit status when the program is not found.
pub const EXIT_NOT_FOUND: i32 = 127;

/// Everything that can stop vmrun before or while running the guest.
#[derive(Debug)]
pub enum Error {
    /// /dev/kvm is missing, not permitted or unusable.
    Kvm(String),
    /// A KVM ioctl failed.
    KvmIoctl(&'static str, kvm_ioctls::Error),
    /// Guest memory could not be created or accessed.
    Memory(String),
    /// The embedded guest kernel could not be loaded.
    KernelLoad(String),
    /// The program file does not exist.
    ProgramNotFound(PathBuf),
    /// The program file exists but cannot be executed.
    ProgramUnusable(PathBuf, String),
    /// Bad command-line or configuration value.
    Config(String),
}

impl Error {
    /// The exit status vmrun reports for this error.
    pub fn exit_status(&self) -> i32 {
        match self {
            Error::ProgramNotFound(_) => EXIT_NOT_FOUND,
            Error::ProgramUnusable(..) => EXIT_CANNOT_EXECUTE,
            _ => EXIT_VMRUN_FAILURE,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Kvm(msg) => write!(f, "{msg}"),
            Error::KvmIoctl(what, e) => write!(f, "KVM {what} failed: {e}"),
            Error::Memory(msg) => write!(f, "guest memory: {msg}"),
            Error::KernelLoad(msg) => write!(f, "cannot load the guest kernel: {msg}"),
            Error::ProgramNotFound(p) => write!(f, "{}: No such file or directory", p.display()),
            Error::ProgramUnusable(p, why) => write!(f, "{}: {why}", p.display()),
            Error::Config(msg) => write!(f, "{msg}"),
        }
    }
}

impl std::error::Error for Error {}

/// Result with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
