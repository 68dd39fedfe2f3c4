//! A VM that runs one program: creation, the vCPU loop, and the report.
//!
//! [`Vm::new`] opens KVM, creates the VM with its RAM and one vCPU, loads
//! the guest kernel, the program and its arguments, and sets the vCPU up
//! to enter the kernel in 64-bit mode. [`Vm::run`] runs the vCPU until the
//! guest reports how the program ended; any other way for the guest to stop
//! (triple fault, emulation failure, an unexpected exit) ends the run with
//! a register dump instead of a hang.

use crate::boot;
use crate::error::{Error, Result};
use crate::fastcall;
use crate::fs::{FsStats, HostFs, Mount};
use crate::handoff::Handoff;
use crate::hypercall::{self, Action, HostIo, Outcome};
use crate::kvm::{self, Platform};
use crate::loader::{self, BootPayload, LoadedKernel};
use crate::memory::GuestRam;
use crate::stdin_ring::{PipeSource, StdinRing, WithRing};
use crate::tick::Ticker;
use kvm_bindings::{CpuId, KVM_MAX_CPUID_ENTRIES};
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd, VmFd};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use vmrun_contract::trace::Record;
pub use vmrun_contract::FaultSize;
use vmrun_contract::{
    boot_flags, event, layout, phase, BootInfo, GuestStats, VmaExport, FAST_CALL_PORT,
    HYPERCALL_PORT,
};

/// Default guest RAM: 256 MiB.
pub const DEFAULT_MEM: u64 = 256 << 20;

/// What to run and how.
#[derive(Clone, Debug)]
pub struct VmConfig {
    /// Guest RAM in bytes.
    pub mem_size: u64,
    /// The program file.
    pub program: PathBuf,
    /// argv, including `argv[0]`.
    pub argv: Vec<OsString>,
    /// The environment, as NAME=VALUE strings.
    pub env: Vec<OsString>,
    /// Randomise the address space layout.
    pub aslr: bool,
    /// Show guest kernel log lines.
    pub verbose: bool,
    /// How much an anonymous page fault maps (`--fault-size`).
    pub fault_size: FaultSize,
    /// What the host wants to observe.
    pub observe: Observe,
    /// Host directories shown to the guest (after the default view's).
    pub mounts: Vec<Mount>,
    /// Show the default view: the host's `/` read-only and the current
    /// directory read-write (`--isolate` turns it off).
    pub default_view: bool,
    /// The `st_mode` the guest is told its stdio streams 0 to 2 have
    /// (`BootInfo::stdio_modes`; the fourth is 0): None for those of
    /// vmrun's own fds 0 to 2, where the program's stdio goes. A run whose
    /// `HostIo` keeps the output itself says what that is (the bench: a
    /// pipe), so that the program does not take it for vmrun's.
    pub stdio_modes: Option<[u32; 4]>,
    /// Read the host's stdin ahead into the stdin ring when it is a pipe
    /// and the host is kvm_pvm ([`crate::stdin_ring`]): for runs whose
    /// stdio is vmrun's own (the ring reads fd 0 itself, not through the
    /// run's `HostIo`).
    pub read_ahead_stdin: bool,
    /// Signals the program starts with ignored (bit `n - 1` for signal
    /// `n`; `BootInfo::ignored_signals`), as a native exec keeps SIG_IGN:
    /// the `vmrun` binary passes those it was started with
    /// ([`crate::interrupt::ignored_at_start`]); 0 for none.
    pub ignored_signals: u64,
}

impl VmConfig {
    /// Run `program` with `argv[0]` its path, no environment, the default
    /// RAM, the fixed layout, nothing observed, and the default view of the
    /// host's files; change fields as needed.
    pub fn for_program(program: impl Into<PathBuf>) -> VmConfig {
        let program = program.into();
        VmConfig {
            mem_size: DEFAULT_MEM,
            argv: vec![program.clone().into_os_string()],
            program,
            env: vec![],
            aslr: false,
            verbose: false,
            fault_size: FaultSize::default(),
            observe: Observe::default(),
            mounts: vec![],
            default_view: true,
            stdio_modes: None,
            read_ahead_stdin: false,
            ignored_signals: 0,
        }
    }
}

/// What the guest kernel reports to the host beyond the program's I/O.
#[derive(Clone, Debug, Default)]
pub struct Observe {
    /// [`vmrun_contract::trace::category`] bits to record (0: no tracing).
    pub trace_mask: u32,
    /// Capacity of the trace ring in records (0: a default).
    pub trace_records: u64,
    /// Stop at exec and exit with the address space intact
    /// ([`Event::Exec`], [`Event::Exit`]).
    pub stop_at_exec_exit: bool,
    /// Stop every this many page faults ([`Event::Fault`]; 0: never).
    pub fault_every: u32,
    /// Stop after every system call ([`Event::Syscall`]).
    pub stop_at_syscalls: bool,
    /// A debugger is attached: stop before the first instruction, at
    /// breakpoints, steps and fault signals ([`Event::Debug`]).
    pub debugger: bool,
    /// Tear everything down at the end of the run and check that nothing
    /// leaked ([`RunReport::leaks`]); without it the guest frees nothing at
    /// the end, as the VM is discarded.
    pub leak_check: bool,
    /// Hand trace records over as they come ([`Event::Tick`]): when a
    /// signal interrupts the vCPU, after a second without another event,
    /// and before a hypercall that may block.
    pub live: bool,
}

/// Default trace ring capacity: 64 Ki records (4 MiB of guest RAM).
pub const DEFAULT_TRACE_RECORDS: u64 = 64 * 1024;

