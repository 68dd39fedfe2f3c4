use super::*;
use crate::inspect::pagetable::{walk, WalkOptions};
use crate::inspect::stats::Stats;
use crate::inspect::testspace::legal;
use vmrun_contract::trace::{kind, resolution, Record};

/// A tiny XML well-formedness check: tags balance, and text holds no raw
/// `<` or stray `&`.
fn assert_well_formed(svg: &str) {
    let mut stack: Vec<String> = Vec::new();
    let mut rest = svg;
    while let Some(open) = rest.find('<') {
        assert_text_ok(&rest[..open]);
        let close = rest[open..].find('>').expect("unclosed tag") + open;
        let tag = &rest[open + 1..close];
        rest = &rest[close + 1..];
        if tag.starts_with('?') || tag.starts_with('!') {
            continue;
        }
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(stack.pop().as_deref(), Some(name), "mismatched </{name}>");
        } else if !tag.ends_with('/') {
            let name = tag.split_whitespace().next().unwrap();
            stack.push(name.to_string());
        }
        assert_eq!(
            tag.matches('"').count() % 2,
            0,
            "unbalanced quotes in <{tag}>"
        );
    }
    assert_text_ok(rest);
    assert!(stack.is_empty(), "unclosed: {stack:?}");
}

fn assert_text_ok(text: &str) {
    for (i, _) in text.match_indices('&') {
        let entity = &text[i..text[i..].find(';').map_or(text.len(), |e| i + e + 1)];
        assert!(
            ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"].contains(&entity),
            "stray & in {text:?}"
        );
    }
}

#[test]
fn checker_catches_bad_xml() {
    let r = std::panic::catch_unwind(|| assert_well_formed("<svg><g></svg>"));
    assert!(r.is_err());
}

#[test]
fn tree_svg_is_well_formed_with_one_box_per_table() {
    let l = legal();
    let w = walk(&l.space.ram, l.space.cr3, WalkOptions::default()).unwrap();
    let svg = page_table_tree(&w, DEFAULT_MAX_TABLES);
    assert_well_formed(&svg);
    assert_eq!(svg.matches("rx=\"5\"").count(), w.tables.len());
    assert_eq!(svg.matches("<path").count(), w.tables.len() - 1);
    assert!(svg.contains("PML4 @0x10000"));
    assert!(svg.contains("PT @0x13000"));
    assert!(!svg.contains("more table pages"));
}

#[test]
fn tree_svg_caps_tables_and_says_how_many_are_left_out() {
    let l = legal();
    let w = walk(&l.space.ram, l.space.cr3, WalkOptions::default()).unwrap();
    let svg = page_table_tree(&w, 5);
    assert_well_formed(&svg);
    assert_eq!(svg.matches("rx=\"5\"").count(), 5);
    assert!(svg.contains(&format!(
        "{} more table pages not shown",
        w.tables.len() - 5
    )));
}

#[test]
fn parents_sit_between_their_children() {
    let l = legal();
    let w = walk(&l.space.ram, l.space.cr3, WalkOptions::default()).unwrap();
    let rows = layout_rows(&w.tables);
    // PD 0 (index 2) has one child table, PT (index 3): same row.
    assert_eq!(rows[2], rows[3]);
    // The PDPT of 0xffffffff80000000 (index 9) has two PDs (10 and 12).
    assert_eq!(rows[9], (rows[10] + rows[12]) / 2.0);
    // Leaf-most tables take distinct rows.
    let mut leafmost: Vec<f64> = [3, 6, 8, 11, 13].iter().map(|&i| rows[i]).collect();
    leafmost.dedup();
    assert_eq!(leafmost.len(), 5);
}

fn fault(res: u64, cycles: u64) -> Record {
    Record {
        kind: kind::FAULT,
        aux: 0,
        tsc: 0,
        a: [0, 0, 0, 0, res, cycles],
    }
}

#[test]
fn histogram_svg_is_well_formed_with_bars_axes_and_legend() {
    let mut s = Stats::new(1_000_000).unwrap();
    for i in 0..200 {
        s.add(&fault(resolution::ZERO_FILL, 20_000 + i * 150));
    }
    for i in 0..40 {
        s.add(&fault(resolution::FILE_MAP, 3_000 + i * 900));
    }
    s.add(&fault(resolution::COW, 400_000));
    let series: Vec<(String, &Latency)> = s.faults.iter().map(|(k, v)| (k.clone(), v)).collect();
    let svg = latency_histogram("Page-fault latency <by resolution>", &series);
    assert_well_formed(&svg);
    assert!(svg.contains("Page-fault latency &lt;by resolution&gt;"));
    assert!(svg.contains("zero-fill (200)"));
    assert!(svg.contains(">count</text>"));
    assert!(svg.contains(">16us</text>"));
    assert!(svg.matches("<title>").count() >= 3);
}

#[test]
fn empty_histogram_still_renders() {
    let svg = latency_histogram("nothing", &[]);
    assert_well_formed(&svg);
}

#[test]
fn human_units() {
    assert_eq!(human_ns(512), "512ns");
    assert_eq!(human_ns(1024), "1.0us");
    assert_eq!(human_ns(16384), "16us");
    assert_eq!(human_ns(2_097_152), "2.1ms");
    assert_eq!(nice_ceiling(37), 50);
    assert_eq!(nice_ceiling(1), 1);
    assert_eq!(nice_ceiling(101), 200);
}
