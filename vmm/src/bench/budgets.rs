//! The ring-0 instruction budgets: for each kernel path that has one, the
//! figure this run measured next to its budget, and whether it is met.
//!
//! The figures come from the single-stepped runs (the median instructions
//! of one kind of kernel entry in a workload's loop, or a phase of the
//! stepped `hello_static` runs). A budget is a target, never a check: the
//! bench prints it and says whether it is met; nothing fails on it.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// A figure a budget applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Figure {
    /// One getpid, entry to return.
    Getpid,
    /// One anonymous 4 KiB page fault.
    AnonFault,
    /// One copy-on-write fault on a private file mapping.
    FileCow,
    /// One brk call that grows the heap.
    BrkStep,
    /// The initial exec of a static hello without environment.
    Exec,
    /// What each extra argument or environment string adds to that exec.
    ExecPerString,
    /// The boot, at the default RAM.
    Boot,
    /// The boot, at [`LARGE_MEM`].
    BootLarge,
    /// The last process's `exit_group` (the end of the run).
    LastExit,
    /// A static hello, from the start of its exec to the end of the run.
    HelloExecToExit,
    /// The iterations of the repeated string instructions of the boot, the
    /// exec and the static hello from exec to exit (no budget: each such
    /// instruction counts once above).
    BootIterations,
    ExecIterations,
    HelloIterations,
}

/// The RAM of the large boot.
pub(super) const LARGE_MEM: u64 = vmrun_contract::layout::MAX_MEM;

/// One row of the budget table.
struct Budget {
    path: &'static str,
    figure: Figure,
    limit: f64,
}

const BUDGETS: [Budget; 10] = [
    Budget {
        path: "getpid round trip",
        figure: Figure::Getpid,
        limit: 60.0,
    },
    Budget {
        path: "anonymous 4 KiB fault",
        figure: Figure::AnonFault,
        limit: 200.0,
    },
    Budget {
        path: "file COW fault (4k)",
        figure: Figure::FileCow,
        limit: 300.0,
    },
    Budget {
        path: "brk step (the brk call)",
        figure: Figure::BrkStep,
        limit: 200.0,
    },
    Budget {
        path: "exec of a static hello",
        figure: Figure::Exec,
        limit: 2500.0,
    },
    Budget {
        path: "exec: per extra string",
        figure: Figure::ExecPerString,
        limit: 10.0,
    },
    Budget {
        path: "boot at 256 MiB",
        figure: Figure::Boot,
        limit: 1500.0,
    },
    Budget {
        path: "boot at 64 GiB",
        figure: Figure::BootLarge,
        limit: 1500.0,
    },
    Budget {
        path: "last process's exit",
        figure: Figure::LastExit,
        limit: 300.0,
    },
    Budget {
        path: "static hello, exec to exit",
        figure: Figure::HelloExecToExit,
        limit: 8000.0,
    },
];

/// The figures one bench run measured.
pub(super) type Figures = BTreeMap<Figure, f64>;

/// The budget table: each path, its figure, its budget and whether the
/// figure meets it (`not measured` without a figure), then how many are
/// met.
pub(super) fn budget_table(figures: &Figures) -> String {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "budgets (ring-0 instructions, from the stepped runs above):"
    );
    let _ = writeln!(
        text,
        "{:<28} {:>10} {:>8}  status",
        "path", "figure", "budget"
    );
    let mut met = 0;
    let mut measured = 0;
    for b in &BUDGETS {
        let (figure, status) = match figures.get(&b.figure) {
            Some(&v) => {
                measured += 1;
                let ok = v <= b.limit;
                met += usize::from(ok);
                let shown = if v < 100.0 {
                    format!("{v:.1}")
                } else {
                    format!("{v:.0}")
                };
                (shown, if ok { "met" } else { "not met" })
            }
            None => ("-".to_string(), "not measured"),
        };
        let _ = writeln!(
            text,
            "{:<28} {figure:>10} {:>8}  {status}",
            b.path,
            format!("≤{}", b.limit)
        );
    }
    let _ = writeln!(text, "{met} of {measured} measured budgets met");
    let iterations = [
        ("boot", Figure::BootIterations),
        ("exec", Figure::ExecIterations),
        ("static hello exec to exit", Figure::HelloIterations),
    ]
    .iter()
    .filter_map(|(what, f)| Some(format!("{what} {:.0}", figures.get(f)?)))
    .collect::<Vec<_>>();
    if !iterations.is_empty() {
        let _ = writeln!(
            text,
            "iterations of rep movs/stos, each counted once above (kvm_pvm emulates every \
             one at about an instruction's cost): {}",
            iterations.join(", ")
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_says_which_budgets_are_met() {
        let mut f = Figures::new();
        f.insert(Figure::Getpid, 204.0);
        f.insert(Figure::LastExit, 120.0);
        f.insert(Figure::ExecPerString, 4.5);
        let t = budget_table(&f);
        let line = |path: &str| {
            t.lines()
                .find(|l| l.starts_with(path))
                .unwrap_or_else(|| panic!("no {path} in {t}"))
                .to_string()
        };
        assert!(line("getpid round trip").ends_with("204      ≤60  not met"));
        assert!(line("last process's exit").ends_with("met"));
        assert!(line("exec: per extra string").contains("4.5"));
        assert!(line("boot at 64 GiB").ends_with("not measured"));
        assert_eq!(BUDGETS.len(), 10);
        assert!(t.contains("2 of 3 measured budgets met"), "{t}");
        assert!(!t.contains("iterations of rep"), "none measured: {t}");
        f.insert(Figure::BootIterations, 250.0);
        f.insert(Figure::ExecIterations, 28.0);
        let t = budget_table(&f);
        assert!(
            t.contains("at about an instruction's cost): boot 250, exec 28\n"),
            "{t}"
        );
    }
}
