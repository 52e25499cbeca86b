//! Throwaway certificates for tests and local trials: a CA, and certificates for
//! `127.0.0.1` / `localhost` signed by it (usable by servers and clients alike),
//! written as PEM files; a node's peer certificate also names its raft id (URI SAN
//! `clockwise://node/<id>`). Nothing here is for production keys.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};

/// A certificate authority whose key lives only in this process.
pub struct TestCa {
    cert: rcgen::Certificate,
    key: KeyPair,
    dir: PathBuf,
    name: String,
}

/// A certificate and its private key, as PEM files.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestCa {
    /// A new CA named `name`; its certificate is written to `DIR/NAME-ca.pem`.
    pub fn new(dir: &Path, name: &str) -> TestCa {
        let key = KeyPair::generate().expect("a CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params
            .distinguished_name
            .push(DnType::CommonName, format!("clockwise test CA {name}"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).expect("a self-signed CA");
        let ca = TestCa {
            cert,
            key,
            dir: dir.to_path_buf(),
            name: name.to_owned(),
        };
        write(&ca.ca_path(), &ca.cert.pem());
        ca
    }

    /// The CA's certificate (PEM).
    pub fn ca_path(&self) -> PathBuf {
        self.dir.join(format!("{}-ca.pem", self.name))
    }

    /// A certificate for `127.0.0.1` and `localhost`, good for serving and for
    /// authenticating as a client: `DIR/LEAF.pem` and `DIR/LEAF-key.pem`.
    pub fn issue(&self, leaf: &str) -> Issued {
        self.issue_with(leaf, &[])
    }

    /// [`TestCa::issue`] for node `id`'s peer certificate: it also names
    /// `clockwise://node/<id>`. `DIR/LEAF.pem` and `DIR/LEAF-key.pem`.
    pub fn issue_peer(&self, leaf: &str, id: u64) -> Issued {
        self.issue_with(leaf, &[clockwise_cluster::peer_cert::node_uri(id)])
    }

    /// [`TestCa::issue`], naming `uris` too (URI SANs).
    pub fn issue_with(&self, leaf: &str, uris: &[String]) -> Issued {
        let key = KeyPair::generate().expect("a key");
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
        params
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        for uri in uris {
            let uri = uri.as_str().try_into().expect("an ASCII URI");
            params.subject_alt_names.push(SanType::URI(uri));
        }
        params.distinguished_name.push(DnType::CommonName, leaf);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("a certificate signed by the CA");
        let issued = Issued {
            cert: self.dir.join(format!("{leaf}.pem")),
            key: self.dir.join(format!("{leaf}-key.pem")),
        };
        write(&issued.cert, &cert.pem());
        write(&issued.key, &key.serialize_pem());
        // A private key readable by its owner only, as TLS tools expect.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let owner_only = std::fs::Permissions::from_mode(0o600);
            std::fs::set_permissions(&issued.key, owner_only).expect("key permissions");
        }
        issued
    }
}

fn write(path: &Path, pem: &str) {
    std::fs::write(path, pem).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}