/// Where [`Vm::resume`] stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The program is loaded; its first instruction is next.
    Exec {
        /// User data frames the guest holds (4 KiB units).
        user_frames: u64,
        /// User page-table pages the guest holds (PML4 excluded).
        user_tables: u64,
    },
    /// The program ended; its address space is still intact.
    Exit {
        /// User data frames the guest holds.
        user_frames: u64,
        /// User page-table pages the guest holds.
        user_tables: u64,
    },
    /// The `count`th page fault (at `addr`) was just resolved.
    Fault {
        /// Faults so far.
        count: u64,
        /// Its address.
        addr: u64,
        /// User data frames the guest holds.
        user_frames: u64,
        /// User page-table pages the guest holds.
        user_tables: u64,
    },
    /// System call `nr` was just served.
    Syscall {
        /// Its number.
        nr: u64,
        /// Its result (`-errno` on failure).
        result: i64,
    },
    /// Nothing happened, but a signal interrupted the vCPU (with `vmrun`,
    /// once a second: see [`crate::interrupt`]); the trace ring was drained.
    Tick,
    /// The program stopped for the debugger; answer with
    /// [`Vm::answer_debug_stop`] before resuming.
    Debug(DebugStop),
    /// The run is over.
    Finished(RunEnd),
}

/// A stop for the debugger ([`vmrun_contract::hc::DEBUG_STOP`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DebugStop {
    /// A [`vmrun_contract::debug::reason`].
    pub reason: u64,
    /// The signal about to be delivered (SIGTRAP for a breakpoint or step).
    pub signal: u32,
    /// The stopped process.
    pub pid: u64,
    /// The fault address of a fault signal (0 if none).
    pub addr: u64,
    /// Guest-physical address of the saved user registers.
    pub frame_phys: u64,
    /// Guest-physical address of the user's FXSAVE image.
    pub fpu_phys: u64,
    /// Guest-physical address of the task table
    /// ([`vmrun_contract::debug::TaskRecord`]s, the stopped task first).
    pub tasks_phys: u64,
    /// Its length.
    pub task_count: u64,
}

impl DebugStop {
    fn of(a: [u64; 6]) -> DebugStop {
        DebugStop {
            reason: a[0] & 0xff,
            signal: ((a[0] >> 8) & 0xff) as u32,
            pid: a[0] >> 32,
            addr: a[1],
            frame_phys: a[2],
            fpu_phys: a[3],
            tasks_phys: a[4],
            task_count: a[5],
        }
    }
}

/// Host-measured timestamps of a run.
#[derive(Clone, Debug, Default)]
pub struct Timings {
    /// From the start of [`Vm::new`] until the VM and vCPU exist.
    pub vm_create: Duration,
    /// Until kernel, program and boot state are in guest memory.
    pub load: Duration,
    /// Until the guest kernel reported its Rust entry.
    pub kernel_entry: Option<Duration>,
    /// Until the kernel reported its tables and allocator ready.
    pub kernel_ready: Option<Duration>,
    /// Until the program was loaded (just before its first instruction).
    pub exec_loaded: Option<Duration>,
    /// Until the run ended.
    pub total: Duration,
    /// vCPU exits taken.
    pub exits: u64,
    /// System calls the VMM answered from the syscall trampoline
    /// ([`crate::fastcall`]), which never entered the guest kernel.
    pub fast_calls: u64,
    /// Times the VMM filled the stdin ring ([`crate::stdin_ring`]), whose
    /// bytes the trampoline hands out with no VM exit.
    pub stdin_ring_fills: u64,
}

/// The result of a run.
#[derive(Clone, Debug)]
pub struct RunReport {
    /// How the program ended.
    pub outcome: RunEnd,
    /// Host-side timings.
    pub timings: Timings,
    /// The guest's counters at the end (if it had initialised them).
    pub stats: Option<GuestStats>,
    /// Whether the guest tore everything down at the end, so that the
    /// counters say what leaked ([`Observe::leak_check`]).
    pub leak_checked: bool,
}

impl RunReport {
    /// What the guest kernel failed to free when the program exited, if
    /// anything (a kernel bug): every user frame and page-table page must be
    /// freed, and only the kernel's own frames may remain in use.
    /// `None` also when the run did not ask for the check.
    pub fn leaks(&self) -> Option<String> {
        if !self.leak_checked {
            return None;
        }
        self.stats.as_ref().and_then(leak_report)
    }
}

