//! The rules of `validate`, as tables: each row is an input and what the rule answers,
//! either the value it keeps or the field its `INVALID_ARGUMENT` names (the message
//! starts with `"<field>:"`, as callers see it through the status mapping).
//!
//! Which RPC applies which rule, with which cap, is checked in process against a
//! running node by `node/tests/rpc_validation`.

use std::fmt::Debug;
use std::time::{SystemTime, UNIX_EPOCH};

use tonic::metadata::AsciiMetadataValue;
use tonic::Code;

use super::*;

/// What a rule answers: the value it keeps, or the field its refusal names.
type Want<T> = std::result::Result<T, String>;

fn refused<T>(field: &str) -> Want<T> {
    Err(field.to_owned())
}

/// One row's problem, if any: a kept value must equal the wanted one; a refusal must be
/// `INVALID_ARGUMENT` with a message that starts with `"<field>:"`.
fn check<T: PartialEq + Debug>(row: impl Debug, got: Result<T>, want: Want<T>) -> Option<String> {
    match (got, want) {
        (Ok(got), Ok(want)) if got == want => None,
        (Err(error), Err(field)) => {
            let status = tonic::Status::from(error);
            let named = status.message().starts_with(&format!("{field}:"));
            (status.code() != Code::InvalidArgument || !named).then(|| {
                format!(
                    "{row:?}: {:?} {:?}; want INVALID_ARGUMENT naming `{field}`",
                    status.code(),
                    status.message()
                )
            })
        }
        (got, want) => Some(format!("{row:?}: got {got:?}, want {want:?}")),
    }
}

/// Every row answered as wanted; all problems are reported at once.
#[track_caller]
fn assert_rows(problems: impl IntoIterator<Item = Option<String>>) {
    let (mut rows, mut bad) = (0, Vec::new());
    for problem in problems {
        rows += 1;
        bad.extend(problem);
    }
    assert!(rows > 0, "an empty table checks nothing");
    assert!(
        bad.is_empty(),
        "{} of {rows} rows:\n  {}",
        bad.len(),
        bad.join("\n  ")
    );
}

#[test]
fn ids_are_1_to_max_id_bytes_counted_in_bytes_and_refusals_name_the_field_given() {
    let fits = "x".repeat(MAX_ID_BYTES);
    let over = "x".repeat(MAX_ID_BYTES + 1);
    // 'é' is two bytes: half as many characters fit.
    let fits_wide = "é".repeat(MAX_ID_BYTES / 2);
    let over_wide = "é".repeat(MAX_ID_BYTES / 2 + 1);
    let rows: [(&str, &str, Want<&str>); 10] = [
        ("node_id", "", refused("node_id")),
        ("node_id", "a", Ok("a")),
        ("key", &fits, Ok(&fits)),
        ("key", &over, refused("key")),
        ("server_name", &fits_wide, Ok(&fits_wide)),
        ("server_name", &over_wide, refused("server_name")),
        ("request_id", "", refused("request_id")),
        ("operations[3].key", "", refused("operations[3].key")),
        (
            "requests[0].dest_node",
            &over,
            refused("requests[0].dest_node"),
        ),
        (
            "transfers[2].source",
            &over_wide,
            refused("transfers[2].source"),
        ),
    ];
    assert_rows(
        rows.into_iter()
            .map(|(field, value, want)| check((field, value.len()), id(field, value), want)),
    );
}

#[test]
fn a_ring_name_is_0_to_max_id_bytes_and_empty_is_the_default_ring() {
    let fits = "r".repeat(MAX_ID_BYTES);
    let over = "r".repeat(MAX_ID_BYTES + 1);
    let over_wide = "é".repeat(MAX_ID_BYTES / 2 + 1);
    let rows: [(&str, Want<&str>); 5] = [
        ("", Ok(DEFAULT_RING)),
        ("blue", Ok("blue")),
        (&fits, Ok(&fits)),
        (&over, refused("ring")),
        (&over_wide, refused("ring")),
    ];
    assert_rows(
        rows.into_iter()
            .map(|(value, want)| check(value.len(), ring(value), want)),
    );
}

