//! `monitor` commands: the guest kernel's own structures at the stop, as
//! the inspector's options print them (`--maps`, `--pagetables`,
//! `--stats`, `--check`), for the stopped process or the one a pid names.

use super::DebugTarget;
use crate::error::Result;
use crate::memory::GuestRam;
use gdbstub::target::ext::monitor_cmd::{ConsoleOutput, MonitorCmd};

const HELP: &str = "\
vmrun monitor commands (PID: another process than the stopped one):
  monitor maps [PID]        the VMAs, as /proc/PID/maps (and --maps) show them
  monitor pt ADDR [PID]     the four-level walk of one virtual address
  monitor pagetables [PID]  the user half of the page tables, as --pagetables
  monitor stats             faults, system calls and exec phases so far
  monitor check             the host's page-table check now, and its verdict
  monitor ps                the processes and their address spaces
  monitor siginfo           why the program stopped: signal, fault address
  monitor help              this list
";

impl MonitorCmd for DebugTarget {
    fn handle_monitor_cmd(
        &mut self,
        cmd: &[u8],
        mut out: ConsoleOutput<'_>,
    ) -> std::result::Result<(), String> {
        let cmd = String::from_utf8_lossy(cmd);
        let text = match self.monitor(&cmd) {
            Ok(text) => text,
            Err(e) => format!("error: {e}\n"),
        };
        out.write_raw(text.as_bytes());
        Ok(())
    }
}

impl DebugTarget {
    fn monitor(&mut self, cmd: &str) -> Result<String> {
        let words: Vec<&str> = cmd.split_whitespace().collect();
        let pid =
            |i: usize| -> Result<Option<u64>> { words.get(i).map(|w| parse_number(w)).transpose() };
        if self.stop.is_none() && !matches!(words.first(), Some(&"help") | None) {
            return Ok("the program is not stopped (it has ended)\n".into());
        }
        Ok(match words.as_slice() {
            ["maps", ..] => self.session.maps_now(pid(1)?)?,
            ["pagetables", ..] => self.session.pagetables_now(pid(1)?)?,
            ["pt", addr, ..] => {
                let va = parse_number(addr)?;
                let root = self.session.root_now(pid(2)?)?;
                describe_walk(self.session.vm().ram(), root, va)
            }
            ["stats"] => self.session.stats_now(),
            ["check"] => {
                let violations = self.session.check_now()?;
                let mut s = match violations.len() {
                    0 => "check: ok (page tables agree with the VMAs and the frame counts)\n"
                        .to_string(),
                    n => format!("check: {n} violations\n"),
                };
                for v in violations {
                    s += &format!("  {v}\n");
                }
                s
            }
            ["ps"] => self
                .session
                .spaces_now()?
                .iter()
                .map(|s| {
                    format!(
                        "pid {} CR3 {:#x} {} VMAs, {} user frames, {} table pages\n",
                        s.pid,
                        s.root,
                        s.vmas.len(),
                        s.user_frames,
                        s.user_table_pages
                    )
                })
                .collect(),
            ["siginfo"] => match self.stop {
                Some(s) => format!(
                    "pid {} stopped: signal {}{}, fault address {:#x}\n",
                    s.pid,
                    s.signal,
                    match s.reason {
                        vmrun_contract::debug::reason::SIGNAL => "",
                        vmrun_contract::debug::reason::BREAKPOINT => " (int3)",
                        vmrun_contract::debug::reason::STEP => " (a step or #DB)",
                        vmrun_contract::debug::reason::INTERRUPT => " (gdb's interrupt)",
                        _ => " (before the first instruction)",
                    },
                    s.addr
                ),
                None => String::new(),
            },
            [] | ["help"] => HELP.to_string(),
            _ => format!("unknown monitor command '{cmd}'\n{HELP}"),
        })
    }
}

