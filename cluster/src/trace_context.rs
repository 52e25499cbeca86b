//! W3C trace context (`traceparent`) carried along a call: the client port's layer
//! scopes each call's future with the caller's `traceparent`, and a follower that
//! forwards the call's write to the leader sends it on, so the leader's log names the
//! same trace as the caller's.

use std::future::Future;

/// The metadata key (W3C Trace Context's header name).
pub const TRACEPARENT_METADATA: &str = "traceparent";

tokio::task_local! {
    static TRACEPARENT: String;
}

/// Whether `value` is a W3C `traceparent` this node understands:
/// `VERSION-TRACEID-PARENTID-FLAGS`, lowercase hex of 2, 32, 16 and 2 digits, version
/// not `ff`, trace and parent ids not all zeros. (A future version may append fields
/// after a `-`; those are accepted and only the first 55 characters are kept.)
pub fn parse(value: &str) -> Option<&str> {
    let head = value.get(..55)?;
    if value.len() > 55 && value.as_bytes()[55] != b'-' {
        return None;
    }
    let hex = |s: &str, len: usize| {
        s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    let mut parts = head.split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let valid = hex(version, 2)
        && version != "ff"
        && (version != "00" || value.len() == 55)
        && hex(trace, 32)
        && trace.bytes().any(|b| b != b'0')
        && hex(parent, 16)
        && parent.bytes().any(|b| b != b'0')
        && hex(flags, 2);
    valid.then_some(head)
}

/// Runs `call` with `traceparent` as its trace context (none: as it is).
pub async fn scope<F: Future>(traceparent: Option<String>, call: F) -> F::Output {
    match traceparent {
        Some(traceparent) => TRACEPARENT.scope(traceparent, call).await,
        None => call.await,
    }
}

/// The current call's `traceparent`, if its caller sent a valid one.
pub fn current() -> Option<String> {
    TRACEPARENT.try_with(Clone::clone).ok()
}

/// Adds the current call's `traceparent` to `request` (a forward to the leader).
pub fn propagate<T>(request: &mut tonic::Request<T>) {
    if let Some(value) = current().and_then(|v| v.parse().ok()) {
        request.metadata_mut().insert(TRACEPARENT_METADATA, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn w3c_traceparents_parse_and_malformed_ones_do_not() {
        assert_eq!(parse(VALID), Some(VALID));
        let future = format!("cc{}-extra", &VALID[2..]);
        assert_eq!(parse(&future), Some(&future[..55]));
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\"",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    #[tokio::test]
    async fn a_scoped_call_sends_its_traceparent_on() {
        let mut outside = tonic::Request::new(());
        propagate(&mut outside);
        assert!(outside.metadata().get(TRACEPARENT_METADATA).is_none());
        let forwarded = scope(Some(VALID.to_owned()), async {
            let mut request = tonic::Request::new(());
            propagate(&mut request);
            request
        })
        .await;
        assert_eq!(
            forwarded.metadata().get(TRACEPARENT_METADATA).unwrap(),
            VALID
        );
    }
}