#[test]
fn a_timestamp_is_not_negative_and_at_most_a_day_ahead_of_the_clock() {
    // The node's clock is at least this when `timestamp` reads it.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as i64;
    let rows: [(i64, Want<i64>); 9] = [
        (0, Ok(0)),
        (1, Ok(1)),
        (now, Ok(now)),
        (now + MAX_CLOCK_AHEAD_MS, Ok(now + MAX_CLOCK_AHEAD_MS)),
        (-1, refused("timestamp")),
        (i64::MIN, refused("timestamp")),
        // A minute past the limit: the test would have to take a minute to pass it.
        (now + MAX_CLOCK_AHEAD_MS + 60_000, refused("timestamp")),
        // Microseconds, not milliseconds.
        (now * 1000, refused("timestamp")),
        (i64::MAX, refused("timestamp")),
    ];
    assert_rows(
        rows.into_iter()
            .map(|(ts, want)| check(ts, timestamp(ts), want)),
    );
}

#[test]
fn counts_and_sizes_are_0_to_their_cap() {
    let rows: [(&str, i64, i64, Want<i64>); 12] = [
        ("n", 0, i64::MAX, Ok(0)),
        ("n", i64::MAX, i64::MAX, Ok(i64::MAX)),
        ("n", -1, i64::MAX, refused("n")),
        ("n", i64::MIN, i64::MAX, refused("n")),
        ("num_replicas", MAX_REPLICAS, MAX_REPLICAS, Ok(MAX_REPLICAS)),
        (
            "num_replicas",
            MAX_REPLICAS + 1,
            MAX_REPLICAS,
            refused("num_replicas"),
        ),
        ("size_mb", MAX_MB, MAX_MB, Ok(MAX_MB)),
        ("size_mb", MAX_MB + 1, MAX_MB, refused("size_mb")),
        (
            "operations[2].size_mb",
            -1,
            MAX_MB,
            refused("operations[2].size_mb"),
        ),
        (
            "transfers[1].bandwidth_mb",
            i64::MIN,
            MAX_MB,
            refused("transfers[1].bandwidth_mb"),
        ),
        ("backup_timestamp", i64::MAX, i64::MAX, Ok(i64::MAX)),
        (
            "backup_timestamp",
            -1,
            i64::MAX,
            refused("backup_timestamp"),
        ),
    ];
    assert_rows(rows.into_iter().map(|(field, value, max, want)| {
        check((field, value, max), non_negative(field, value, max), want)
    }));
}

#[test]
fn a_capacity_or_memory_limit_is_minus_one_or_0_to_max_mb() {
    let rows: [(&str, i64, Want<i64>); 9] = [
        ("capacity", -1, Ok(-1)),
        ("capacity", 0, Ok(0)),
        ("capacity", MAX_MB, Ok(MAX_MB)),
        ("capacity", -2, refused("capacity")),
        ("capacity", -100, refused("capacity")),
        ("capacity", i64::MIN, refused("capacity")),
        ("capacity", MAX_MB + 1, refused("capacity")),
        ("max_mb", i64::MAX, refused("max_mb")),
        ("max_mb", -2, refused("max_mb")),
    ];
    assert_rows(
        rows.into_iter()
            .map(|(field, value, want)| check((field, value), limit(field, value), want)),
    );
}

#[test]
fn max_concurrent_is_1_to_its_cap() {
    let rows: [(i32, Want<usize>); 7] = [
        (1, Ok(1)),
        (MAX_CONCURRENT_CAP, Ok(MAX_CONCURRENT_CAP as usize)),
        (0, refused("max_concurrent")),
        (-1, refused("max_concurrent")),
        (i32::MIN, refused("max_concurrent")),
        (MAX_CONCURRENT_CAP + 1, refused("max_concurrent")),
        (i32::MAX, refused("max_concurrent")),
    ];
    assert_rows(
        rows.into_iter()
            .map(|(value, want)| check(value, max_concurrent(value), want)),
    );
}

