//! Which node a peer certificate speaks for: the node id its subject alternative names
//! carry as the URI `clockwise://node/<id>` ([`node_uri`]).
//!
//! With mutual TLS on the peer port, TLS proves only that a certificate chains to the
//! peer CA; this ties it to one raft id, so node A's certificate cannot vote, append,
//! forward or send a snapshot as node B (issue #20). The id is read by a minimal DER
//! walk (certificate → tbsCertificate → extensions → subjectAltName → URIs): rustls has
//! already checked the chain and signature, so this only needs to find one extension,
//! and every length is checked so a malformed certificate is an error, never a panic.
//!
//! A URI SAN, not a DNS name: a DNS name would be matched with wildcards by TLS
//! libraries (`*.peer…` would name every node), and it never collides with the
//! addresses the certificate also names for hostname checks.

use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::CertificateDer;

/// What precedes the node id in the certificate's URI SAN.
pub const NODE_URI_PREFIX: &str = "clockwise://node/";

/// The URI SAN naming node `id`: `clockwise://node/<id>`.
pub fn node_uri(id: u64) -> String {
    format!("{NODE_URI_PREFIX}{id}")
}

/// Why a certificate names no node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerCertError {
    #[error("the certificate is not valid DER: {0}")]
    Malformed(&'static str),
    #[error(
        "the certificate names no node id (a subject alternative name URI {NODE_URI_PREFIX}<id>)"
    )]
    NoNodeId,
    #[error("the certificate names more than one node id ({0} and {1})")]
    Ambiguous(u64, u64),
    #[error("the certificate's node URI {0:?} does not end in a non-zero decimal id")]
    BadNodeId(String),
    #[error("no certificate in the PEM file")]
    NoPem,
}

/// The node id the DER certificate `der` names.
///
/// # Errors
/// No such URI, several different ids, or not a certificate.
pub fn node_id(der: &[u8]) -> Result<u64, PeerCertError> {
    let mut found = None;
    for uri in san_uris(der)? {
        let Some(rest) = uri.strip_prefix(NODE_URI_PREFIX.as_bytes()) else {
            continue;
        };
        let text = String::from_utf8_lossy(rest);
        let id = (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
            .then(|| text.parse::<u64>().ok())
            .flatten()
            .filter(|&id| id != 0)
            .ok_or_else(|| PeerCertError::BadNodeId(String::from_utf8_lossy(uri).into_owned()))?;
        match found {
            Some(other) if other != id => return Err(PeerCertError::Ambiguous(other, id)),
            _ => found = Some(id),
        }
    }
    found.ok_or(PeerCertError::NoNodeId)
}

/// The node id the first certificate of a PEM file names (a node's own `--peer-cert`).
///
/// # Errors
/// As [`node_id`], or no certificate in the file.
pub fn node_id_in_pem(pem: &[u8]) -> Result<u64, PeerCertError> {
    let der = CertificateDer::pem_slice_iter(pem)
        .next()
        .ok_or(PeerCertError::NoPem)?
        .map_err(|_| PeerCertError::NoPem)?;
    node_id(&der)
}

/// DER tags walked here.
const SEQUENCE: u8 = 0x30;
const OID: u8 = 0x06;
const BOOLEAN: u8 = 0x01;
const OCTET_STRING: u8 = 0x04;
/// `[3] EXPLICIT Extensions` in tbsCertificate.
const EXTENSIONS: u8 = 0xa3;
/// `uniformResourceIdentifier [6] IMPLICIT IA5String` in GeneralName.
const URI_NAME: u8 = 0x86;
/// id-ce-subjectAltName, 2.5.29.17.
const SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];

/// Every URI in the certificate's subjectAltName extension (none without one).
fn san_uris(der: &[u8]) -> Result<Vec<&[u8]>, PeerCertError> {
    let (certificate, _) = expect(der, SEQUENCE, "certificate")?;
    let (tbs, _) = expect(certificate, SEQUENCE, "tbsCertificate")?;
    let mut fields = tbs;
    while !fields.is_empty() {
        let (tag, content, rest) = tlv(fields)?;
        fields = rest;
        if tag != EXTENSIONS {
            continue;
        }
        let (mut extensions, _) = expect(content, SEQUENCE, "extensions")?;
        while !extensions.is_empty() {
            let (extension, rest) = expect(extensions, SEQUENCE, "extension")?;
            extensions = rest;
            let (id, mut rest) = expect(extension, OID, "extension id")?;
            if id != SUBJECT_ALT_NAME {
                continue;
            }
            if let Ok((BOOLEAN, _, after)) = tlv(rest) {
                rest = after; // `critical`
            }
            let (value, _) = expect(rest, OCTET_STRING, "extension value")?;
            let (mut names, _) = expect(value, SEQUENCE, "subjectAltName")?;
            let mut uris = Vec::new();
            while !names.is_empty() {
                let (tag, name, rest) = tlv(names)?;
                names = rest;
                if tag == URI_NAME {
                    uris.push(name);
                }
            }
            return Ok(uris);
        }
    }
    Ok(Vec::new())
}

