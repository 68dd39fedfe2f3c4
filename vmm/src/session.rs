//! One run with the inspector attached: what `vmrun`'s observation options
//! ask for, done at the right moments.
//!
//! [`Watch`] says what to observe; [`Watch::observe`] turns it into what the
//! guest must report ([`Observe`]). [`Session::run`] drives the VM from
//! event to event: trace records go to the readable or JSON trace, the
//! strace view and the statistics as they arrive; at exec and exit the
//! host walks the page tables from CR3, prints the maps and the tables, and
//! checks them against the VMAs. A failed check stops the run.

use crate::error::{Error, Result};
use crate::hypercall::HostIo;
use crate::hypercall::Outcome;
use crate::inspect::check::{
    check, check_sharing, CacheBitmap, CheckInput, SharingInput, SpaceCheck, Violation,
};
use crate::inspect::maps::{export_truncated, export_vmas, files_of_export, FileInfo};
use crate::inspect::pagetable::{self, walk, Walk, WalkOptions};
use crate::inspect::spaces::{format_space_maps, spaces_of, ShareCounts, Space};
use crate::inspect::stats::Stats;
use crate::inspect::strace::{exited_line, killed_line, GuestUserMemory, Strace};
use crate::inspect::svg;
use crate::inspect::trace::{format_record, record_json, Clock};
use crate::vm::{Event, Observe, RunEnd, RunReport, Vm, VmConfig};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use vmrun_contract::layout::{PAGE_SIZE, SYSCALL_TRAMPOLINE_VIRT};
use vmrun_contract::trace::{category, Record};
use vmrun_contract::VmaExport;

/// A trace category of the host's own (no guest bit): the guest kernel's
/// records from before the program's first exec, that is its boot-time
/// page tables. `--trace boot` shows them; `pt` and `all` leave them out.
pub const BOOT: u32 = 1 << 31;

/// What to observe during a run.
#[derive(Clone, Debug, Default)]
pub struct Watch {
    /// Trace categories printed as readable lines on stderr.
    pub trace: u32,
    /// Write every trace record of these categories as JSON lines here.
    pub trace_json: Option<(PathBuf, u32)>,
    /// Print system calls strace-style on stderr.
    pub strace: bool,
    /// Print the VMAs in /proc/PID/maps format at exec and at exit.
    pub maps: bool,
    /// Print the page-table tree and mappings at exit.
    pub pagetables: bool,
    /// Write the page-table walk at exit as JSON here.
    pub pagetables_json: Option<PathBuf>,
    /// Check the page tables against the VMAs at exec and exit.
    pub check: bool,
    /// Also check every this many page faults (0: never).
    pub check_every: u32,
    /// Draw the page-table tree at exit as SVG here.
    pub svg: Option<PathBuf>,
    /// Draw the fault-latency histogram as SVG here.
    pub histogram: Option<PathBuf>,
    /// Print statistics on stderr at the end.
    pub stats: bool,
    /// Write statistics as JSON here.
    pub stats_json: Option<PathBuf>,
    /// A debugger drives the run (`--gdb`): stop for it
    /// ([`Step::Debug`]), with the VMA export on for its monitor commands.
    pub debugger: bool,
}

impl Watch {
    /// What the guest kernel must report for this watch.
    pub fn observe(&self) -> Observe {
        let mut mask = self.trace | self.trace_json.as_ref().map_or(0, |(_, m)| *m);
        if mask & BOOT != 0 {
            mask |= category::PAGE_TABLES;
        }
        // The first exec phase record is where the boot records end.
        if mask & category::PAGE_TABLES != 0 {
            mask |= category::EXEC;
        }
        mask &= !BOOT;
        if self.strace {
            mask |= category::SYSCALLS;
        }
        if self.wants_stats() {
            mask |= category::FAULTS | category::SYSCALLS | category::EXEC;
        }
        Observe {
            trace_mask: mask,
            trace_records: 0,
            stop_at_exec_exit: self.maps
                || self.debugger
                || self.pagetables
                || self.pagetables_json.is_some()
                || self.check
                || self.svg.is_some(),
            fault_every: if self.check { self.check_every } else { 0 },
            stop_at_syscalls: self.strace,
            debugger: self.debugger,
            // The checker's runs and the counters (which report leaks)
            // tear everything down at the end.
            leak_check: self.check || self.wants_stats(),
            live: true,
        }
    }