#[test]
fn enums_accept_only_their_values() {
    let modes: [(i32, Want<SyncMode>); 5] = [
        (0, Ok(SyncMode::FailFast)),
        (1, Ok(SyncMode::AllSleep)),
        (2, refused("mode")),
        (7, refused("mode")),
        (-1, refused("mode")),
    ];
    assert_rows(
        modes
            .into_iter()
            .map(|(value, want)| check(value, sync_mode(value), want)),
    );
    let spaces: [(i32, Want<PositionSpace>); 5] = [
        (PbSpace::Drill as i32, Ok(PositionSpace::Drill)),
        (PbSpace::U64 as i32, Ok(PositionSpace::U64)),
        (2, refused("position_space")),
        (9, refused("position_space")),
        (-1, refused("position_space")),
    ];
    assert_rows(
        spaces
            .into_iter()
            .map(|(value, want)| check(value, position_space(value), want)),
    );
}

#[test]
fn lists_hold_at_most_their_cap() {
    let rows: [(&str, usize, usize, Want<()>); 6] = [
        ("operations", 0, MAX_BATCH_OPERATIONS, Ok(())),
        (
            "operations",
            MAX_BATCH_OPERATIONS,
            MAX_BATCH_OPERATIONS,
            Ok(()),
        ),
        (
            "operations",
            MAX_BATCH_OPERATIONS + 1,
            MAX_BATCH_OPERATIONS,
            refused("operations"),
        ),
        ("requests", MAX_SYNC_ENTRIES, MAX_SYNC_ENTRIES, Ok(())),
        (
            "requests",
            MAX_SYNC_ENTRIES + 1,
            MAX_SYNC_ENTRIES,
            refused("requests"),
        ),
        (
            "transfers",
            usize::MAX,
            MAX_SYNC_ENTRIES,
            refused("transfers"),
        ),
    ];
    assert_rows(
        rows.into_iter().map(|(field, len, max, want)| {
            check((field, len, max), list_len(field, len, max), want)
        }),
    );
}

#[test]
fn a_ttl_is_0_to_max_ttl_ms() {
    let rows: [(i64, Want<i64>); 7] = [
        (0, Ok(0)),
        (1, Ok(1)),
        (MAX_TTL_MS, Ok(MAX_TTL_MS)),
        (-1, refused("ttl_ms")),
        (i64::MIN, refused("ttl_ms")),
        (MAX_TTL_MS + 1, refused("ttl_ms")),
        (i64::MAX, refused("ttl_ms")),
    ];
    assert_rows(
        rows.into_iter()
            .map(|(value, want)| check(value, ttl_ms(value), want)),
    );
}

#[test]
fn members_have_a_non_zero_id_and_host_port_addresses() {
    let ids: [(&str, u64, Want<u64>); 4] = [
        ("id", 1, Ok(1)),
        ("id", u64::MAX, Ok(u64::MAX)),
        ("id", 0, refused("id")),
        ("target_id", 0, refused("target_id")),
    ];
    assert_rows(
        ids.into_iter()
            .map(|(field, value, want)| check((field, value), member_id(field, value), want)),
    );
    let good = [
        "127.0.0.1:1",
        "localhost:50051",
        "[::1]:65535",
        "node-1.example:7",
    ];
    let bad = [
        "",
        "nohost",
        ":80",
        "h:0",
        "h:99999",
        "h:x",
        "http://h:1",
        "h 1:2",
        "h:1|h:2",
        "h:1,h:2",
    ];
    let rows = good
        .into_iter()
        .flat_map(|a| {
            [
                ("address", a, Ok(a.to_owned())),
                ("peer_address", a, Ok(a.to_owned())),
            ]
        })
        .chain(bad.into_iter().flat_map(|a| {
            [
                ("address", a, refused("address")),
                ("peer_address", a, refused("peer_address")),
            ]
        }));
    assert_rows(
        rows.map(|(field, value, want)| check((field, value), member_address(field, value), want)),
    );
}

/// gRPC metadata: keys and raw values, as a client may send them.
type Metadata<'a> = Vec<(&'static str, &'a [u8])>;

/// A request carrying `metadata`.
fn with_metadata(metadata: &Metadata) -> tonic::Request<()> {
    let mut request = tonic::Request::new(());
    for &(key, value) in metadata {
        let value = AsciiMetadataValue::try_from(value).expect("a valid header value");
        request.metadata_mut().insert(key, value);
    }
    request
}