/// The leak check over the guest's counters at exit.
pub fn leak_report(s: &GuestStats) -> Option<String> {
    let stray = s.frames_in_use.saturating_sub(s.frames_kernel);
    if s.user_frames == 0 && s.user_table_pages == 0 && stray == 0 {
        return None;
    }
    Some(format!(
        "the guest kernel leaked memory at exit: {} user frames, {} user page-table pages, \
         {stray} frames in use beyond the kernel's {}",
        s.user_frames, s.user_table_pages, s.frames_kernel
    ))
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunEnd {
    /// The guest reported an outcome.
    Guest(Outcome),
    /// The VM stopped in a way the guest did not report; the text says how
    /// and holds a register dump.
    VmFailure(String),
    /// vmrun was asked to stop by this signal (SIGINT, SIGTERM, SIGHUP:
    /// see [`crate::interrupt`]) before the program ended.
    Interrupted(i32),
}

/// How long [`Vm::resume`] runs at most before it hands the trace over.
const TICK: std::time::Duration = std::time::Duration::from_secs(1);

/// A VM ready to run one program.
pub struct Vm {
    _kvm: Kvm,
    _vm: VmFd,
    vcpu: VcpuFd,
    ram: GuestRam,
    started: Instant,
    timings: Timings,
    info: BootInfo,
    exits: BTreeMap<String, u64>,
    trace_lost: u64,
    /// A hypercall that may block (a sleep, a read of stdin), set aside
    /// while [`Vm::resume`] returned the trace records before it.
    deferred: Option<u64>,
    /// [`Observe::live`].
    live: bool,
    /// Whether KVM puts the general registers in the run page at every
    /// exit (KVM_CAP_SYNC_REGS), where a fast call reads and answers them.
    synced_regs: bool,
    fs: HostFs,
    /// The timer interrupt's ticker (None if its thread could not start).
    ticker: Option<Ticker>,
    /// The block of the debugger stop the guest waits in.
    debug_block: Option<u64>,
    /// The time since the start and the guest's TSC read together before
    /// the vCPU first ran: what dates the milestones the guest stamps with
    /// its TSC ([`Vm::stamped_phases`]), with no VM exit for any of them.
    tsc_anchor: Option<(Duration, u64)>,
    /// The platform vmrun detected.
    pub platform: Platform,
    /// [`Vm::exe_path`].
    exe_path: PathBuf,
    /// The stdin ring, when it is on ([`VmConfig::read_ahead_stdin`]).
    stdin_ring: Option<StdinRing>,
}

impl Vm {
    /// Create the VM and load everything into it.
    ///
    /// Filling guest RAM (the kernel image, the program file, the boot
    /// tables and arguments) is offered to the ticker thread, started
    /// first, while this thread has KVM create the VM and its vCPU: on an
    /// idle host the two go in parallel (the ioctls wait for a grace period
    /// and for the CPUID exits of a nested host, the filling for the
    /// zeroing of fresh host pages); when the ticker has not got a CPU by
    /// then, this thread fills RAM itself ([`Handoff`]). The errors come in
    /// the order of a single thread's work: the VM's, then the loading's.
    pub fn new(config: &VmConfig) -> Result<Vm> {
        let started = Instant::now();
        let (program, program_len) = open_program(&config.program)?;
        validate_mem(config.mem_size)?;
        let mut fs = HostFs::open(&config.mounts, config.default_view)?;
        let kvm = kvm::open()?;
        let platform = Platform::detect();
        let ram = GuestRam::new(config.mem_size)?;
        ram.advise_huge_pages();
        // The kernel's rodata, boot tables and text: a few dozen pages
        // written below 2 MiB, the text's below 4 MiB.
        ram.advise_small_pages(0, layout::KERNEL_DATA_PHYS);
        let ring_source = match platform {
            Platform::Pvm if config.read_ahead_stdin => PipeSource::stdin(),
            _ => None,
        };
        let host = HostFacts {
            platform,
            cwd: fs.initial_cwd(),
            stdin_ring: ring_source.is_some(),
        };
        let cpuid_kvm = kvm::try_clone(&kvm);
        let loading = Handoff::new(load_job(
            &ram,
            config,
            (program, program_len),
            host,
            cpuid_kvm,
        ));
        let ticker = Ticker::start(ram.mem(), loading.helper()).ok();
        let (vm, vcpu, synced_regs) = create_machine(&kvm, &ram)?;
        let vm_create = started.elapsed();
        let Loaded {
            kernel,
            mut info,
            exe_path,
        } = loading
            .result()
            .ok_or_else(|| Error::Memory("the thread loading it panicked".into()))??;
        info.tsc_khz = tsc_khz(&vcpu);
        loader::write_boot_info(&ram, &mut info)?;
        let stdin_ring = match ring_source {
            Some(source) => Some(
                StdinRing::new(source, &ram)
                    .map_err(|e| Error::Memory(format!("the stdin ring: {e}")))?,
            ),
            None => None,
        };
        setup_vcpu(&vcpu, kernel.entry)?;
        let tsc_anchor = guest_tsc(&vcpu).map(|tsc| (started.elapsed(), tsc));
        let timings = Timings {
            vm_create,
            load: started.elapsed(),
            ..Default::default()
        };
        Ok(Vm {
            _kvm: kvm,
            _vm: vm,
            vcpu,
            ram,
            started,
            timings,
            info,
            exits: BTreeMap::new(),
            trace_lost: 0,
            ticker,
            deferred: None,
            live: config.observe.live,
            synced_regs,
            fs,
            debug_block: None,
            tsc_anchor,
            platform,
            exe_path,
            stdin_ring,
        })
    }

    /// The program's absolute, canonical path (as given if it has none),
    /// as the guest's /proc/self/exe shows it.
    pub fn exe_path(&self) -> &std::path::Path {
        &self.exe_path
    }

    /// Guest RAM (for inspection).
    pub fn ram(&self) -> &GuestRam {
        &self.ram
    }

    /// The boot info the guest was started with.
    pub fn boot_info(&self) -> &BootInfo {
        &self.info
    }

    /// The guest's CR3 now (its current address space's PML4).
    pub fn cr3(&self) -> Result<u64> {
        let sregs = self
            .vcpu
            .get_sregs()
            .map_err(|e| Error::KvmIoctl("KVM_GET_SREGS", e))?;
        Ok(sregs.cr3)
    }

    /// The guest's general registers now (at an event: the kernel's, in the
    /// middle of its hypercall).
    pub fn regs(&self) -> Result<kvm_bindings::kvm_regs> {
        self.vcpu
            .get_regs()
            .map_err(|e| Error::KvmIoctl("KVM_GET_REGS", e))
    }

    /// The VMAs the guest exported at the last exec, exit or fault event.
    pub fn vma_export(&self) -> Result<Box<VmaExport>> {
        let mut export = Box::new(VmaExport::zeroed());
        if self.info.vma_export_phys == 0 {
            return Err(Error::Config(
                "the VMA export is off (no exec/exit stops asked)".into(),
            ));
        }
        let bytes = crate::memory::pod_bytes_mut(&mut *export);
        self.ram.read_bytes(self.info.vma_export_phys, bytes)?;
        Ok(export)
    }

    /// The vCPU (for measurement modes such as single-stepping).
    pub fn vcpu(&self) -> &VcpuFd {
        &self.vcpu
    }

    /// The vCPU, to run it directly, with guest RAM and the file service
    /// (single-stepping in `bench`).
    pub fn vcpu_and_ram(&mut self) -> (&mut VcpuFd, &GuestRam, &mut HostFs) {
        (&mut self.vcpu, &self.ram, &mut self.fs)
    }

    /// The file service's counters so far.
    pub fn fs_stats(&self) -> &FsStats {
        self.fs.stats()
    }

    /// Trace records lost so far (the ring was full and could not drain).
    pub fn trace_lost(&self) -> u64 {
        self.trace_lost
    }

    /// VM exits so far, by reason.
    pub fn exits(&self) -> &BTreeMap<String, u64> {
        &self.exits
    }

    /// Run until the program ends (stopping at no event).
    pub fn run(&mut self, io: &mut impl HostIo) -> Result<RunReport> {
        loop {
            if let Event::Finished(end) = self.resume(io, &mut |_| {})? {
                return Ok(self.report(end));
            }
        }
    }

    /// The report of a finished run.
    pub fn report(&mut self, end: RunEnd) -> RunReport {
        self.timings.total = self.started.elapsed();
        // What the program read from the stdin ring leaves the host's pipe
        // now; the rest stays there for whoever reads it next.
        if let Some(ring) = self.stdin_ring.as_mut() {
            let _ = ring.settle(&self.ram);
            self.timings.stdin_ring_fills = ring.fills();
        }
        let stats = self.ram.read_pod::<GuestStats>(layout::STATS_PHYS).ok();
        if let Some(s) = &stats {
            self.stamped_phases(s.phase_tsc);
        }
        let stats = stats.filter(|s| s.magic == vmrun_contract::BOOT_MAGIC);
        RunReport {
            outcome: end,
            timings: self.timings.clone(),
            stats,
            leak_checked: self.info.flags & boot_flags::LEAK_CHECK != 0,
        }
    }

    /// Run the guest until the next event the configuration asked for, or
    /// the end of the run. Trace records are handed to `trace` as the ring
    /// fills and before every event; and with [`Observe::live`], resume
    /// also returns [`Event::Tick`] after handing them over once a second
    /// (checked after each hypercall and whenever a signal interrupts the
    /// vCPU: see [`crate::interrupt`]), when a stop signal came, and before
    /// a hypercall that may block.
    pub fn resume(
        &mut self,
        io: &mut impl HostIo,
        trace: &mut dyn FnMut(&[Record]),
    ) -> Result<Event> {
        let resumed = Instant::now();
        loop {
            self.forward_signal();
            if let Some(signal) = crate::interrupt::requested() {
                self.drain(trace)?;
                return Ok(Event::Finished(RunEnd::Interrupted(signal)));
            }
            let block = match self.deferred.take() {
                Some(block) => block,
                None => match self.next_hypercall(io, trace, || resumed.elapsed() >= TICK)? {
                    Ok(block) if self.live && self.may_block(block) && self.drain(trace)? => {
                        self.deferred = Some(block);
                        return Ok(Event::Tick);
                    }
                    Ok(block) => block,
                    Err(event) => return Ok(event),
                },
            };
            let mut io = WithRing {
                inner: io,
                ring: self.stdin_ring.as_mut(),
                ram: &self.ram,
                fill: false,
            };
            let action = match hypercall::handle(&self.ram, block, &mut io, &mut self.fs) {
                Ok(action) => action,
                Err(e) => {
                    let what = format!("bad hypercall block at {block:#x}: {e}");
                    return Ok(Event::Finished(RunEnd::VmFailure(self.dump(&what))));
                }
            };
            self.count_exit(action_name(&action));
            if let Action::Debug(_) = action {
                self.debug_block = Some(block);
            }
            if let Some(event) = self.act(action, trace)? {
                return Ok(event);
            }
            if self.live && resumed.elapsed() >= TICK {
                self.drain(trace)?;
                return Ok(Event::Tick);
            }
        }
    }

    /// Run the vCPU to its next hypercall (its block's address), or the
    /// event that ends this resume: a tick or the VM's failure. `due` says
    /// whether a tick is due when a signal interrupts the vCPU.
    fn next_hypercall(
        &mut self,
        io: &mut impl HostIo,
        trace: &mut dyn FnMut(&[Record]),
        due: impl Fn() -> bool,
    ) -> Result<std::result::Result<u64, Event>> {
        loop {
            self.timings.exits += 1;
            if let Some(t) = &mut self.ticker {
                t.inject(&mut self.vcpu);
                t.entering();
            }
            let exit = match self.vcpu.run() {
                Ok(exit) => classify(exit),
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => Exit::Resume,
                Err(e) => return Err(Error::KvmIoctl("KVM_RUN", e)),
            };
            if let Some(t) = &self.ticker {
                t.left();
            }
            self.forward_signal();
            return Ok(match exit {
                Exit::Hypercall(block) => Ok(block),
                Exit::FastCall => {
                    self.fast_call(io)?;
                    continue;
                }
                // A signal (the guest's timer tick, vmrun's own tick or a
                // stop signal) or an interrupt window: with a live watch,
                // hand the records over now and then.
                Exit::Resume if self.live && (due() || crate::interrupt::requested().is_some()) => {
                    self.drain(trace)?;
                    Err(Event::Tick)
                }
                Exit::Resume => continue,
                Exit::Failure(what) => {
                    self.count_exit("failure");
                    self.drain(trace)?;
                    Err(Event::Finished(RunEnd::VmFailure(self.dump(&what))))
                }
            });
        }
    }

    /// A SIGINT, SIGTERM or SIGHUP vmrun received goes to the guest (see
    /// [`crate::interrupt::take_for_guest`]): written to the stats page's
    /// host_signal word, taken by the guest kernel at the timer interrupt
    /// injected next (SIGINT to pid 1's process group, the others to pid
    /// 1). Without a ticker the signal stays and ends the run.
    fn forward_signal(&mut self) {
        let Some(t) = &self.ticker else {
            return;
        };
        let Some(signal) = crate::interrupt::take_for_guest() else {
            return;
        };
        let at = layout::STATS_PHYS + vmrun_contract::HOST_SIGNAL_OFFSET;
        if self.ram.write_pod(at, &(signal as u64)).is_ok() {
            t.force();
        }
    }

    /// Whether the hypercall at `block` may wait for long: a sleep, or a
    /// read of the host's stdin.
    fn may_block(&self, block: u64) -> bool {
        self.ram
            .read_pod::<vmrun_contract::Hypercall>(block)
            .is_ok_and(|h| h.nr == vmrun_contract::hc::SLEEP || h.nr == vmrun_contract::hc::READ)
    }

    fn act(&mut self, action: Action, trace: &mut dyn FnMut(&[Record])) -> Result<Option<Event>> {
        Ok(match action {
            Action::Continue => None,
            Action::TraceDrain => {
                self.drain(trace)?;
                None
            }
            Action::Event(kind, args) => {
                self.drain(trace)?;
                event_of(kind, args)
            }
            Action::Debug(args) => {
                self.drain(trace)?;
                Some(Event::Debug(DebugStop::of(args)))
            }
            Action::Stop(outcome) => {
                self.drain(trace)?;
                Some(Event::Finished(RunEnd::Guest(outcome)))
            }
        })
    }

    /// Answer the debugger stop the guest waits in with a
    /// [`vmrun_contract::debug::resume`] word.
    pub fn answer_debug_stop(&mut self, word: u64) -> Result<()> {
        let Some(block) = self.debug_block.take() else {
            return Ok(());
        };
        let mut req: vmrun_contract::Hypercall = self.ram.read_pod(block)?;
        req.ret = word as i64;
        self.ram.write_pod(block, &req)
    }

    /// Ask the guest to stop for the debugger at its next timer tick
    /// (gdb's interrupt); false if the VM has no timer to take it.
    pub fn request_debug_interrupt(&mut self) -> bool {
        let Some(t) = &self.ticker else {
            return false;
        };
        let at = layout::STATS_PHYS + vmrun_contract::HOST_SIGNAL_OFFSET;
        let word = vmrun_contract::debug::INTERRUPT_REQUEST;
        if self.ram.write_pod(at, &word).is_err() {
            return false;
        }
        t.force();
        true
    }

    /// Serve the fast call the vCPU stopped at, or decline it (the vCPU
    /// resumes as it is and the kernel serves the call). A read is
    /// declined while a live watch keeps a trace ring: its READ hypercall
    /// hands the records over before it may block ([`Self::resume`]).
    fn fast_call(&mut self, io: &mut impl HostIo) -> Result<()> {
        let mut regs = if self.synced_regs {
            self.vcpu.sync_regs().regs
        } else {
            self.vcpu
                .get_regs()
                .map_err(|e| Error::KvmIoctl("KVM_GET_REGS", e))?
        };
        if self.live && self.info.trace_phys != 0 && regs.rax == 0 {
            self.count_exit("fast call declined");
            return Ok(());
        }
        let ret = if self.info.flags & boot_flags::PLATFORM_PVM != 0 {
            fastcall::Return::UserRights
        } else {
            fastcall::Return::Sysret
        };
        let mut io = WithRing {
            inner: io,
            ring: self.stdin_ring.as_mut(),
            ram: &self.ram,
            fill: true,
        };
        if fastcall::serve(&self.ram, &mut io, &mut self.fs, &mut regs, ret) {
            if self.synced_regs {
                self.vcpu.sync_regs_mut().regs = regs;
                self.vcpu.set_sync_dirty_reg(kvm_ioctls::SyncReg::Register);
            } else {
                self.vcpu
                    .set_regs(&regs)
                    .map_err(|e| Error::KvmIoctl("KVM_SET_REGS", e))?;
            }
            self.timings.fast_calls += 1;
            self.count_exit("fast call");
        } else {
            self.count_exit("fast call declined");
        }
        Ok(())
    }

    fn count_exit(&mut self, reason: &str) {
        *self.exits.entry(reason.to_string()).or_default() += 1;
    }

    /// Hand the trace records the guest has written to `trace`; whether
    /// there were any.
    fn drain(&mut self, trace: &mut dyn FnMut(&[Record])) -> Result<bool> {
        if self.info.trace_phys == 0 {
            return Ok(false);
        }
        let drained =
            crate::inspect::trace::drain(&self.ram, self.info.trace_phys, self.info.trace_len)
                .map_err(|e| Error::Memory(format!("trace ring: {e}")))?;
        self.trace_lost = drained.lost + drained.overrun;
        if !drained.records.is_empty() {
            trace(&drained.records);
        }
        Ok(!drained.records.is_empty())
    }

    /// The milestones the guest stamped in its stats page (`phase_tsc`,
    /// with its TSC) as times since the start: the anchor's time plus the
    /// TSC ticks from the anchor's TSC, at the guest TSC's rate.
    fn stamped_phases(&mut self, stamps: [u64; 4]) {
        let Some((anchor, tsc0)) = self.tsc_anchor else {
            return;
        };
        let khz = u128::from(self.info.tsc_khz);
        let at = |p: u64| {
            let ticks = stamps[p as usize].checked_sub(tsc0).filter(|_| khz > 0)?;
            let ns = u128::from(ticks) * 1_000_000 / khz;
            Some(anchor + Duration::from_nanos(u64::try_from(ns).ok()?))
        };
        self.timings.kernel_entry = at(phase::KERNEL_ENTRY);
        self.timings.kernel_ready = at(phase::KERNEL_READY);
        self.timings.exec_loaded = at(phase::EXEC_LOADED);
    }

    fn dump(&self, what: &str) -> String {
        let mut s = format!("{what}\n");
        if let Ok(r) = self.vcpu.get_regs() {
            s += &format!(
                "  rip {:#018x} rsp {:#018x} rflags {:#x}\n  rax {:#x} rbx {:#x} rcx {:#x} \
                 rdx {:#x}\n  rsi {:#x} rdi {:#x} rbp {:#x}\n  r8 {:#x} r9 {:#x} r10 {:#x} \
                 r11 {:#x} r12 {:#x} r13 {:#x} r14 {:#x} r15 {:#x}\n",
                r.rip,
                r.rsp,
                r.rflags,
                r.rax,
                r.rbx,
                r.rcx,
                r.rdx,
                r.rsi,
                r.rdi,
                r.rbp,
                r.r8,
                r.r9,
                r.r10,
                r.r11,
                r.r12,
                r.r13,
                r.r14,
                r.r15
            );
        }
        if let Ok(sr) = self.vcpu.get_sregs() {
            s += &format!(
                "  cr0 {:#x} cr2 {:#x} cr3 {:#x} cr4 {:#x} efer {:#x} cs {:#x} ss {:#x}",
                sr.cr0, sr.cr2, sr.cr3, sr.cr4, sr.efer, sr.cs.selector, sr.ss.selector
            );
        }
        s
    }
}

fn event_of(kind: u64, [a, b, user_frames, user_tables]: [u64; 4]) -> Option<Event> {
    match kind {
        event::EXEC => Some(Event::Exec {
            user_frames,
            user_tables,
        }),
        event::EXIT => Some(Event::Exit {
            user_frames,
            user_tables,
        }),
        event::FAULT => Some(Event::Fault {
            count: a,
            addr: b,
            user_frames,
            user_tables,
        }),
        event::SYSCALL => Some(Event::Syscall {
            nr: a,
            result: b as i64,
        }),
        _ => None,
    }
}

/// The name a hypercall is counted under in [`Vm::exits`].
fn action_name(action: &Action) -> &'static str {
    match action {
        Action::Continue => "hypercall",
        Action::TraceDrain => "trace drain",
        Action::Event(..) => "event",
        Action::Debug(..) => "debug stop",
        Action::Stop(_) => "exit",
    }
}

