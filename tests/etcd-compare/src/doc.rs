//! This benchmark's section of `docs/benchmarks.md` (written by `bench_doc`).

pub use bench_doc::{machine, wrap};
use bench_doc::Section;

#[path = "../../src/bench_doc.rs"]
mod bench_doc;

pub const SECTION: Section = Section {
    heading: "## Against etcd 3.4 (3 members on loopback, every commit fsync'd)",
    begin: "<!-- written by scripts/bench.sh --etcd: replaced on each run up to the end marker -->",
    end: "<!-- end of scripts/bench.sh --etcd output; what follows is written by hand -->",
};

/// `doc` with `generated` as the generated part of this benchmark's section.
pub fn replace_section(doc: &str, generated: &str) -> String {
    bench_doc::replace_section(&SECTION, doc, generated)
}
