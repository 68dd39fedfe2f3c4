//! The guest kernel's symbols, read from its ELF image: where each function
//! is, where the IDT entry stubs (`trap_stub_N`) are and which vector each
//! serves, and a legacy Rust demangler so the profile names functions the
//! way the source does.

use super::KERNEL_HALF;

/// Symbols of the guest kernel ELF: where each function is, where the IDT
/// entry stubs are, and which vector each stub serves.
pub struct KernelMap {
    /// (start, end, demangled name), sorted by start.
    pub(super) symbols: Vec<(u64, u64, String)>,
    /// (start, end, vector) of each `trap_stub_N`.
    stubs: Vec<(u64, u64, u64)>,
    pub(super) exec_initial: Option<(u64, u64)>,
    /// The page-fault entry's fast path (`vmrun_fault_entry`) and its way
    /// back (`vmrun_fault_return`).
    pub(super) fault_entry: Option<(u64, u64)>,
    pub(super) fault_return: Option<(u64, u64)>,
    /// The executable segments' bytes, by their first address.
    text: Vec<(u64, Vec<u8>)>,
}

impl KernelMap {
    /// Read the symbol table of a kernel ELF image.
    pub fn new(image: &[u8]) -> Result<KernelMap, String> {
        let elf = goblin::elf::Elf::parse(image).map_err(|e| format!("kernel ELF: {e}"))?;
        let mut raw: Vec<(u64, u64, String)> = elf
            .syms
            .iter()
            .filter(|s| s.st_value >= KERNEL_HALF && s.st_shndx != 0)
            .filter(|s| matches!(s.st_type(), goblin::elf::sym::STT_FUNC | 0))
            .filter_map(|s| {
                let name = elf.strtab.get_at(s.st_name)?;
                (!name.is_empty()).then(|| (s.st_value, s.st_size, demangle(name)))
            })
            .collect();
        raw.sort_by_key(|s| (s.0, std::cmp::Reverse(s.1)));
        raw.dedup_by_key(|s| s.0);
        if raw.is_empty() {
            return Err("the guest kernel ELF has no symbols".into());
        }
        let symbols: Vec<(u64, u64, String)> = (0..raw.len())
            .map(|i| {
                let (start, size, ref name) = raw[i];
                let next = raw.get(i + 1).map_or(u64::MAX, |n| n.0);
                let end = if size > 0 {
                    (start + size).min(next)
                } else {
                    next
                };
                (start, end, name.clone())
            })
            .collect();
        let find =
            |pred: &dyn Fn(&str) -> bool| symbols.iter().find(|s| pred(&s.2)).map(|s| (s.0, s.1));
        let stubs = symbols
            .iter()
            .filter_map(|(a, b, n)| Some((*a, *b, n.strip_prefix("trap_stub_")?.parse().ok()?)))
            .collect::<Vec<_>>();
        if stubs.is_empty() {
            return Err("the guest kernel ELF has no trap_stub_N symbols".into());
        }
        let text = elf
            .program_headers
            .iter()
            .filter(|ph| ph.p_type == goblin::elf::program_header::PT_LOAD && ph.is_executable())
            .filter_map(|ph| {
                let bytes = image.get(ph.file_range())?;
                Some((ph.p_vaddr, bytes.to_vec()))
            })
            .collect();
        Ok(KernelMap {
            exec_initial: find(&|n| n.ends_with("boot::exec_initial")),
            fault_entry: find(&|n| n == "vmrun_fault_entry"),
            fault_return: find(&|n| n == "vmrun_fault_return"),
            symbols,
            stubs,
            text,
        })
    }

    /// Whether the instruction at `pc` (an instruction's first byte) is a
    /// `rep movs` or `rep stos`: one instruction, which the single-step
    /// reports once, that the CPU (and kvm_pvm's emulator of ring 0)
    /// repeats RCX times.
    pub(super) fn repeated_string_op(&self, pc: u64) -> bool {
        let Some(bytes) = self.text.iter().find_map(|(start, b)| {
            let at = usize::try_from(pc.checked_sub(*start)?).ok()?;
            b.get(at..)
        }) else {
            return false;
        };
        is_rep_movs_or_stos(bytes)
    }

    /// The symbol holding `pc`.
    pub(super) fn symbol(&self, pc: u64) -> Option<usize> {
        let i = self.symbols.partition_point(|s| s.0 <= pc).checked_sub(1)?;
        (pc < self.symbols[i].1).then_some(i)
    }

    /// The vector whose entry stub holds `pc`.
    pub(super) fn stub_vector(&self, pc: u64) -> Option<u64> {
        self.stubs
            .iter()
            .find(|s| (s.0..s.1).contains(&pc))
            .map(|s| s.2)
    }
}

