//! Certificates made by a test (rcgen): a CA, a server certificate for `localhost` and a client
//! certificate signed by it, and another CA that signed nothing of these (the wrong one).

use std::path::Path;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

/// In a temp dir: `ca.pem`, `server.pem` + `server.key` (for `localhost`), `client.pem` +
/// `client.key`, and `other.pem` (an unrelated CA).
pub struct Pki {
    pub dir: tempfile::TempDir,
}

impl Pki {
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: String| std::fs::write(dir.path().join(name), text).unwrap();
        for (prefix, issues) in [("ca", true), ("other", false)] {
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, format!("ringway test {prefix}"));
            let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
            write(&format!("{prefix}.pem"), ca.pem());
            if !issues {
                continue;
            }
            for (name, san) in [("server", "localhost"), ("client", "ringway-client")] {
                let key = KeyPair::generate().unwrap();
                let cert = CertificateParams::new(vec![san.to_string()])
                    .unwrap()
                    .signed_by(&key, &ca)
                    .unwrap();
                write(&format!("{name}.pem"), cert.pem());
                write(&format!("{name}.key"), key.serialize_pem());
            }
        }
        Pki { dir }
    }

    pub fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_string_lossy().into_owned()
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }
}
