//! Writing a benchmark's tables into `docs/benchmarks.md`: the generated part of one
//! section is replaced, the observations written by hand after it are kept.
//!
//! Shared by the two benchmark binaries that write sections: `scale` (this crate) and
//! `tests/etcd-compare` (a workspace of its own, so that the root build never compiles
//! etcd-client), which includes this file by path.

/// A generated section: its heading and the markers around the generated part.
#[derive(Clone, Copy, Debug)]
pub struct Section {
    pub heading: &'static str,
    pub begin: &'static str,
    pub end: &'static str,
}

/// The machine a run measured, for its header: absolute rates (and, as sessions 12 and
/// 13 saw, even ratios) move with the host. "2 cores (AMD EPYC …), 24 GiB RAM".
pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            let line = info.lines().find(|l| l.starts_with("model name"))?;
            Some(line.split_once(':')?.1.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(format!("{:.0} GiB RAM", kib as f64 / (1 << 20) as f64))
        })
        .unwrap_or_default();
    format!("{cores} cores ({model}), {memory}")
}

/// A new section goes before this heading when it is not in the file yet (at the end
/// when this is missing too).
const BEFORE: &str = "## Reading the engine table";

/// `doc` with `generated` as the generated part of the section.
pub fn replace_section(section: &Section, doc: &str, generated: &str) -> String {
    let (heading, begin, end) = (section.heading, section.begin, section.end);
    let block = format!("{begin}\n\n{}\n\n{end}\n", generated.trim());
    let Some(at_heading) = doc.find(heading) else {
        let section = format!("{heading}\n\n{block}\n");
        return match doc.find(BEFORE) {
            Some(at) => format!("{}{section}{}", &doc[..at], &doc[at..]),
            None => format!("{}\n\n{section}", doc.trim_end()),
        };
    };
    let body = at_heading + heading.len();
    // The section ends at the next `## ` heading; the markers count only inside it.
    let section_end = doc[body..]
        .find("\n## ")
        .map_or(doc.len(), |at| body + at + 1);
    let text = &doc[body..section_end];
    match (text.find(begin), text.find(end)) {
        (Some(at_begin), Some(at_end)) if at_begin < at_end => {
            let after = body + at_end + end.len();
            let after = after + doc[after..].starts_with('\n') as usize;
            format!("{}{block}{}", &doc[..body + at_begin], &doc[after..])
        }
        // Markers lost by an edit: the new block goes first, the old text is kept.
        _ => format!("{}\n\n{block}{}", &doc[..body], &doc[body..]),
    }
}

/// `text` with its prose lines wrapped at `width` columns, as the rest of the file is
/// (a `- ` item's continuation lines indented under its text); table rows, and words
/// longer than a line, are left as they are.
pub fn wrap(text: &str, width: usize) -> String {
    let mut out = String::new();
    for line in text.lines() {
        if line.starts_with('|') || line.len() <= width {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        let indent = if line.starts_with("- ") { "  " } else { "" };
        let mut current = String::new();
        for word in line.split(' ') {
            if !current.trim().is_empty()
                && current.chars().count() + 1 + word.chars().count() > width
            {
                out.push_str(current.trim_end());
                out.push('\n');
                current = indent.to_owned();
            } else if !current.trim().is_empty() {
                current.push(' ');
            }
            current.push_str(word);
        }
        out.push_str(&current);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECTION: Section = Section {
        heading: "## A benchmark",
        begin: "<!-- begin -->",
        end: "<!-- end -->",
    };
    const DOC: &str =
        "# Benchmarks\n\n## gRPC\n\ntable\n\n## Reading the engine table\n\n- notes\n";

    fn replace(doc: &str, generated: &str) -> String {
        replace_section(&SECTION, doc, generated)
    }

    #[test]
    fn a_new_section_goes_before_the_reading_notes() {
        let doc = replace(DOC, "| run 1 |");
        let section = doc.find(SECTION.heading).unwrap();
        assert!(doc.find("table").unwrap() < section);
        assert!(section < doc.find(BEFORE).unwrap());
        assert!(doc.contains("<!-- begin -->\n\n| run 1 |\n\n<!-- end -->\n"));
    }

    #[test]
    fn a_rerun_replaces_only_the_generated_part() {
        let first = replace(DOC, "| run 1 |");
        let by_hand = first.replace("<!-- end -->\n", "<!-- end -->\n\nObservations by hand.\n");
        let second = replace(&by_hand, "| run 2 |");
        assert!(!second.contains("run 1"));
        assert!(second.contains("| run 2 |\n\n<!-- end -->\n\nObservations by hand.\n"));
        assert_eq!(second.matches(SECTION.heading).count(), 1);
        assert_eq!(replace(&second, "| run 2 |"), second);
    }

    #[test]
    fn markers_lost_by_an_edit_put_the_new_block_first_and_keep_the_old_text() {
        let edited = format!("# Benchmarks\n\n{}\n\nold text\n", SECTION.heading);
        let doc = replace(&edited, "| run |");
        assert!(doc.contains("<!-- begin -->\n\n| run |\n\n<!-- end -->\n"));
        assert!(doc.find("<!-- end -->").unwrap() < doc.find("old text").unwrap());
    }

    #[test]
    fn prose_is_wrapped_and_tables_are_not() {
        let row = format!("| {} |", "x".repeat(30));
        let text = format!("- one two three four five\n{row}\nshort\n");
        assert_eq!(
            wrap(&text, 12),
            format!("- one two\n  three four\n  five\n{row}\nshort\n")
        );
    }

    #[test]
    fn without_the_reading_notes_the_section_is_appended() {
        let doc = replace("# Benchmarks\n", "| run |");
        assert!(doc.starts_with("# Benchmarks\n\n## A benchmark"));
        assert!(doc.ends_with("<!-- end -->\n\n"));
    }
}
