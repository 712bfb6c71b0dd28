//! A private certificate authority for local TLS listeners (`yaks dev` and the tests): it
//! signs a gateway certificate valid for the loopback names and client certificates for
//! mutual TLS, and writes them as the PEM files `gateway.tls` settings name. Nothing here
//! is for production, where certificates come from the deployment's own authority.

use std::path::{Path, PathBuf};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

/// A certificate and its private key, as PEM.
#[derive(Debug, Clone)]
pub struct Pem {
    /// The certificate.
    pub cert: String,
    /// Its private key (PKCS#8).
    pub key: String,
}

/// A private certificate authority.
pub struct LocalCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

/// Where [`LocalCa::write_gateway_files`] put the files.
#[derive(Debug, Clone)]
pub struct GatewayFiles {
    /// The authority's certificate, for clients to trust.
    pub ca_file: PathBuf,
    /// The gateway's certificate.
    pub cert_file: PathBuf,
    /// Its key, readable by the owner only.
    pub key_file: PathBuf,
}

impl LocalCa {
    /// A new authority named `name`.
    pub fn new(name: &str) -> anyhow::Result<LocalCa> {
        let key = KeyPair::generate().context("generating the CA key")?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name = subject(name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let pem = params.self_signed(&key).context("signing the CA")?.pem();
        Ok(LocalCa {
            issuer: Issuer::new(params, key),
            pem,
        })
    }

    /// The authority's certificate.
    pub fn ca_pem(&self) -> &str {
        &self.pem
    }

    /// A server certificate for `names` (DNS names or IP addresses).
    pub fn server(&self, names: &[&str]) -> anyhow::Result<Pem> {
        let owned: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(owned)?;
        params.distinguished_name = subject(names.first().copied().unwrap_or("yaks"));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params)
    }

    /// A client certificate whose subject is `CN=<common_name>`, for mutual TLS.
    pub fn client(&self, common_name: &str) -> anyhow::Result<Pem> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = subject(common_name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params)
    }

    /// Writes `ca.pem`, `gateway.pem` and `gateway.key` (mode 0600) into `dir`, the
    /// gateway's certificate valid for `127.0.0.1` and `localhost`.
    pub fn write_gateway_files(&self, dir: &Path) -> anyhow::Result<GatewayFiles> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let server = self.server(&["localhost", "127.0.0.1"])?;
        let files = GatewayFiles {
            ca_file: dir.join("ca.pem"),
            cert_file: dir.join("gateway.pem"),
            key_file: dir.join("gateway.key"),
        };
        write(&files.ca_file, &self.pem, 0o644)?;
        write(&files.cert_file, &server.cert, 0o644)?;
        write(&files.key_file, &server.key, 0o600)?;
        Ok(files)
    }

    fn sign(&self, params: CertificateParams) -> anyhow::Result<Pem> {
        let key = KeyPair::generate().context("generating a key")?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .context("signing a certificate")?;
        Ok(Pem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        })
    }
}

fn subject(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name
}

/// Writes `text` to `path` with `mode`, through a temporary file renamed into place, so a
/// gateway reloading certificates never reads half a file.
pub fn write(path: &Path, text: &str, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, text).with_context(|| format!("writing {}", temporary.display()))?;
    std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(mode))?;
    std::fs::rename(&temporary, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
