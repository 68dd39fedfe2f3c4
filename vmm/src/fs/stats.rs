//! Counters of the file service, for `--stats` and `--stats-json`.

use serde_json::{json, Value};
use std::collections::BTreeMap;

/// A kind of attempt to reach or change something outside the view,
/// refused or clamped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Escape {
    /// `..` at the guest's root (stays at the root).
    DotDotAtRoot,
    /// A change in a read-only view (EROFS).
    ReadOnly,
    /// A link or rename between two mounts (EXDEV).
    CrossMount,
    /// Opening a device node, FIFO or socket (EACCES).
    SpecialFile,
    /// A host kernel pseudo file system (procfs, sysfs...) met on a walk
    /// (ENOENT).
    PseudoFs,
}

impl Escape {
    /// Its name in the statistics.
    pub fn name(self) -> &'static str {
        match self {
            Escape::DotDotAtRoot => "dotdot-at-root",
            Escape::ReadOnly => "read-only",
            Escape::CrossMount => "cross-mount",
            Escape::SpecialFile => "special-file",
            Escape::PseudoFs => "host-pseudo-fs",
        }
    }
}

/// What the file service did during a run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FsStats {
    /// Requests by operation name.
    pub calls: BTreeMap<&'static str, u64>,
    /// Requests that failed.
    pub errors: u64,
    /// Paths resolved.
    pub lookups: u64,
    /// Single components looked up on the host.
    pub components: u64,
    /// Symlinks followed.
    pub symlinks: u64,
    /// Lookups answered "the guest kernel's" (`/proc`, `/dev`).
    pub synthetic: u64,
    /// Handles opened.
    pub opens: u64,
    /// Most handles open at once.
    pub handles_peak: u64,
    /// Bytes read from host files.
    pub bytes_read: u64,
    /// Bytes written to host files.
    pub bytes_written: u64,
    /// Escape attempts refused or clamped, by [`Escape::name`].
    pub escapes: BTreeMap<&'static str, u64>,
}

impl FsStats {
    /// Count an escape attempt.
    pub fn escape(&mut self, kind: Escape) {
        *self.escapes.entry(kind.name()).or_default() += 1;
    }

    /// Escape attempts of `kind` so far.
    pub fn escapes_of(&self, kind: Escape) -> u64 {
        self.escapes.get(kind.name()).copied().unwrap_or(0)
    }

    fn counters(&self) -> [(&'static str, u64); 9] {
        [
            ("requests", self.calls.values().sum()),
            ("errors", self.errors),
            ("opens", self.opens),
            ("handles peak", self.handles_peak),
            ("lookups", self.lookups),
            ("host components", self.components),
            ("symlinks", self.symlinks),
            ("guest /proc,/dev", self.synthetic),
            ("bytes read", self.bytes_read),
        ]
    }

    /// The "file system" section of `--stats`.
    pub fn render_text(&self) -> String {
        let mut out = format!("{:<20} {:>8}\n", "file system", "count");
        for (name, n) in self.counters() {
            out.push_str(&format!("  {name:<18} {n:>8}\n"));
        }
        out.push_str(&format!(
            "  {:<18} {:>8}\n",
            "bytes written", self.bytes_written
        ));
        for (op, n) in &self.calls {
            out.push_str(&format!("  {:<18} {n:>8}\n", format!("op {op}")));
        }
        let refused: u64 = self.escapes.values().sum();
        out.push_str(&format!("  {:<18} {refused:>8}\n", "escapes refused"));
        for (kind, n) in &self.escapes {
            out.push_str(&format!("    {kind:<16} {n:>8}\n"));
        }
        out
    }

    /// The counters as JSON.
    pub fn to_json(&self) -> Value {
        json!({
            "calls": self.calls,
            "errors": self.errors,
            "opens": self.opens,
            "handles_peak": self.handles_peak,
            "lookups": self.lookups,
            "components": self.components,
            "symlinks": self.symlinks,
            "synthetic": self.synthetic,
            "bytes_read": self.bytes_read,
            "bytes_written": self.bytes_written,
            "escapes": self.escapes,
        })
    }
}