/// A vCPU exit, reduced to what the loop acts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exit {
    /// A hypercall: the request block's guest-physical address.
    Hypercall(u64),
    /// The syscall trampoline's fast call ([`crate::fastcall`]), or a
    /// program's own write to its port.
    FastCall,
    /// Nothing for the VMM to serve (a signal or an interrupt window):
    /// run the guest again.
    Resume,
    /// Anything else ends the run; the text says what happened.
    Failure(String),
}

/// Decide what a vCPU exit means (a pure function of the exit).
pub fn classify(exit: VcpuExit) -> Exit {
    match exit {
        VcpuExit::IoOut(port, data) if port == HYPERCALL_PORT && data.len() == 4 => {
            Exit::Hypercall(u64::from(u32::from_le_bytes([
                data[0], data[1], data[2], data[3],
            ])))
        }
        VcpuExit::IoOut(FAST_CALL_PORT, _) => Exit::FastCall,
        VcpuExit::IoOut(port, data) => Exit::Failure(format!(
            "guest wrote {} bytes to unknown I/O port {port:#x}",
            data.len()
        )),
        VcpuExit::IrqWindowOpen => Exit::Resume,
        VcpuExit::IoIn(port, _) => Exit::Failure(format!("guest read unknown I/O port {port:#x}")),
        VcpuExit::Shutdown => Exit::Failure("guest shut down (triple fault)".into()),
        VcpuExit::Hlt => Exit::Failure("guest halted without reporting an exit".into()),
        VcpuExit::InternalError => {
            Exit::Failure("KVM internal error (instruction emulation failed)".into())
        }
        VcpuExit::FailEntry(reason, cpu) => {
            Exit::Failure(format!("KVM entry failure (reason {reason:#x}, cpu {cpu})"))
        }
        VcpuExit::MmioRead(addr, _) | VcpuExit::MmioWrite(addr, _) => {
            Exit::Failure(format!("guest touched memory outside RAM at {addr:#x}"))
        }
        other => Exit::Failure(format!("unexpected VM exit: {other:?}")),
    }
}

