//! SCRAM credentials and the server's side of a SCRAM exchange (RFC 5802, RFC 7677), as
//! Kafka's `SCRAM-SHA-256` and `SCRAM-SHA-512` mechanisms use them; and the check of a
//! `PLAIN` password against the same stored credential.
//!
//! Vocabulary (the RFC's): the *salted password* is PBKDF2-HMAC of the password with the
//! user's salt and iteration count; the *stored key* is the hash of the HMAC of the salted
//! password with `"Client Key"`, the *server key* its HMAC with `"Server Key"`. Only the
//! salt, the iterations and those two keys are stored, never the password or the salted
//! password: a stolen table lets nobody log in, though it does allow guessing passwords
//! offline, at the iteration count's cost per guess.
//!
//! Pure: no I/O, the nonces are passed in, so the exchange is tested against the RFC's
//! test vectors.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{EagerHash, Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

/// Fewest iterations a credential may have (Kafka's minimum, as RFC 7677 recommends).
pub const MIN_ITERATIONS: i32 = 4096;
/// Most iterations a credential may have (Kafka's maximum).
pub const MAX_ITERATIONS: i32 = 16384;

/// A SCRAM mechanism Kafka defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mechanism {
    /// `SCRAM-SHA-256`.
    Sha256,
    /// `SCRAM-SHA-512`.
    Sha512,
}

impl Mechanism {
    /// Both, in Kafka's order.
    pub const ALL: [Mechanism; 2] = [Mechanism::Sha256, Mechanism::Sha512];

    /// The SASL mechanism name.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Sha256 => "SCRAM-SHA-256",
            Mechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    /// The mechanism called `name`.
    pub fn from_name(name: &str) -> Option<Mechanism> {
        Mechanism::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Kafka's `ScramMechanism` type code (DescribeUserScramCredentials and
    /// AlterUserScramCredentials), also how the store keeps it.
    pub fn code(self) -> i8 {
        match self {
            Mechanism::Sha256 => 1,
            Mechanism::Sha512 => 2,
        }
    }

    /// The mechanism with Kafka type code `code`.
    pub fn from_code(code: i8) -> Option<Mechanism> {
        Mechanism::ALL.into_iter().find(|m| m.code() == code)
    }

    /// Length of its hash, which is the length of a salted password.
    pub fn hash_len(self) -> usize {
        match self {
            Mechanism::Sha256 => 32,
            Mechanism::Sha512 => 64,
        }
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            Mechanism::Sha256 => hmac::<Sha256>(key, data),
            Mechanism::Sha512 => hmac::<Sha512>(key, data),
        }
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            Mechanism::Sha256 => Sha256::digest(data).to_vec(),
            Mechanism::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// The salted password: PBKDF2-HMAC (RFC 5802's `Hi`).
    pub fn salted_password(self, password: &[u8], salt: &[u8], iterations: i32) -> Vec<u8> {
        let mut out = vec![0u8; self.hash_len()];
        let rounds = iterations.max(1) as u32;
        match self {
            Mechanism::Sha256 => pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, rounds, &mut out),
            Mechanism::Sha512 => pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, rounds, &mut out),
        }
        out
    }
}

fn hmac<D: EagerHash>(key: &[u8], data: &[u8]) -> Vec<u8>
where
    Hmac<D>: KeyInit + Mac,
{
    // HMAC takes keys of any length; the error case cannot happen.
    let mut mac = match <Hmac<D> as KeyInit>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => return Vec::new(),
    };
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// What is stored of a user's password for one mechanism.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// Which mechanism.
    pub mechanism: Mechanism,
    /// Random, per credential.
    pub salt: Vec<u8>,
    /// PBKDF2 iterations.
    pub iterations: i32,
    /// `H(HMAC(salted password, "Client Key"))`: what a client's proof is checked against.
    pub stored_key: Vec<u8>,
    /// `HMAC(salted password, "Server Key")`: what the server proves itself with.
    pub server_key: Vec<u8>,
}

