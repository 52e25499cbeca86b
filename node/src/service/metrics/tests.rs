use super::*;
use crate::machine::figures::RingKind;
use clockwise_engine::RingFigures;

/// Checks each line against the text exposition grammar (a comment, or
/// `name{label="value",...} number`, with `\\`, `\"` and `\n` the only escapes), and
/// answers the series lines.
fn parse_strictly(text: &str) -> Vec<&str> {
    let mut series = Vec::new();
    for line in text.lines() {
        if line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            continue;
        }
        let name_end = line
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or_else(|| panic!("no value: {line:?}"));
        let mut rest = &line[name_end..];
        if let Some(labels) = rest.strip_prefix('{') {
            let mut chars = labels.char_indices();
            let mut in_value = false;
            let end = loop {
                let (i, c) = chars.next().unwrap_or_else(|| panic!("unclosed: {line:?}"));
                match (in_value, c) {
                    (true, '\\') => {
                        let (_, escaped) = chars.next().expect("an escaped character");
                        assert!(matches!(escaped, '\\' | '"' | 'n'), "bad escape: {line:?}");
                    }
                    (true, '"') => in_value = false,
                    (false, '"') => in_value = true,
                    (false, '}') => break i,
                    (true, '\n') => panic!("raw newline: {line:?}"),
                    _ => {}
                }
            };
            rest = &labels[end + 1..];
        }
        let value = rest.strip_prefix(' ').unwrap_or_else(|| panic!("{line:?}"));
        assert!(
            value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value),
            "bad value in {line:?}"
        );
        series.push(line);
    }
    series
}

#[test]
fn made_up_methods_share_one_series_and_the_page_still_parses() {
    let metrics = Metrics::default();
    let call = std::time::Duration::from_millis(1);
    metrics.observe(
        methods::label("/clockwise.hashring.v1.HashRing/StoreKey"),
        0,
        call,
    );
    let before = parse_strictly(&metrics.render()).len();
    for i in 0..500 {
        metrics.observe(methods::label(&format!("/made\"up\\{i}/x\ny")), 12, call);
    }
    let text = metrics.render();
    let after = parse_strictly(&text).len();
    // One code series and one histogram (buckets, sum, count) for `unknown`, however
    // many paths were made up.
    assert_eq!(after - before, 1 + BUCKETS.len() + 3, "{text}");
    assert!(text.contains(r#"clockwise_rpc_requests_total{code="12",method="unknown"} 500"#));
}

#[test]
fn rings_past_the_cap_are_summed_under_other() {
    let figures = RingFigures {
        nodes: 1,
        keys: 2,
        evictions: 3,
        expirations: 4,
    };
    let mut rings: Vec<_> = (0..RING_LABEL_CAP + 5)
        .map(|i| (RingKind::HashRing, format!("r{i:04}"), figures))
        .collect();
    rings.push((RingKind::HashRing, OTHER_RINGS.to_owned(), figures));
    rings.push((RingKind::ChatRouter, "a\"b\\c".to_owned(), figures));
    let mut out = Vec::new();
    families::rings(&rings, &mut out);
    let keys = out
        .iter()
        .find(|f| f.get_name() == "clockwise_ring_keys")
        .expect("ring keys");
    // The cap's rings, one `_other` for the 6 HashRings past it, and the ChatRouter.
    assert_eq!(keys.get_metric().len(), RING_LABEL_CAP + 2);
    let other = keys
        .get_metric()
        .iter()
        .find(|m| m.get_label().iter().any(|l| l.get_value() == OTHER_RINGS))
        .expect("the _other series");
    assert_eq!(other.get_gauge().get_value(), 12.0);
    let mut text = String::new();
    prometheus::TextEncoder::new()
        .encode_utf8(&out, &mut text)
        .unwrap();
    parse_strictly(&text);
    assert!(text.contains(r#"ring="a\"b\\c""#), "{text}");
}