/// Opens PROGRAM and returns it with its length, refusing at once, before
/// reading a byte, what execve(2) refuses with EACCES: anything but a
/// regular file (a directory, FIFO, socket or device), and a file without
/// execute permission for vmrun's effective user (or on a `noexec` mount).
/// Its bytes are read later straight into guest memory.
fn open_program(path: &std::path::Path) -> Result<(std::fs::File, u64)> {
    use std::os::unix::fs::OpenOptionsExt;
    let meta = std::fs::metadata(path).map_err(|e| program_error(path, e))?;
    check_executable(path, &meta)?;
    // O_NONBLOCK: should the path have become a FIFO since the check, the
    // open does not wait for a writer; the fstat below refuses it.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| program_error(path, e))?;
    let meta = file.metadata().map_err(|e| program_error(path, e))?;
    check_executable(path, &meta)?;
    Ok((file, meta.len()))
}

/// EACCES as execve gives it, with the reason in words.
fn check_executable(path: &std::path::Path, meta: &std::fs::Metadata) -> Result<()> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    let what = if t.is_dir() {
        return Err(Error::ProgramUnusable(
            path.to_path_buf(),
            "Is a directory".into(),
        ));
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_file() {
        let c = std::ffi::CString::new(path.as_os_str().as_bytes())
            .map_err(|_| Error::ProgramNotFound(path.to_path_buf()))?;
        // SAFETY: `c` is a NUL-terminated path that outlives the call.
        let r =
            unsafe { libc::faccessat(libc::AT_FDCWD, c.as_ptr(), libc::X_OK, libc::AT_EACCESS) };
        if r == 0 {
            return Ok(());
        }
        return Err(program_error(path, std::io::Error::last_os_error()));
    } else {
        "an unknown kind of file"
    };
    Err(Error::ProgramUnusable(
        path.to_path_buf(),
        format!("Permission denied ({what}, not a regular file)"),
    ))
}