    /// Every file this watch writes, with the option that names it.
    pub fn output_files(&self) -> Vec<(&'static str, &PathBuf)> {
        [
            ("--trace-json", self.trace_json.as_ref().map(|(p, _)| p)),
            ("--pagetables-json", self.pagetables_json.as_ref()),
            ("--svg", self.svg.as_ref()),
            ("--histogram", self.histogram.as_ref()),
            ("--stats-json", self.stats_json.as_ref()),
        ]
        .into_iter()
        .filter_map(|(option, path)| Some((option, path?)))
        .collect()
    }

    fn wants_stats(&self) -> bool {
        self.stats || self.stats_json.is_some() || self.histogram.is_some() || self.debugger
    }
}

/// Where [`Session::step`] stopped.
#[derive(Debug)]
pub enum Step {
    /// An event the watch dealt with; the program runs on.
    Running,
    /// A tick: nothing happened for a while (or a signal came).
    Tick,
    /// The program stopped for the debugger.
    Debug(crate::vm::DebugStop),
    /// The run is over.
    Done(Box<SessionReport>),
}

/// The address spaces of a stop.
struct Spaces {
    /// The running one first.
    list: Vec<Space>,
    /// Whether the export held all of them (sharing is checked only then).
    complete: bool,
    /// The running space has more areas than the export holds (its
    /// leaves are then not checked against areas).
    truncated: bool,
}

/// How a watched run ended.
#[derive(Debug)]
pub struct SessionReport {
    /// The run's report.
    pub run: RunReport,
    /// Checker violations (the run was stopped at the first failed check).
    pub violations: Vec<Violation>,
    /// Where the failed check happened ("exec", "exit", "fault 1000").
    pub violation_at: String,
}

/// A run with the inspector attached.
pub struct Session {
    vm: Vm,
    watch: Watch,
    files: Vec<FileInfo>,
    clock: Clock,
    stats: Option<Stats>,
    strace: Strace,
    trace_json: Option<BufWriter<File>>,
    /// An exec phase record has been seen: records are the program's.
    booted: bool,
}

impl Session {
    /// Create the VM for `config` with what `watch` needs observed.
    ///
    /// Every output file is created first, so that a path that cannot be
    /// written (a missing directory) stops vmrun before the program runs,
    /// not after, when its exit status would be lost.
    pub fn new(config: &VmConfig, watch: Watch) -> Result<Session> {
        let mut outputs = Vec::new();
        for (option, path) in watch.output_files() {
            let file = File::create(path).map_err(|e| {
                Error::Config(format!("{option} {}: {}", path.display(), words(&e)))
            })?;
            outputs.push(file);
        }
        let mut config = config.clone();
        config.observe = watch.observe();
        let vm = Vm::new(&config)?;
        let files = vec![FileInfo::from_path(vm.exe_path())
            .map_err(|e| Error::ProgramUnusable(config.program.clone(), e.to_string()))?];
        let clock = Clock {
            tsc_khz: vm.boot_info().tsc_khz,
            tsc_base: 0,
        };
        let stats = if watch.wants_stats() {
            Some(Stats::new(clock.tsc_khz).map_err(|e| Error::Config(e.to_string()))?)
        } else {
            None
        };
        // The first output file, when there is one, is --trace-json's.
        let trace_json = watch
            .trace_json
            .as_ref()
            .map(|_| BufWriter::new(outputs.swap_remove(0)));
        Ok(Session {
            vm,
            watch,
            files,
            clock,
            stats,
            strace: Strace::new(),
            trace_json,
            booted: false,
        })
    }

    /// The VM (for inspection between events).
    pub fn vm(&self) -> &Vm {
        &self.vm
    }

    /// Run to the end, or to the first failed check.
    pub fn run(&mut self, io: &mut impl HostIo) -> Result<SessionReport> {
        loop {
            match self.step(io)? {
                Step::Done(report) => return Ok(*report),
                // Without a debugger attached the guest never stops for
                // one; should it, it runs on.
                Step::Debug(_) => self.vm.answer_debug_stop(0)?,
                Step::Running | Step::Tick => {}
            }
        }
    }

