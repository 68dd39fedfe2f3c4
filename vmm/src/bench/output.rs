//! What a workload program prints (`sample <cycles>`, `total <cycles>
//! <units>`, `minflt <n>`; see `images/c/bench.h`) and its parser. The same
//! lines come from the guest run and the native run.

/// What a workload program printed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProgramOutput {
    /// Cycles of each timed operation, in order.
    pub samples: Vec<u64>,
    /// Cycles of the whole loop and how many units (pages, calls) it covered.
    pub total: Option<(u64, u64)>,
    /// Minor faults taken in the loop; `None` where the program could not
    /// tell (getrusage failed).
    pub minflt: Option<u64>,
}

/// Parse a workload program's stdout (see `images/c/bench.h`).
pub fn parse_output(text: &str) -> Result<ProgramOutput, String> {
    let mut out = ProgramOutput::default();
    for (i, line) in text.lines().enumerate() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let num = |s: &str| {
            s.parse::<u64>()
                .map_err(|_| format!("line {}: bad number {s:?} in {line:?}", i + 1))
        };
        match fields.as_slice() {
            [] => {}
            ["sample", c] => out.samples.push(num(c)?),
            ["total", c, u] => out.total = Some((num(c)?, num(u)?)),
            ["minflt", "-1"] => out.minflt = None,
            ["minflt", n] => out.minflt = Some(num(n)?),
            _ => return Err(format!("line {}: unexpected output {line:?}", i + 1)),
        }
    }
    if out.total.is_none() {
        return Err("the program printed no `total` line".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_output_is_parsed() {
        let out = parse_output("sample 10\nsample 20\n\ntotal 300 2\nminflt 2\n").unwrap();
        assert_eq!(
            out,
            ProgramOutput {
                samples: vec![10, 20],
                total: Some((300, 2)),
                minflt: Some(2),
            }
        );
        let guest = parse_output("total 1 1\nminflt -1\n").unwrap();
        assert_eq!(guest.minflt, None);
    }

    #[test]
    fn bad_program_output_is_refused_with_the_line() {
        let e = parse_output("sample 10\nhello\ntotal 1 1\n").unwrap_err();
        assert!(e.contains("line 2") && e.contains("hello"), "{e}");
        let e = parse_output("sample x\ntotal 1 1\n").unwrap_err();
        assert!(e.contains("bad number \"x\""), "{e}");
        assert!(parse_output("sample 1\n")
            .unwrap_err()
            .contains("no `total`"));
    }
}