#[test]
fn a_write_session_is_both_keys_or_neither_with_a_short_id_and_a_seq_of_at_least_1() {
    let session_of = |client_id: &str, seq| {
        Ok(Some(Session {
            client_id: client_id.to_owned(),
            seq,
        }))
    };
    let (client, seq) = (CLIENT_ID_METADATA, SEQ_METADATA);
    let (id_fits, id_over) = ("c".repeat(128), "c".repeat(129));
    let max_seq = u64::MAX.to_string();
    // Bytes 0x80–0xff are a valid header value but not ASCII text.
    let rows: [(Metadata, Want<Option<Session>>); 13] = [
        (vec![], Ok(None)),
        (vec![(client, b"app"), (seq, b"1")], session_of("app", 1)),
        (
            vec![(client, id_fits.as_bytes()), (seq, max_seq.as_bytes())],
            session_of(&id_fits, u64::MAX),
        ),
        (vec![(client, b"app")], refused(seq)),
        (vec![(seq, b"1")], refused(client)),
        (vec![(client, b""), (seq, b"1")], refused(client)),
        (
            vec![(client, id_over.as_bytes()), (seq, b"1")],
            refused(client),
        ),
        (vec![(client, "é".as_bytes()), (seq, b"1")], refused(client)),
        (vec![(client, b"app"), (seq, b"0")], refused(seq)),
        (vec![(client, b"app"), (seq, b"-1")], refused(seq)),
        (vec![(client, b"app"), (seq, b"one")], refused(seq)),
        (
            vec![(client, b"app"), (seq, b"18446744073709551616")],
            refused(seq),
        ),
        (vec![(client, b"app"), (seq, "é".as_bytes())], refused(seq)),
    ];
    assert_rows(rows.into_iter().map(|(metadata, want)| {
        let got = session(with_metadata(&metadata)).map(|(session, ())| session);
        check(&metadata, got, want)
    }));
}

#[test]
fn a_session_is_scoped_by_the_callers_token() {
    let key_of = |token: Option<&[u8]>| {
        let mut metadata: Metadata = vec![(CLIENT_ID_METADATA, b"app"), (SEQ_METADATA, b"7")];
        if let Some(token) = token {
            metadata.push(("authorization", token));
        }
        session(with_metadata(&metadata))
            .unwrap()
            .0
            .expect("a session")
            .client_id
    };
    let owner = b"Bearer owner-token-0123456789abcdef0123456789";
    let other = b"Bearer other-token-0123456789abcdef0123456789";
    assert_eq!(
        key_of(None),
        "app",
        "without credentials: the id as declared"
    );
    let (owners, others) = (key_of(Some(owner)), key_of(Some(other)));
    assert_ne!(owners, others, "one id under two tokens: two sessions");
    assert_ne!(owners, "app");
    assert_eq!(owners, key_of(Some(owner)), "stable across calls");
    // The same token however the scheme is spelled.
    assert_eq!(
        owners,
        key_of(Some(b"bearer owner-token-0123456789abcdef0123456789"))
    );
    assert!(!owners.contains("owner-token"), "{owners}");
    assert!(owners.len() <= 128, "fits the id limit: {owners}");
}

#[test]
fn a_read_is_linearizable_unless_its_metadata_asks_for_stale() {
    let key = CONSISTENCY_METADATA;
    let rows: [(Metadata, Want<Consistency>); 7] = [
        (vec![], Ok(Consistency::Linearizable)),
        (vec![(key, b"linearizable")], Ok(Consistency::Linearizable)),
        (vec![(key, b"stale")], Ok(Consistency::Stale)),
        (vec![(key, b"STALE")], Ok(Consistency::Stale)),
        (vec![(key, b"")], refused(key)),
        (vec![(key, b"eventual")], refused(key)),
        (vec![(key, "stalé".as_bytes())], refused(key)),
    ];
    assert_rows(rows.into_iter().map(|(metadata, want)| {
        let got = split(with_metadata(&metadata)).map(|(consistency, ())| consistency);
        check(&metadata, got, want)
    }));
}