fn parse_number(w: &str) -> Result<u64> {
    let parsed = match w.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => w.parse(),
    };
    parsed.map_err(|_| crate::error::Error::Config(format!("'{w}' is not a number")))
}

/// Level names from the top, as the inspector names them.
const LEVELS: [&str; 4] = ["PML4", "PDPT", "PD", "PT"];

/// The walk of `va` from the table at `root`: each level's index, entry
/// address, entry and flags, then the frame and the offset in it.
pub fn describe_walk(ram: &GuestRam, root: u64, va: u64) -> String {
    let mut s = format!("walk of {va:#x} from CR3 {root:#x}:\n");
    let mut table = root & ADDR_MASK;
    for (depth, name) in LEVELS.iter().enumerate() {
        let shift = 39 - 9 * depth as u32;
        let index = (va >> shift) & 0x1ff;
        let at = table + index * 8;
        let entry: u64 = match ram.read_pod(at) {
            Ok(e) => e,
            Err(_) => return s + &format!("  {name}[{index}] at {at:#x}: outside RAM\n"),
        };
        s += &format!(
            "  {name:<4}[{index:3}] at {at:#011x}: {entry:#018x} {}\n",
            entry_flags(entry)
        );
        if entry & 1 == 0 {
            return s + "  not present: an access faults\n";
        }
        let huge = entry & (1 << 7) != 0 && (depth == 1 || depth == 2);
        if depth == 3 || huge {
            let size = 1u64 << shift;
            let frame = entry & ADDR_MASK & !(size - 1);
            let offset = va & (size - 1);
            return s + &format!(
                "  frame {frame:#x} ({} page), offset {offset:#x}: physical {:#x}\n",
                match size {
                    0x1000 => "4 KiB",
                    0x20_0000 => "2 MiB",
                    _ => "1 GiB",
                },
                frame + offset
            );
        }
        table = entry & ADDR_MASK;
    }
    s
}

const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

fn entry_flags(e: u64) -> String {
    let bits = [
        (0, "P"),
        (1, "W"),
        (2, "U"),
        (3, "PWT"),
        (4, "PCD"),
        (5, "A"),
        (6, "D"),
        (7, "PS"),
        (8, "G"),
        (63, "NX"),
    ];
    let set: Vec<&str> = bits
        .iter()
        .filter(|(b, _)| e & (1 << b) != 0)
        .map(|(_, n)| *n)
        .collect();
    set.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_parse_in_hex_and_decimal() {
        assert_eq!(parse_number("0x10").ok(), Some(16));
        assert_eq!(parse_number("42").ok(), Some(42));
        assert!(parse_number("x").is_err());
    }

    #[test]
    fn entry_flags_name_each_bit() {
        assert_eq!(entry_flags(0x8000_0000_0000_0067), "P W U A D NX");
        assert_eq!(entry_flags(0), "");
    }

    #[test]
    fn walk_reports_each_level_and_the_frame() {
        let ram = GuestRam::new(1 << 20).unwrap();
        // PML4 at 0x1000 -> PDPT 0x2000 -> PD 0x3000 -> PT 0x4000 -> 0x5000.
        let va = 0x40_1234u64;
        ram.write_pod(0x1000, &(0x2000u64 | 0x7)).unwrap();
        ram.write_pod(0x2000, &(0x3000u64 | 0x7)).unwrap();
        ram.write_pod(0x3000 + 2 * 8, &(0x4000u64 | 0x7)).unwrap();
        ram.write_pod(0x4000 + 8, &(0x5000u64 | 0x25)).unwrap();
        let text = describe_walk(&ram, 0x1000, va);
        assert!(text.contains("PML4[  0]"), "{text}");
        assert!(text.contains("PT  [  1]"), "{text}");
        assert!(text.contains("physical 0x5234"), "{text}");
        let text = describe_walk(&ram, 0x1000, 0x7000_0000);
        assert!(text.contains("not present"), "{text}");
    }
}