fn program_error(path: &std::path::Path, e: std::io::Error) -> Error {
    match e.kind() {
        std::io::ErrorKind::NotFound => Error::ProgramNotFound(path.to_path_buf()),
        std::io::ErrorKind::PermissionDenied => {
            Error::ProgramUnusable(path.to_path_buf(), "Permission denied".into())
        }
        // The C library's words without Rust's " (os error N)".
        _ => {
            let text = e.to_string();
            let words = text.split(" (os error").next().unwrap_or(&text);
            Error::ProgramUnusable(path.to_path_buf(), words.to_string())
        }
    }
}

fn validate_mem(size: u64) -> Result<()> {
    if !(layout::MIN_MEM..=layout::MAX_MEM).contains(&size)
        || !size.is_multiple_of(layout::HUGE_PAGE_SIZE)
    {
        return Err(Error::Config(format!(
            "--mem {size}: guest memory must be a multiple of 2 MiB between {} MiB and {} GiB",
            layout::MIN_MEM >> 20,
            layout::MAX_MEM >> 30
        )));
    }
    Ok(())
}

/// KVM's supported CPUID, asked once per vmrun process (the bench and the
/// tests create many VMs in one). The loading thread asks first
/// ([`load_job`]), while this one has KVM create the VM and its vCPU (a
/// nested host exits for every CPUID leaf it reads: about 0.4 ms here);
/// a caller that comes while it asks waits for its answer.
fn supported_cpuid(kvm: &Kvm) -> Result<CpuId> {
    static CPUID: std::sync::OnceLock<std::result::Result<CpuId, kvm_ioctls::Error>> =
        std::sync::OnceLock::new();
    CPUID
        .get_or_init(|| kvm.get_supported_cpuid(KVM_MAX_CPUID_ENTRIES))
        .clone()
        .map_err(|e| Error::KvmIoctl("KVM_GET_SUPPORTED_CPUID", e))
}

