//! TLS trust for HTTPS clients: the private CA bundle of
//! `[targets.threatjammer] ca_file` and the rustls client builder that trusts either it or the
//! built-in public roots.
//!
//! It sits below [`crate::targets`]: Threat Jammer's section
//! (`targets::threatjammer::config`) reads `ca_file` at load time so that a
//! bad file is a configuration error, and its client builds its HTTP client
//! from it.
//!
//! Invariants: certificate verification is always on (there is no switch to
//! turn it off); with private roots, exactly those CAs are trusted and the
//! public ones are not; a `ca_file` is read with a size limit.

use std::io::Read;
use std::path::Path;

/// Largest `ca_file` read (a whole system bundle is ~200 KB; a path such as
/// /dev/zero must not make tjfwd read forever).
const MAX_CA_FILE: u64 = 16 << 20;

/// Reads the PEM bundle of `[targets.threatjammer] ca_file`: every `CERTIFICATE`
/// block, each checked to be a usable trust anchor. Errors say what is wrong
/// with the file (not which key named it: the caller adds that).
pub fn read_ca_file(path: &Path) -> Result<Vec<reqwest::Certificate>, String> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_CA_FILE + 1).read_to_end(&mut bytes))
        .map_err(|e| format!("cannot read it ({e})"))?;
    if bytes.len() as u64 > MAX_CA_FILE {
        return Err(format!(
            "it is larger than {} MiB: it should be a PEM bundle of CA certificates",
            MAX_CA_FILE >> 20
        ));
    }
    let certs = reqwest::Certificate::from_pem_bundle(&bytes)
        .map_err(|_| "it holds a malformed PEM certificate block".to_string())?;
    if certs.is_empty() {
        return Err(
            "it holds no PEM certificate (\"-----BEGIN CERTIFICATE-----\" blocks): give the \
             file of your CA's certificate(s) in PEM format"
                .to_string(),
        );
    }
    // Each certificate must parse as a trust anchor: building a client does
    // exactly that check (and nothing else: no connection is made).
    for (i, cert) in certs.iter().enumerate() {
        tls_client_builder(std::slice::from_ref(cert))
            .build()
            .map_err(|_| {
                format!(
                    "certificate {} of {} is not a valid X.509 CA certificate",
                    i + 1,
                    certs.len()
                )
            })?;
    }
    Ok(certs)
}

/// A client builder with rustls and certificate verification on: against
/// `private_roots` only when given, else against the built-in public roots.
pub fn tls_client_builder(private_roots: &[reqwest::Certificate]) -> reqwest::ClientBuilder {
    let mut b = reqwest::Client::builder().use_rustls_tls();
    if !private_roots.is_empty() {
        // A private CA deployment trusts its CA, not also every public one.
        b = b.tls_built_in_root_certs(false);
        for c in private_roots {
            b = b.add_root_certificate(c.clone());
        }
    }
    b
}