impl Credential {
    /// The credential for `password`.
    pub fn from_password(
        mechanism: Mechanism,
        password: &str,
        salt: Vec<u8>,
        iterations: i32,
    ) -> Credential {
        let salted = mechanism.salted_password(password.as_bytes(), &salt, iterations);
        Credential::from_salted_password(mechanism, &salted, salt, iterations)
    }

    /// The credential for a salted password, as AlterUserScramCredentials carries it (the
    /// client salts the password; it never crosses the wire).
    pub fn from_salted_password(
        mechanism: Mechanism,
        salted_password: &[u8],
        salt: Vec<u8>,
        iterations: i32,
    ) -> Credential {
        let client_key = mechanism.hmac(salted_password, b"Client Key");
        Credential {
            mechanism,
            salt,
            iterations,
            stored_key: mechanism.hash(&client_key),
            server_key: mechanism.hmac(salted_password, b"Server Key"),
        }
    }

    /// Whether `password` is the one this credential was made from (SASL `PLAIN`), in time
    /// that does not depend on where it differs.
    pub fn verify_password(&self, password: &str) -> bool {
        let salted =
            self.mechanism
                .salted_password(password.as_bytes(), &self.salt, self.iterations);
        let client_key = self.mechanism.hmac(&salted, b"Client Key");
        let stored_key = self.mechanism.hash(&client_key);
        bool::from(stored_key.ct_eq(&self.stored_key))
    }
}

/// Why an exchange failed. The client is told only that authentication failed; the log
/// line says which of these it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    /// A message that is not what RFC 5802 allows at this step.
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    /// Channel binding, which Kafka does not offer.
    #[error("channel binding is not supported")]
    ChannelBinding,
    /// An extension yaks does not serve (`tokenauth`: delegation tokens).
    #[error("SCRAM extension {0:?} is not supported")]
    Extension(String),
    /// The final message does not continue this exchange.
    #[error("nonce or channel binding does not match the first messages")]
    Mismatch,
    /// Wrong password, or a user without a credential for the mechanism.
    #[error("invalid credentials")]
    InvalidCredentials,
}

/// The client's first message, parsed: who it says it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFirst {
    /// The user name (`n=`), unescaped.
    pub user: String,
    /// The client's nonce.
    nonce: String,
    /// The GS2 header (`n,,` or `n,a=user,`), which the final message must echo.
    gs2_header: String,
    /// The message without its GS2 header, part of what both sides sign.
    bare: String,
}

impl ClientFirst {
    /// Parses `client-first-message`.
    pub fn parse(message: &[u8]) -> Result<ClientFirst, ScramError> {
        let text = std::str::from_utf8(message).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let mut parts = text.splitn(3, ',');
        let flag = parts.next().ok_or(ScramError::Malformed("empty"))?;
        let authzid = parts.next().ok_or(ScramError::Malformed("no GS2 header"))?;
        let bare = parts.next().ok_or(ScramError::Malformed("no user"))?;
        match flag {
            "n" | "y" => {}
            flag if flag.starts_with("p=") => return Err(ScramError::ChannelBinding),
            _ => return Err(ScramError::Malformed("bad GS2 flag")),
        }
        let mut user = None;
        let mut nonce = None;
        for attribute in bare.split(',') {
            match attribute.split_once('=') {
                Some(("n", value)) => user = Some(unescape(value)?),
                Some(("r", value)) => nonce = Some(value.to_owned()),
                Some(("m", _)) => return Err(ScramError::Malformed("mandatory extension")),
                Some((name, _)) if name.len() > 1 => {
                    // Kafka's extensions: `tokenauth=true` asks for delegation tokens.
                    if name == "tokenauth" {
                        return Err(ScramError::Extension(name.to_owned()));
                    }
                }
                _ => return Err(ScramError::Malformed("bad attribute")),
            }
        }
        let user = user.ok_or(ScramError::Malformed("no user"))?;
        let nonce = nonce.ok_or(ScramError::Malformed("no nonce"))?;
        if user.is_empty() || nonce.is_empty() {
            return Err(ScramError::Malformed("empty user or nonce"));
        }
        if let Some(authzid) = authzid.strip_prefix("a=")
            && unescape(authzid)? != user
        {
            // Kafka: the authorization id must be the user itself.
            return Err(ScramError::InvalidCredentials);
        }
        Ok(ClientFirst {
            user,
            nonce,
            gs2_header: format!("{flag},{authzid},"),
            bare: bare.to_owned(),
        })
    }
}

