//! Arbitrary bytes as a raft log entry, and as the outcome bytes a proposer gets back.
//!
//! A log entry reaches every replica's `EngineMachine::apply` as bytes. This checks that
//! decoding never panics, that whatever decodes survives an encode/decode round trip
//! unchanged (a replica must apply exactly what was proposed), and that applying it
//! through the real state machine neither panics nor breaks the snapshot round trip.
#![no_main]

use std::sync::{Arc, LazyLock, RwLock};

use clockwise_cluster::StateMachine;
use clockwise_node::machine::codec::{self, CodecError, Session};
use clockwise_engine::Engine;
use clockwise_node::machine::EngineMachine;
use libfuzzer_sys::fuzz_target;

/// The state decoded commands act on: nodes, keys and backups in ring "r" of both kinds
/// (the seeds name ring "r"), so stores, evictions, restores and merges do real work.
static BASE: LazyLock<Engine> = LazyLock::new(clockwise_fuzz::sample_engine);

/// Seeds: every command kind as a log entry (some with a session), every outcome kind.
fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut engine = Engine::new();
    let mut seeds = Vec::new();
    for (seq, command) in (1..).zip(clockwise_fuzz::sample_log()) {
        let session = (seq % 2 == 0).then(|| Session {
            client_id: "c1".into(),
            seq,
        });
        seeds.push(("entry", codec::encode_entry(&command, session.as_ref())));
        seeds.push(("outcome", codec::encode_outcome(&engine.apply(&command))));
    }
    seeds.push(("stale", codec::encode_stale_sequence(7)));
    seeds
}

fuzz_target!(init: clockwise_fuzz::write_seeds(seeds), |data: &[u8]| {
    let entry = codec::decode_entry(data);
    // `decode` is `decode_entry` without the session.
    assert_eq!(
        codec::decode(data).as_ref(),
        entry.as_ref().map(|(command, _)| command)
    );
    if let Ok((command, session)) = &entry {
        let bytes = codec::encode_entry(command, session.as_ref());
        assert_eq!(
            codec::decode_entry(&bytes).as_ref(),
            Ok(&(command.clone(), session.clone())),
            "a decoded entry must survive the round trip"
        );
        // The codec refuses what the service would (e.g. more than MAX_REPLICAS
        // virtual nodes), so whatever decodes can be applied.
        apply_as_a_replica(data, session.is_some());
    }

    match codec::decode_outcome(data) {
        Ok(outcome) => assert_eq!(
            codec::decode_outcome(&codec::encode_outcome(&outcome)),
            Ok(outcome),
            "a decoded outcome must survive the round trip"
        ),
        Err(CodecError::StaleSequence { last }) => assert_eq!(
            codec::decode_outcome(&codec::encode_stale_sequence(last)),
            Err(CodecError::StaleSequence { last })
        ),
        Err(_) => {}
    }
});

/// The entry as a replica applies it: through `EngineMachine`, sessions included.
fn apply_as_a_replica(data: &[u8], has_session: bool) {
    let engine = Arc::new(RwLock::new(BASE.clone()));
    let mut machine = EngineMachine::new(Arc::clone(&engine));
    // The leader's rewrite (timestamp 0 → its clock) must keep the entry decodable; it
    // refuses only what needs its clock to judge (a timestamp too far ahead).
    match machine.prepare(data.to_vec()) {
        Ok(prepared) => assert!(codec::decode_entry(&prepared).is_ok()),
        Err(why) => assert!(why.starts_with("timestamp:"), "{why}"),
    }

    let answer = machine.apply(1, data);
    // An outcome, or one of the refusals an applied entry answers with (a stale retry,
    // full sessions, a quota the entry's leader stamped): never bytes that mean nothing.
    assert!(
        matches!(
            codec::decode_outcome(&answer),
            Ok(_)
                | Err(CodecError::StaleSequence { .. })
                | Err(CodecError::SessionsFull { .. })
                | Err(CodecError::QuotaExceeded(_))
        ),
        "an applied command answers a decodable outcome or refusal"
    );
    let digest = engine.read().unwrap().state_digest();
    if has_session {
        // A retried write (same client id and seq) applies once: same answer, same state.
        assert_eq!(machine.apply(2, data), answer);
        assert_eq!(engine.read().unwrap().state_digest(), digest);
    }

    // The state it left restores to the same digest, through the machine's snapshot too.
    clockwise_fuzz::check_machine_snapshot(&machine.snapshot(), &digest);
}