    /// Run to the next event and do what the watch asks there.
    pub fn step(&mut self, io: &mut impl HostIo) -> Result<Step> {
        let mut batch = Vec::new();
        let event = self
            .vm
            .resume(io, &mut |records| batch.extend_from_slice(records))?;
        self.consume_records(&batch)?;
        let at = match &event {
            Event::Exec {
                user_frames,
                user_tables,
            } => self.at_exec_or_exit("exec", *user_frames, *user_tables)?,
            Event::Exit {
                user_frames,
                user_tables,
            } => self.at_exec_or_exit("exit", *user_frames, *user_tables)?,
            Event::Fault {
                count,
                user_frames,
                user_tables,
                ..
            } => {
                let when = format!("fault {count}");
                self.at_check_point(&when, *user_frames, *user_tables)?
            }
            Event::Syscall { .. } => None,
            Event::Tick => {
                self.flush_outputs()?;
                return Ok(Step::Tick);
            }
            Event::Debug(stop) => return Ok(Step::Debug(*stop)),
            Event::Finished(end) => return Ok(Step::Done(Box::new(self.finish(end.clone())?))),
        };
        let Some((where_, violations)) = at else {
            return Ok(Step::Running);
        };
        let run = self
            .vm
            .report(RunEnd::VmFailure("stopped by the checker".into()));
        Ok(Step::Done(Box::new(SessionReport {
            run,
            violations,
            violation_at: where_,
        })))
    }

    /// The VM (to answer a debugger stop, read registers and memory).
    pub fn vm_mut(&mut self) -> &mut Vm {
        &mut self.vm
    }

    /// At a debugger stop: the address spaces as the guest exported them,
    /// the running one first.
    pub fn spaces_now(&self) -> Result<Vec<Space>> {
        let export = self.vm.vma_export()?;
        let (list, _) = spaces_of(&export).map_err(|e| Error::Memory(e.to_string()))?;
        Ok(list)
    }

    /// `/proc/PID/maps` of `pid` (the running process if None) now, as
    /// `--maps` prints it.
    pub fn maps_now(&self, pid: Option<u64>) -> Result<String> {
        let export = self.vm.vma_export()?;
        let files = files_of_export(&export, &self.files[0]);
        let space = self.space_now(pid)?;
        Ok(format_space_maps(&space, &files))
    }

    /// The user half of `pid`'s page tables now, as `--pagetables` prints
    /// it at exit.
    pub fn pagetables_now(&self, pid: Option<u64>) -> Result<String> {
        let s = self.space_now(pid)?;
        let user = self.walk_spaces(std::slice::from_ref(&s), true)?.remove(0);
        Ok(format!(
            "page tables (pid {}, CR3 {:#x}):\n{}user mappings (pid {}):\n{}",
            s.pid,
            s.root,
            pagetable::render_tree(&user),
            s.pid,
            pagetable::render_mappings(&user.mappings())
        ))
    }

    /// The page-table root of `pid` now.
    pub fn root_now(&self, pid: Option<u64>) -> Result<u64> {
        Ok(self.space_now(pid)?.root)
    }

    /// The checker's verdict now, on every address space.
    pub fn check_now(&self) -> Result<Vec<Violation>> {
        let export = self.vm.vma_export()?;
        let (list, complete) = spaces_of(&export).map_err(|e| Error::Memory(e.to_string()))?;
        let truncated = export_truncated(&export);
        let spaces = Spaces {
            list,
            complete: complete && !truncated,
            truncated,
        };
        let walks = self.walk_spaces(&spaces.list, false)?;
        Ok(self
            .check_at("now", &spaces, &walks, &export)
            .map_or(vec![], |(_, v)| v))
    }

    /// The statistics so far (faults, system calls, exec phases), as
    /// `--stats` prints them at the end.
    pub fn stats_now(&mut self) -> String {
        let boot = boot_phases(&self.vm.report(RunEnd::VmFailure(String::new())));
        let exits = self.vm.exits().clone();
        match &mut self.stats {
            Some(stats) => {
                stats.vm_exits = exits;
                stats.boot_phases = boot;
                stats.render_text()
            }
            None => "no statistics are kept in this run\n".into(),
        }
    }