/// The server's side of an exchange after it answered the client's first message.
#[derive(Debug, Clone)]
pub struct ServerFirst {
    credential: Credential,
    client_first: ClientFirst,
    nonce: String,
    message: String,
}

impl ServerFirst {
    /// Answers `client_first` for `credential`, adding `server_nonce` (random, printable,
    /// no commas) to the client's nonce.
    pub fn new(client_first: ClientFirst, credential: Credential, server_nonce: &str) -> Self {
        let nonce = format!("{}{server_nonce}", client_first.nonce);
        let message = format!(
            "r={nonce},s={},i={}",
            BASE64.encode(&credential.salt),
            credential.iterations
        );
        ServerFirst {
            credential,
            client_first,
            nonce,
            message,
        }
    }

    /// The user authenticating.
    pub fn user(&self) -> &str {
        &self.client_first.user
    }

    /// `server-first-message`, to send.
    pub fn message(&self) -> &[u8] {
        self.message.as_bytes()
    }

    /// Checks `client-final-message`; `server-final-message` (`v=…`) to send if the proof
    /// holds.
    pub fn finish(&self, message: &[u8]) -> Result<Vec<u8>, ScramError> {
        let text = std::str::from_utf8(message).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed("no proof"))?;
        let mut binding = None;
        let mut nonce = None;
        for attribute in without_proof.split(',') {
            match attribute.split_once('=') {
                Some(("c", value)) => binding = Some(value),
                Some(("r", value)) => nonce = Some(value),
                Some(_) => {}
                None => return Err(ScramError::Malformed("bad attribute")),
            }
        }
        let binding = binding.ok_or(ScramError::Malformed("no channel binding"))?;
        let expected = BASE64.encode(self.client_first.gs2_header.as_bytes());
        if binding != expected || nonce != Some(self.nonce.as_str()) {
            return Err(ScramError::Mismatch);
        }
        let proof = BASE64
            .decode(proof)
            .map_err(|_| ScramError::Malformed("proof is not base64"))?;
        let mechanism = self.credential.mechanism;
        if proof.len() != mechanism.hash_len() {
            return Err(ScramError::InvalidCredentials);
        }
        let auth_message = format!(
            "{},{},{without_proof}",
            self.client_first.bare, self.message
        );
        let client_signature = mechanism.hmac(&self.credential.stored_key, auth_message.as_bytes());
        let client_key: Vec<u8> = proof
            .iter()
            .zip(&client_signature)
            .map(|(p, s)| p ^ s)
            .collect();
        if !bool::from(
            mechanism
                .hash(&client_key)
                .ct_eq(&self.credential.stored_key),
        ) {
            return Err(ScramError::InvalidCredentials);
        }
        let server_signature = mechanism.hmac(&self.credential.server_key, auth_message.as_bytes());
        Ok(format!("v={}", BASE64.encode(server_signature)).into_bytes())
    }
}