/// The content of the element at the start of `input`, which must have tag `tag`,
/// and what follows it.
fn expect<'a>(
    input: &'a [u8],
    tag: u8,
    what: &'static str,
) -> Result<(&'a [u8], &'a [u8]), PeerCertError> {
    match tlv(input)? {
        (found, content, rest) if found == tag => Ok((content, rest)),
        _ => Err(PeerCertError::Malformed(what)),
    }
}

/// One DER element: its tag, its content, and what follows it. Only the forms a
/// certificate uses: single-byte tags, definite lengths of up to 4 bytes.
fn tlv(input: &[u8]) -> Result<(u8, &[u8], &[u8]), PeerCertError> {
    let truncated = PeerCertError::Malformed("truncated element");
    let (&tag, rest) = input.split_first().ok_or(truncated.clone())?;
    if tag & 0x1f == 0x1f {
        return Err(PeerCertError::Malformed("multi-byte tag"));
    }
    let (&first, mut rest) = rest.split_first().ok_or(truncated.clone())?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let bytes = usize::from(first & 0x7f);
        if bytes == 0 || bytes > 4 || rest.len() < bytes {
            return Err(PeerCertError::Malformed("element length"));
        }
        let (length, after) = rest.split_at(bytes);
        rest = after;
        length
            .iter()
            .fold(0usize, |len, &b| (len << 8) | usize::from(b))
    };
    if rest.len() < len {
        return Err(truncated);
    }
    let (content, rest) = rest.split_at(len);
    Ok((tag, content, rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair, SanType};

    /// A self-signed certificate (PEM, DER) with `uris` as URI SANs besides
    /// `localhost`.
    fn certificate(uris: &[&str]) -> (String, Vec<u8>) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        for uri in uris {
            params
                .subject_alt_names
                .push(SanType::URI((*uri).try_into().unwrap()));
        }
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), cert.der().to_vec())
    }

    #[test]
    fn the_node_uri_names_the_id() {
        let (pem, der) = certificate(&[&node_uri(7)]);
        assert_eq!(node_id(&der), Ok(7));
        assert_eq!(node_id_in_pem(pem.as_bytes()), Ok(7));
        // Other URIs are ignored; the same id twice is still one node.
        let (_, der) = certificate(&["https://example.invalid/", &node_uri(3), &node_uri(3)]);
        assert_eq!(node_id(&der), Ok(3));
    }

    #[test]
    fn a_certificate_without_exactly_one_node_id_names_none() {
        assert_eq!(node_id(&certificate(&[]).1), Err(PeerCertError::NoNodeId));
        assert_eq!(
            node_id(&certificate(&["https://example.invalid/"]).1),
            Err(PeerCertError::NoNodeId)
        );
        assert_eq!(
            node_id(&certificate(&[&node_uri(1), &node_uri(2)]).1),
            Err(PeerCertError::Ambiguous(1, 2))
        );
        for bad in [
            "clockwise://node/",
            "clockwise://node/0",
            "clockwise://node/+1",
            "clockwise://node/1/x",
        ] {
            assert!(
                matches!(
                    node_id(&certificate(&[bad]).1),
                    Err(PeerCertError::BadNodeId(_))
                ),
                "{bad}"
            );
        }
        assert_eq!(node_id_in_pem(b"no pem here"), Err(PeerCertError::NoPem));
    }

    #[test]
    fn a_truncated_or_damaged_certificate_is_an_error_not_a_panic() {
        let (_, der) = certificate(&[&node_uri(5)]);
        for len in 0..der.len() {
            assert!(node_id(&der[..len]).is_err(), "truncated to {len}");
        }
        for i in 0..der.len() {
            let mut damaged = der.clone();
            damaged[i] ^= 0xff;
            let _ = node_id(&damaged);
        }
        assert!(node_id(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_err());
    }
}