    /// What the running process (or `pid`'s) would read at `va` on a page it has not
    /// touched yet (not present in its page tables), without mapping it:
    /// the bytes of the file its area maps there (zeros past the file's
    /// end), or zeros for an anonymous area; the bytes filled, up to the
    /// page's end, or None outside every area.
    pub fn unmapped_bytes_now(&self, pid: Option<u64>, va: u64, buf: &mut [u8]) -> Option<usize> {
        use std::os::unix::fs::FileExt;
        let export = self.vm.vma_export().ok()?;
        let space = self.space_now(pid).ok()?;
        let v = space.vmas.iter().find(|v| v.start <= va && va < v.end)?;
        let page_end = (va | (PAGE_SIZE - 1)) + 1;
        let n = ((page_end.min(v.end) - va) as usize).min(buf.len());
        let buf = &mut buf[..n];
        buf.fill(0);
        if v.flags & vmrun_contract::vma_flags::FILE != 0 {
            let files = files_of_export(&export, &self.files[0]);
            let file = files.get(v.file as usize)?;
            let f = File::open(&file.path).ok()?;
            let mut done = 0;
            while done < n {
                let at = va - v.start + v.offset + done as u64;
                match f.read_at(&mut buf[done..], at) {
                    Ok(0) | Err(_) => break,
                    Ok(k) => done += k,
                }
            }
        }
        Some(n)
    }

    fn space_now(&self, pid: Option<u64>) -> Result<Space> {
        let list = self.spaces_now()?;
        let found = match pid {
            None => list.into_iter().next(),
            Some(pid) => list.into_iter().find(|s| s.pid == pid),
        };
        found.ok_or_else(|| Error::Config(format!("no address space for pid {pid:?}")))
    }

    /// Push what the trace JSON file holds so far out to the file.
    fn flush_outputs(&mut self) -> Result<()> {
        match &mut self.trace_json {
            Some(out) => out.flush().map_err(io_err),
            None => Ok(()),
        }
    }

    /// Hand the records drained at this stop to every consumer.
    fn consume_records(&mut self, records: &[Record]) -> Result<()> {
        if self.clock.tsc_base == 0 {
            self.clock.tsc_base = records.first().map_or(0, |r| r.tsc);
        }
        // The guest's CR3 for the strace view's reads of user memory: one
        // KVM_GET_SREGS per stop, not one per record.
        let cr3 = match self.watch.strace && !records.is_empty() {
            true => Some(self.vm.cr3()?),
            false => None,
        };
        for r in records {
            self.emit_record(r, cr3)?;
        }
        if let Some(stats) = &mut self.stats {
            stats.add_all(records);
        }
        Ok(())
    }

    fn emit_record(&mut self, r: &Record, cr3: Option<u64>) -> Result<()> {
        let mut cat = crate::inspect::trace::category_of(r.kind);
        self.booted |= r.kind == vmrun_contract::trace::kind::EXEC_PHASE;
        if !self.booted && cat == category::PAGE_TABLES {
            cat = BOOT;
        }
        if self.watch.trace & cat != 0 {
            crate::errln!("vmrun: trace {}", format_record(r, &self.clock));
        }
        if let (Some(out), Some((_, mask))) = (&mut self.trace_json, &self.watch.trace_json) {
            if mask & cat != 0 {
                writeln!(out, "{}", record_json(r, &self.clock)).map_err(io_err)?;
            }
        }
        if let (Some(cr3), true) = (cr3, cat == category::SYSCALLS) {
            let mem = GuestUserMemory {
                ram: self.vm.ram(),
                cr3,
            };
            for line in self.strace.feed(r, &mem) {
                crate::errln!("{line}");
            }
        }
        Ok(())
    }

    /// At exec or exit: print maps and tables, check, draw.
    fn at_exec_or_exit(
        &mut self,
        when: &str,
        user_frames: u64,
        user_tables: u64,
    ) -> Result<Option<(String, Vec<Violation>)>> {
        let export = self.vm.vma_export()?;
        let spaces = self.spaces_at(&export, user_frames, user_tables)?;
        if self.watch.maps {
            let files = files_of_export(&export, &self.files[0]);
            for s in &spaces.list {
                let text = format_space_maps(s, &files);
                crate::errprint!("vmrun: maps at {when} (pid {}):\n{text}", s.pid);
            }
        }
        let walks = self.walk_spaces(&spaces.list, false)?;
        if when == "exit" {
            self.show_tables(&spaces.list, &walks)?;
        }
        if !self.watch.check {
            return Ok(None);
        }
        Ok(self.check_at(when, &spaces, &walks, &export))
    }

