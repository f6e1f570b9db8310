//! A private certificate authority for the TLS tests: a CA and a server certificate it signed,
//! as PEM and DER, made in code (rcgen) so no key material lives in the repository.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

/// A CA and one server certificate signed by it.
pub struct PrivateCa {
    /// The CA's certificate, PEM: what a client is told to trust.
    pub ca_pem: String,
    /// The server's certificate, PEM and DER.
    pub cert_pem: String,
    pub cert_der: Vec<u8>,
    /// The server's private key, PEM and PKCS#8 DER.
    pub key_pem: String,
    pub key_der: Vec<u8>,
}

/// A CA named `name` and a server certificate for `hosts` (names or IP addresses).
pub fn private_ca(name: &str, hosts: &[&str]) -> PrivateCa {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca_params.distinguished_name.push(DnType::CommonName, name);
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_params =
        CertificateParams::new(hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>()).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();
    PrivateCa {
        ca_pem: ca_cert.pem(),
        cert_pem: leaf.pem(),
        cert_der: leaf.der().to_vec(),
        key_pem: leaf_key.serialize_pem(),
        key_der: leaf_key.serialize_der(),
    }
}