/// RFC 5802's `saslname` unescaping: `=2C` is `,` and `=3D` is `=`; any other `=` is an
/// error.
fn unescape(value: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(at) = rest.find('=') {
        out.push_str(&rest[..at]);
        let code = rest.get(at + 1..at + 3);
        match code {
            Some("2C") => out.push(','),
            Some("3D") => out.push('='),
            _ => return Err(ScramError::Malformed("bad escape in a name")),
        }
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

/// SASL `PLAIN` (RFC 4616): `authzid NUL authcid NUL password`; the user and password.
/// Kafka requires the authorization id to be empty or the user itself.
pub fn parse_plain(message: &[u8]) -> Result<(String, String), ScramError> {
    let text = std::str::from_utf8(message).map_err(|_| ScramError::Malformed("not UTF-8"))?;
    let mut parts = text.split('\0');
    let (Some(authzid), Some(user), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ScramError::Malformed(
            "PLAIN needs three NUL-separated fields",
        ));
    };
    if user.is_empty() || password.is_empty() {
        return Err(ScramError::Malformed("empty user or password"));
    }
    if !authzid.is_empty() && authzid != user {
        return Err(ScramError::InvalidCredentials);
    }
    Ok((user.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677's SCRAM-SHA-256 example, byte for byte.
    #[test]
    fn the_rfc_7677_exchange_verifies() {
        let salt = BASE64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").expect("salt");
        let credential = Credential::from_password(Mechanism::Sha256, "pencil", salt, 4096);
        let first = ClientFirst::parse(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO").expect("parses");
        assert_eq!(first.user, "user");
        let server = ServerFirst::new(first, credential.clone(), "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0");
        assert_eq!(
            server.message(),
            b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        );
        let final_message = b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                              p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
        let answer = server.finish(final_message).expect("proof holds");
        assert_eq!(answer, b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");

        let mut forged = final_message.to_vec();
        let at = forged.len() - 3;
        forged[at] ^= 1;
        assert!(server.finish(&forged).is_err());
        assert!(credential.verify_password("pencil"));
        assert!(!credential.verify_password("pencils"));
    }

    #[test]
    fn a_sha_512_credential_checks_its_password() {
        let credential =
            Credential::from_password(Mechanism::Sha512, "s3cret", b"salt".to_vec(), 4096);
        assert_eq!(credential.stored_key.len(), 64);
        assert!(credential.verify_password("s3cret"));
        assert!(!credential.verify_password("S3cret"));
    }

    #[test]
    fn client_first_messages_are_read_as_rfc_5802_writes_them() {
        let first = ClientFirst::parse(b"n,a=a=2Cb,n=a=2Cb,r=abc").expect("parses");
        assert_eq!(first.user, "a,b");
        assert_eq!(
            ClientFirst::parse(b"p=tls-unique,,n=u,r=x"),
            Err(ScramError::ChannelBinding)
        );
        assert_eq!(
            ClientFirst::parse(b"n,,n=u,r=x,tokenauth=true"),
            Err(ScramError::Extension("tokenauth".into()))
        );
        assert!(ClientFirst::parse(b"n,,n=u").is_err());
        assert!(ClientFirst::parse(b"n,,n=a=2,r=x").is_err());
        assert!(ClientFirst::parse(b"\xff").is_err());
        assert_eq!(
            ClientFirst::parse(b"n,a=other,n=u,r=x"),
            Err(ScramError::InvalidCredentials)
        );
    }

    #[test]
    fn plain_messages_have_three_fields_and_no_foreign_authorization_id() {
        assert_eq!(
            parse_plain(b"\0alice\0pw").expect("parses"),
            ("alice".into(), "pw".into())
        );
        assert!(parse_plain(b"alice\0alice\0pw").is_ok());
        assert!(parse_plain(b"bob\0alice\0pw").is_err());
        assert!(parse_plain(b"\0alice").is_err());
        assert!(parse_plain(b"\0alice\0pw\0more").is_err());
    }

    #[test]
    fn mechanisms_have_kafka_names_and_codes() {
        assert_eq!(
            Mechanism::from_name("SCRAM-SHA-512"),
            Some(Mechanism::Sha512)
        );
        assert_eq!(Mechanism::from_code(1), Some(Mechanism::Sha256));
        assert_eq!(Mechanism::from_code(0), None);
    }
}
