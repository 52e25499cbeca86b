//! This benchmark's section of `docs/benchmarks.md` (written by `bench_doc`).

use bench_doc::Section;
pub use bench_doc::{machine, wrap};

#[path = "../../bench_doc.rs"]
mod bench_doc;

pub const SECTION: Section = Section {
    heading: "## At scale: millions of keys on 3 nodes (issue 15)",
    begin:
        "<!-- written by scripts/bench.sh --scale: replaced on each run up to the end marker -->",
    end: "<!-- end of scripts/bench.sh --scale output; what follows is written by hand -->",
};

/// `doc` with `generated` as the generated part of this benchmark's section.
pub fn replace_section(doc: &str, generated: &str) -> String {
    bench_doc::replace_section(&SECTION, doc, generated)
}