    /// Every N faults: only the check.
    fn at_check_point(
        &mut self,
        when: &str,
        user_frames: u64,
        user_tables: u64,
    ) -> Result<Option<(String, Vec<Violation>)>> {
        let export = self.vm.vma_export()?;
        let spaces = self.spaces_at(&export, user_frames, user_tables)?;
        let walks = self.walk_spaces(&spaces.list, false)?;
        Ok(self.check_at(when, &spaces, &walks, &export))
    }

    /// Every live address space at this stop, the running one first with
    /// the root in CR3 and the counts the stop reported.
    fn spaces_at(&self, export: &VmaExport, frames: u64, tables: u64) -> Result<Spaces> {
        let (mut list, complete) = spaces_of(export).map_err(|e| Error::Memory(e.to_string()))?;
        let running = Space {
            pid: list.first().map_or(1, |s| s.pid),
            root: self.vm.cr3()?,
            user_frames: frames,
            user_table_pages: tables,
            vmas: export_vmas(export)
                .map_err(|e| Error::Memory(e.to_string()))?
                .to_vec(),
            mm: export.mm,
        };
        match list.first_mut() {
            Some(first) => *first = running,
            None => list.push(running),
        }
        // The running space's areas past the export's capacity are not
        // known here: checking its leaves against the first ones would
        // report the rest as outside any area.
        let truncated = export_truncated(export);
        Ok(Spaces {
            list,
            complete: complete && !truncated,
            truncated,
        })
    }

    fn walk_spaces(&self, spaces: &[Space], user_only: bool) -> Result<Vec<Walk>> {
        spaces
            .iter()
            .map(|s| {
                walk(self.vm.ram(), s.root, WalkOptions { user_only }).map_err(|e| {
                    Error::Memory(format!(
                        "page-table walk of pid {} from {:#x}: {e}",
                        s.pid, s.root
                    ))
                })
            })
            .collect()
    }

    /// The checker's violations at `when`, if any: each space on its own
    /// (named by pid when there are several), then sharing across them.
    fn check_at(
        &self,
        when: &str,
        spaces: &Spaces,
        walks: &[Walk],
        export: &VmaExport,
    ) -> Option<(String, Vec<Violation>)> {
        let cache = CacheBitmap::read(self.vm.ram(), export.cache_bits);
        let several = spaces.list.len() > 1;
        let mut violations = Vec::new();
        for (k, (s, walk)) in spaces.list.iter().zip(walks).enumerate() {
            if k == 0 && spaces.truncated {
                use std::io::Write;
                let _ = writeln!(
                    std::io::stderr(),
                    "vmrun: check at {when}: pid {} has more areas than the VMA export \
                     holds; its leaves were not checked against areas",
                    s.pid
                );
                continue;
            }
            let found = self.check_walk(walk, s, &cache);
            violations.extend(found.into_iter().map(|v| match several {
                true => Violation::InSpace(s.pid, Box::new(v)),
                false => v,
            }));
        }
        if spaces.complete {
            let checks: Vec<SpaceCheck> = spaces
                .list
                .iter()
                .zip(walks)
                .map(|(s, walk)| SpaceCheck {
                    pid: s.pid,
                    walk,
                    vmas: &s.vmas,
                    user_frames: s.user_frames,
                })
                .collect();
            let shares = ShareCounts::read(self.vm.ram(), export.share_counts);
            let found = check_sharing(&SharingInput {
                spaces: &checks,
                shares: &shares,
                page_cache: self.page_cache(),
                cache_frames: &cache,
            });
            violations.extend(found.into_iter().map(Violation::Sharing));
        }
        (!violations.is_empty()).then(|| (when.to_string(), violations))
    }

    /// The program image and the vDSO image after it.
    fn page_cache(&self) -> std::ops::Range<u64> {
        let info = self.vm.boot_info();
        let cache_end = ((info.file_phys + info.file_len).div_ceil(PAGE_SIZE) * PAGE_SIZE)
            .max(info.vdso_phys + info.vdso_len);
        info.file_phys..cache_end
    }