/// The guest's TSC now (its IA32_TSC MSR), if KVM reads it.
fn guest_tsc(vcpu: &VcpuFd) -> Option<u64> {
    const IA32_TSC: u32 = 0x10;
    let mut msrs = kvm_bindings::Msrs::from_entries(&[kvm_bindings::kvm_msr_entry {
        index: IA32_TSC,
        ..Default::default()
    }])
    .ok()?;
    match vcpu.get_msrs(&mut msrs) {
        Ok(1) => Some(msrs.as_slice()[0].data),
        _ => None,
    }
}

/// The guest TSC frequency (kHz, 0 if KVM does not tell), asked once per
/// vmrun process: every vCPU vmrun creates gets the host's.
fn tsc_khz(vcpu: &VcpuFd) -> u64 {
    static TSC_KHZ: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    if let Some(&k) = TSC_KHZ.get() {
        return k;
    }
    match vcpu.get_tsc_khz() {
        Ok(k) => *TSC_KHZ.get_or_init(|| k as u64),
        Err(_) => 0,
    }
}

/// The VM with `ram` as its memory and its vCPU with CPUID set, and
/// whether the vCPU's general registers come in its run page at every
/// exit (KVM_CAP_SYNC_REGS, where KVM offers it: a fast call then reads
/// and answers them without two ioctls, about 10 µs on kvm_pvm).
///
/// The memory goes in last: registering it waits for a grace period, which
/// passes sooner once the ticker thread's first touches of guest RAM (the
/// zeroing of fresh host pages) are over (0.5 against 0.2 ms measured).
fn create_machine(kvm: &Kvm, ram: &GuestRam) -> Result<(VmFd, VcpuFd, bool)> {
    let vm = kvm
        .create_vm()
        .map_err(|e| Error::KvmIoctl("KVM_CREATE_VM", e))?;
    let mut vcpu = vm
        .create_vcpu(0)
        .map_err(|e| Error::KvmIoctl("KVM_CREATE_VCPU", e))?;
    let synced = kvm.check_extension(kvm_ioctls::Cap::SyncRegs);
    if synced {
        vcpu.set_sync_valid_reg(kvm_ioctls::SyncReg::Register);
    }
    let cpuid = supported_cpuid(kvm)?;
    vcpu.set_cpuid2(&cpuid)
        .map_err(|e| Error::KvmIoctl("KVM_SET_CPUID2", e))?;
    ram.register(&vm)?;
    Ok((vm, vcpu, synced))
}

/// What the host found out that goes into the boot info (the TSC
/// frequency, a vCPU's, comes later: [`Vm::new`]).
struct HostFacts {
    platform: Platform,
    /// The guest path of the initial working directory.
    cwd: Vec<u8>,
    /// Whether the stdin ring is on (mapped, and said in the boot flags).
    stdin_ring: bool,
}

/// What [`load_guest`] put into guest RAM.
struct Loaded {
    kernel: LoadedKernel,
    /// The boot info, not yet written: [`loader::write_boot_info`].
    info: BootInfo,
    /// The program's canonical path.
    exe_path: PathBuf,
}

/// [`load_guest`] as a job for another thread, owning what it reads: the
/// program file (open, with its length) among them. With `cpuid_kvm` (a
/// handle of /dev/kvm of its own) it first asks KVM's supported CPUID,
/// which the creating thread then finds answered ([`supported_cpuid`]).
fn load_job(
    ram: &GuestRam,
    config: &VmConfig,
    (program, len): (std::fs::File, u64),
    host: HostFacts,
    cpuid_kvm: Option<Kvm>,
) -> impl FnOnce() -> Result<Loaded> + Send + 'static {
    let (ram, config) = (ram.clone(), config.clone());
    move || {
        if let Some(kvm) = cpuid_kvm {
            // An error is the creating thread's to report, when it asks.
            let _ = supported_cpuid(&kvm);
        }
        let program = loader::ProgramSource::File(&program, len);
        load_guest(&ram, &config, program, &host)
    }
}

