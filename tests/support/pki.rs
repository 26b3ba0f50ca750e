//! A throwaway private CA for TLS tests, made at test time (rcgen): a CA
//! certificate, and server certificates it signs for the names asked.
//! Nothing is cached on disk; each [`Ca`] is new.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// A server's certificate chain and key, both PEM (what
/// [`super::fake_api::FakeApi::start_tls`] serves).
#[derive(Clone, Debug)]
pub struct ServerIdentity {
    /// The server certificate, then the CA's.
    pub chain_pem: String,
    /// The server's private key (PKCS#8).
    pub key_pem: String,
}

/// A CA that signs server certificates.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl Ca {
    /// A new CA named `name`.
    pub fn new(name: &str) -> Ca {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        let cert = params.self_signed(&key).expect("CA certificate");
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// The CA certificate, PEM (what `[targets.threatjammer] ca_file` names).
    pub fn cert_pem(&self) -> &str {
        &self.pem
    }

    /// A server certificate for `names` (DNS names or IP addresses), signed
    /// by this CA.
    pub fn server(&self, names: &[&str]) -> ServerIdentity {
        let key = KeyPair::generate().expect("server key");
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let params = CertificateParams::new(names).expect("server params");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("server certificate");
        ServerIdentity {
            chain_pem: format!("{}{}", cert.pem(), self.pem),
            key_pem: key.serialize_pem(),
        }
    }
}