    fn check_walk(&self, walk: &Walk, space: &Space, cache: &CacheBitmap) -> Vec<Violation> {
        check(&CheckInput {
            walk,
            vmas: &space.vmas,
            user_frames: space.user_frames,
            user_table_pages: space.user_table_pages,
            page_cache: self.page_cache(),
            cache_frames: cache,
            trampoline: SYSCALL_TRAMPOLINE_VIRT,
        })
    }

    /// At exit: the page tables of every space, the running one's as JSON
    /// and SVG.
    fn show_tables(&self, spaces: &[Space], walks: &[Walk]) -> Result<()> {
        let Some(walk) = walks.first() else {
            return Ok(());
        };
        if self.watch.pagetables {
            for (s, user) in spaces.iter().zip(self.walk_spaces(spaces, true)?) {
                crate::errprint!(
                    "vmrun: page tables at exit (pid {}, CR3 {:#x}):\n{}vmrun: user mappings at exit (pid {}):\n{}",
                    s.pid,
                    s.root,
                    pagetable::render_tree(&user),
                    s.pid,
                    pagetable::render_mappings(&user.mappings())
                );
            }
        }
        if let Some(path) = &self.watch.pagetables_json {
            write_file(path, &pagetable::to_json(walk).to_string())?;
        }
        if let Some(path) = &self.watch.svg {
            write_file(path, &svg::page_table_tree(walk, svg::DEFAULT_MAX_TABLES))?;
        }
        Ok(())
    }

    fn finish(&mut self, end: RunEnd) -> Result<SessionReport> {
        if self.watch.strace {
            if let Some(line) = self.strace.finish() {
                crate::errln!("{line}");
            }
            match &end {
                RunEnd::Guest(Outcome::Exited(s)) => crate::errln!("{}", exited_line(*s as u64)),
                RunEnd::Guest(Outcome::Signaled { signal, .. }) => {
                    crate::errln!("{}", killed_line(u64::from(*signal)))
                }
                _ => {}
            }
        }
        if let Some(out) = &mut self.trace_json {
            out.flush().map_err(io_err)?;
        }
        let run = self.vm.report(end);
        self.write_stats(&run)?;
        Ok(SessionReport {
            run,
            violations: vec![],
            violation_at: String::new(),
        })
    }

    fn write_stats(&mut self, run: &RunReport) -> Result<()> {
        let Some(stats) = &mut self.stats else {
            return Ok(());
        };
        stats.vm_exits = self.vm.exits().clone();
        stats.lost = self.vm.trace_lost();
        stats.boot_phases = boot_phases(run);
        stats.fs = self.vm.fs_stats().clone();
        if self.watch.stats {
            crate::errprint!("{}", stats.render_text());
        }
        if let Some(path) = &self.watch.stats_json {
            write_file(path, &stats.to_json().to_string())?;
        }
        if let Some(path) = &self.watch.histogram {
            let series: Vec<(String, &crate::inspect::stats::Latency)> =
                stats.faults.iter().map(|(k, v)| (k.clone(), v)).collect();
            write_file(path, &svg::latency_histogram("page-fault latency", &series))?;
        }
        Ok(())
    }
}

/// The host-measured boot phases of a run, as (name, time since start).
pub fn boot_phases(run: &RunReport) -> Vec<(String, std::time::Duration)> {
    let t = &run.timings;
    let mut v = vec![
        ("vm created".to_string(), t.vm_create),
        ("loaded".to_string(), t.load),
    ];
    for (name, d) in [
        ("kernel entry", t.kernel_entry),
        ("kernel ready", t.kernel_ready),
        ("program loaded", t.exec_loaded),
    ] {
        if let Some(d) = d {
            v.push((name.to_string(), d));
        }
    }
    v.push(("exit".to_string(), t.total));
    v
}

fn io_err(e: std::io::Error) -> Error {
    Error::Config(format!("writing an inspector output: {e}"))
}

/// An I/O error's words without Rust's " (os error N)".
fn words(e: &std::io::Error) -> String {
    let text = e.to_string();
    text.split(" (os error").next().unwrap_or(&text).to_string()
}

fn write_file(path: &PathBuf, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
}