/// Whether `code` starts with a `rep movs` or `rep stos` instruction: its
/// prefixes (operand or address size, segment, REP and a REX last), then
/// opcode A4/A5 (MOVS) or AA/AB (STOS), with REP (F3) among the prefixes.
pub fn is_rep_movs_or_stos(code: &[u8]) -> bool {
    let mut rep = false;
    for (i, &b) in code.iter().enumerate().take(15) {
        match b {
            0xf3 => rep = true,
            0x66 | 0x67 | 0xf2 | 0x2e | 0x36 | 0x3e | 0x26 | 0x64 | 0x65 => {}
            // A REX prefix comes last, right before the opcode.
            0x40..=0x4f => {
                return rep && matches!(code.get(i + 1), Some(0xa4 | 0xa5 | 0xaa | 0xab))
            }
            0xa4 | 0xa5 | 0xaa | 0xab => return rep,
            _ => return false,
        }
    }
    false
}

/// Legacy Rust symbol demangling, enough for a profile
/// (`_ZN12guest_kernel4boot12exec_initial17h0123456789abcdefE` is
/// `guest_kernel::boot::exec_initial`); other names are returned as they are.
pub fn demangle(name: &str) -> String {
    let Some(mut rest) = name.strip_prefix("_ZN") else {
        return name.to_string();
    };
    let mut parts = Vec::new();
    while let Some(len_end) = rest.find(|c: char| !c.is_ascii_digit()) {
        let Ok(len) = rest[..len_end].parse::<usize>() else {
            break;
        };
        let Some(part) = rest.get(len_end..len_end + len) else {
            return name.to_string();
        };
        // A component that starts with an escape gets a `_` in front.
        parts.push(
            part.strip_prefix('_')
                .filter(|p| p.starts_with('$'))
                .unwrap_or(part),
        );
        rest = &rest[len_end + len..];
    }
    if rest != "E" || parts.is_empty() {
        return name.to_string();
    }
    if let Some(last) = parts.last() {
        if last.len() == 17 && last.starts_with('h') {
            parts.pop();
        }
    }
    let mut s = parts.join("::");
    for (from, to) in [
        ("$LT$", "<"),
        ("$GT$", ">"),
        ("$RF$", "&"),
        ("$BP$", "*"),
        ("$C$", ","),
        ("$u20$", " "),
        ("$u27$", "'"),
        ("$u5b$", "["),
        ("$u5d$", "]"),
        ("$u7b$", "{"),
        ("$u7d$", "}"),
        ("..", "::"),
    ] {
        s = s.replace(from, to);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_string_ops_are_told_from_other_instructions() {
        // rep movsq, rep stosb, rep movsb, rep stosq with a segment
        // prefix, and the same opcodes without REP or after other bytes.
        for code in [
            &[0xf3, 0x48, 0xa5][..],
            &[0xf3, 0xaa],
            &[0xf3, 0xa4],
            &[0x64, 0xf3, 0x48, 0xab],
        ] {
            assert!(is_rep_movs_or_stos(code), "{code:x?}");
        }
        for code in [
            &[0x48, 0xa5][..],
            &[0xa4],
            &[0xf3, 0x48, 0xa7],
            &[0xf3, 0x0f, 0xb8, 0xc0],
            &[0xf3, 0xc3],
            &[0x48, 0x89, 0xf3],
            &[0xf3, 0x48],
            &[],
        ] {
            assert!(!is_rep_movs_or_stos(code), "{code:x?}");
        }
    }
    use crate::loader;

    #[test]
    fn rust_symbols_are_demangled() {
        assert_eq!(
            demangle("_ZN12guest_kernel4boot12exec_initial17h0123456789abcdefE"),
            "guest_kernel::boot::exec_initial"
        );
        assert_eq!(
            demangle("_ZN12guest_kernel2mm5fault45_$LT$impl$u20$guest_kernel..mm..space..Mm$GT$17handle_page_fault17h0123456789abcdefE"),
            "guest_kernel::mm::fault::<impl guest_kernel::mm::space::Mm>::handle_page_fault"
        );
        assert_eq!(demangle("trap_stub_14"), "trap_stub_14");
        assert_eq!(demangle("_ZN3bad"), "_ZN3bad");
    }

    #[test]
    fn the_embedded_kernel_has_the_symbols_stepping_needs() {
        let map = KernelMap::new(loader::GUEST_KERNEL).unwrap();
        assert!(map.stubs.iter().any(|s| s.2 == 14));
        assert!(map.stubs.iter().any(|s| s.2 == 0x80));
        assert!(map.fault_entry.is_some() && map.fault_return.is_some());
        let (pf, _, _) = *map.stubs.iter().find(|s| s.2 == 14).unwrap();
        assert_eq!(map.stub_vector(pf + 2), Some(14));
        assert_eq!(map.stub_vector(0x40_0000), None);
    }
}
