//! Writing the run's tables into `docs/benchmarks.md`: the generated part of one
//! section is replaced, the observations written by hand after it are kept (the same
//! scheme as `tests/etcd-compare/src/doc.rs`, which lives in a workspace of its own).

pub const HEADING: &str = "## At scale: millions of keys on 3 nodes (issue 15)";
const BEGIN: &str =
    "<!-- written by scripts/bench.sh --scale: replaced on each run up to the end marker -->";
const END: &str =
    "<!-- end of scripts/bench.sh --scale output; what follows is written by hand -->";
/// The section goes before this heading when it is not in the file yet (at the end
/// when this is missing too).
const BEFORE: &str = "## Reading the engine table";

/// `doc` with `generated` as the generated part of the section.
pub fn replace_section(doc: &str, generated: &str) -> String {
    let block = format!("{BEGIN}\n\n{}\n\n{END}\n", generated.trim());
    let Some(heading) = doc.find(HEADING) else {
        let section = format!("{HEADING}\n\n{block}\n");
        return match doc.find(BEFORE) {
            Some(at) => format!("{}{section}{}", &doc[..at], &doc[at..]),
            None => format!("{}\n\n{section}", doc.trim_end()),
        };
    };
    let body = heading + HEADING.len();
    // The section ends at the next `## ` heading; the markers count only inside it.
    let section_end = doc[body..]
        .find("\n## ")
        .map_or(doc.len(), |at| body + at + 1);
    let section = &doc[body..section_end];
    match (section.find(BEGIN), section.find(END)) {
        (Some(begin), Some(end)) if begin < end => {
            let after = body + end + END.len();
            let after = after + doc[after..].starts_with('\n') as usize;
            format!("{}{block}{}", &doc[..body + begin], &doc[after..])
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

    const DOC: &str =
        "# Benchmarks\n\n## gRPC\n\ntable\n\n## Reading the engine table\n\n- notes\n";

    #[test]
    fn a_new_section_goes_before_the_reading_notes() {
        let doc = replace_section(DOC, "| run 1 |");
        let section = doc.find(HEADING).unwrap();
        assert!(doc.find("table").unwrap() < section);
        assert!(section < doc.find(BEFORE).unwrap());
        assert!(doc.contains(&format!("{BEGIN}\n\n| run 1 |\n\n{END}\n")));
    }

    #[test]
    fn a_rerun_replaces_only_the_generated_part() {
        let first = replace_section(DOC, "| run 1 |");
        let by_hand = first.replace(
            &format!("{END}\n"),
            &format!("{END}\n\nObservations by hand.\n"),
        );
        let second = replace_section(&by_hand, "| run 2 |");
        assert!(!second.contains("run 1"));
        assert!(second.contains(&format!("| run 2 |\n\n{END}\n\nObservations by hand.\n")));
        assert_eq!(second.matches(HEADING).count(), 1);
        assert_eq!(replace_section(&second, "| run 2 |"), second);
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
        let doc = replace_section("# Benchmarks\n", "| run |");
        assert!(doc.starts_with(&format!("# Benchmarks\n\n{HEADING}")));
        assert!(doc.ends_with(&format!("{END}\n\n")));
    }
}
