//! How ctl (and backup) reach nodes: the bearer token and TLS flags.

use clap::Args;

/// The bearer token of a command that calls nodes started with `--auth-token-file`.
#[derive(Args, Debug, Clone)]
pub struct TokenArgs {
    /// A file holding the token (its first word); else $CLOCKWISE_TOKEN, else none.
    /// (A file keeps the token out of the process list.)
    #[arg(long, env = "CLOCKWISE_TOKEN_FILE", global = true)]
    token_file: Option<std::path::PathBuf>,
}

impl TokenArgs {
    pub fn token(&self) -> Result<Option<String>, String> {
        if let Some(path) = &self.token_file {
            // A file others may read is refused, as the node's own token file is.
            let text = clockwise_node::service::auth::read_secret_file(path)
                .map_err(|e| format!("--token-file {}: {e}", path.display()))?;
            return text
                .split_whitespace()
                .next()
                .map(|t| Some(t.to_owned()))
                .ok_or_else(|| format!("--token-file {}: the file is empty", path.display()));
        }
        Ok(std::env::var("CLOCKWISE_TOKEN")
            .ok()
            .filter(|t| !t.is_empty()))
    }
}

/// TLS towards nodes started with `--cert` (and `--trusted-ca`).
#[derive(Args, Debug, Clone)]
pub struct TlsArgs {
    // Ids of their own: subcommands have positional `key`s.
    /// Speak TLS, trusting nodes whose certificate chains to this CA (PEM).
    #[arg(
        long = "cacert",
        id = "tls_cacert",
        env = "CLOCKWISE_CACERT",
        global = true
    )]
    cacert: Option<std::path::PathBuf>,
    /// A client certificate (PEM) for nodes that require one.
    #[arg(
        long = "cert",
        id = "tls_cert",
        env = "CLOCKWISE_CERT",
        global = true,
        requires_all = ["tls_cacert", "tls_key"]
    )]
    cert: Option<std::path::PathBuf>,
    /// The private key (PEM) of --cert.
    #[arg(
        long = "key",
        id = "tls_key",
        env = "CLOCKWISE_KEY",
        global = true,
        requires = "tls_cert"
    )]
    key: Option<std::path::PathBuf>,
}

impl TlsArgs {
    pub fn tls(&self) -> Result<Option<clockwise_client::Tls>, String> {
        let Some(ca) = &self.cacert else {
            return Ok(None);
        };
        let tls = clockwise_client::Tls::new(read_pem("--cacert", ca)?);
        Ok(Some(match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                tls.identity(read_pem("--cert", cert)?, read_pem("--key", key)?)
            }
            _ => tls,
        }))
    }
}

/// A PEM file named by `flag`.
fn read_pem(flag: &str, path: &std::path::Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{flag} {}: {e}", path.display()))
}