/// The kernel image, its boot tables, the program and its arguments, in
/// guest RAM.
fn load_guest(
    ram: &GuestRam,
    config: &VmConfig,
    program: loader::ProgramSource,
    host: &HostFacts,
) -> Result<Loaded> {
    let kernel = loader::load_embedded_kernel(ram)?;
    let exe_path = std::fs::canonicalize(&config.program).unwrap_or(config.program.clone());
    let info = write_boot_state(ram, &kernel, config, program, host, &exe_path)?;
    Ok(Loaded {
        kernel,
        info,
        exe_path,
    })
}

fn write_boot_state(
    ram: &GuestRam,
    kernel: &LoadedKernel,
    config: &VmConfig,
    program: loader::ProgramSource,
    host: &HostFacts,
    exe_path: &std::path::Path,
) -> Result<BootInfo> {
    boot::write_boot_tables(ram, &kernel.segments, host.stdin_ring)?;
    let execfn = config.program.as_os_str().as_encoded_bytes();
    let args = loader::args_block(execfn, &config.argv, &config.env)?;
    let lens = loader::string_lengths(execfn, &config.argv, &config.env);
    let mut flags = 0;
    if host.platform == Platform::Pvm {
        flags |= boot_flags::PLATFORM_PVM;
    }
    if host.stdin_ring {
        flags |= boot_flags::STDIN_RING;
    }
    if config.aslr {
        flags |= boot_flags::ASLR;
    }
    if config.verbose {
        flags |= boot_flags::VERBOSE;
    }
    flags |= config.fault_size.flags();
    let o = &config.observe;
    if o.stop_at_exec_exit {
        flags |= boot_flags::NOTIFY_EXEC_EXIT;
    }
    if o.fault_every > 0 {
        flags |= boot_flags::NOTIFY_FAULTS;
    }
    if o.stop_at_syscalls {
        flags |= boot_flags::NOTIFY_SYSCALLS;
    }
    if o.debugger {
        flags |= boot_flags::DEBUGGER;
    }
    if o.leak_check {
        flags |= boot_flags::LEAK_CHECK;
    }
    // AT_RANDOM's bytes and the independent --aslr seed, drawn at once.
    let drawn = crate::sys::random_bytes::<24>();
    let (random, seed) = drawn.split_at(16);
    let random: [u8; 16] = random.try_into().unwrap_or_default();
    let seed: [u8; 8] = seed.try_into().unwrap_or_default();
    let payload = BootPayload {
        program,
        args: &args,
        lens: &lens,
        exe_path: exe_path.as_os_str().as_encoded_bytes(),
        cwd: &host.cwd,
        argc: config.argv.len() as u32,
        envc: config.env.len() as u32,
        flags,
        random,
        aslr_seed: u64::from_le_bytes(seed),
        trace_mask: o.trace_mask,
        trace_records: if o.trace_records == 0 {
            DEFAULT_TRACE_RECORDS
        } else {
            o.trace_records
        },
        vma_export: o.stop_at_exec_exit,
        notify_fault_every: o.fault_every,
    };
    let mut info = loader::write_payload(ram, kernel, &payload)?;
    if let Some(modes) = config.stdio_modes {
        info.stdio_modes = modes;
    }
    info.ignored_signals = config.ignored_signals;
    Ok(info)
}

fn setup_vcpu(vcpu: &VcpuFd, entry: u64) -> Result<()> {
    let mut sregs = vcpu
        .get_sregs()
        .map_err(|e| Error::KvmIoctl("KVM_GET_SREGS", e))?;
    boot::setup_sregs(&mut sregs);
    vcpu.set_sregs(&sregs)
        .map_err(|e| Error::KvmIoctl("KVM_SET_SREGS", e))?;
    vcpu.set_regs(&boot::entry_regs(entry))
        .map_err(|e| Error::KvmIoctl("KVM_SET_REGS", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hypercall_port_write_is_a_hypercall() {
        let data = 0x1234u32.to_le_bytes();
        assert_eq!(
            classify(VcpuExit::IoOut(HYPERCALL_PORT, &data)),
            Exit::Hypercall(0x1234)
        );
    }

    #[test]
    fn an_out_to_the_fast_call_port_is_a_fast_call_whatever_its_width() {
        for data in [&[0u8][..], &[1, 0], &[1, 0, 0, 0]] {
            assert_eq!(
                classify(VcpuExit::IoOut(FAST_CALL_PORT, data)),
                Exit::FastCall
            );
        }
    }

    #[test]
    fn other_exits_are_failures_with_a_reason() {
        let data = [0u8; 1];
        let Exit::Failure(why) = classify(VcpuExit::IoOut(0x80, &data)) else {
            panic!()
        };
        assert!(why.contains("unknown I/O port 0x80"));
        assert!(matches!(classify(VcpuExit::Shutdown), Exit::Failure(w) if w.contains("triple")));
        assert!(matches!(classify(VcpuExit::Hlt), Exit::Failure(_)));
    }

    #[test]
    fn leak_check_passes_only_when_everything_was_freed() {
        let clean = GuestStats {
            frames_in_use: 9,
            frames_kernel: 9,
            ..Default::default()
        };
        assert_eq!(leak_report(&clean), None);
        let stray = GuestStats {
            frames_in_use: 10,
            frames_kernel: 9,
            ..Default::default()
        };
        assert!(leak_report(&stray)
            .unwrap()
            .contains("1 frames in use beyond"));
        let tables = GuestStats {
            user_table_pages: 2,
            ..clean
        };
        assert!(leak_report(&tables)
            .unwrap()
            .contains("2 user page-table pages"));
    }

    #[test]
    fn mem_size_must_be_sane() {
        assert!(validate_mem(256 << 20).is_ok());
        assert!(validate_mem(1 << 20).is_err());
        assert!(validate_mem((256 << 20) + 4096).is_err());
    }
}
