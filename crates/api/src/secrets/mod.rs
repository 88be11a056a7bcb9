//! Secrets at rest: each tenant's Cal.com API key and webhook secret are stored encrypted
//! with AES-256-GCM under a master key that never touches the database. The tenant id and
//! the column are bound in as associated data, so a ciphertext moved onto another tenant
//! (or into another column) does not decrypt; every ciphertext names the key that sealed
//! it, so two master keys work side by side while `phasebook secrets rotate` re-encrypts.
//!
//! The process holds one [`SecretBox`] (the configured keys), installed by the command line
//! before anything touches the database. A process that never installs one (a test binary)
//! gets a master key generated for that process, see [`process_default_key`].

pub mod cli;
pub mod rotation;

use std::fmt;
use std::sync::{Arc, LazyLock, RwLock};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Every ciphertext starts with this; anything else in a secret column is plain text left
/// from before encryption.
const SEALED_PREFIX: &str = "pbsec:v1:";
const NONCE_BYTES: usize = 12;
const KEY_BYTES: usize = 32;

/// Which secret a ciphertext holds; part of the associated data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretField {
    CalcomApiKey,
    /// The current and the previous (grace period) webhook secret share this field, so a
    /// rotation can move the current one aside without re-encrypting it.
    WebhookSecret,
}

impl SecretField {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CalcomApiKey => "calcom_api_key",
            Self::WebhookSecret => "webhook_secret",
        }
    }
}

impl fmt::Display for SecretField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a secret could not be sealed or opened. Messages name the tenant, the column and
/// the key id, never the secret.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(
        "no master key is configured, so secrets cannot be encrypted or decrypted; \
         set PHASEBOOK_SECRET_KEY or pass --secret-key-file"
    )]
    NoMasterKey,
    #[error(
        "{field} of tenant {tenant_id} was encrypted with master key {key_id}, which is not \
         configured; add it with --extra-secret-key-file (PHASEBOOK_EXTRA_SECRET_KEY)"
    )]
    UnknownKey {
        tenant_id: Uuid,
        field: SecretField,
        key_id: String,
    },
    #[error(
        "{field} of tenant {tenant_id} does not decrypt with master key {key_id}: the \
         ciphertext was altered or belongs to another tenant"
    )]
    Tampered {
        tenant_id: Uuid,
        field: SecretField,
        key_id: String,
    },
    #[error(
        "{field} of tenant {tenant_id} is stored in plain text; run `phasebook migrate` \
         with the master key set to encrypt it"
    )]
    Plaintext { tenant_id: Uuid, field: SecretField },
    #[error("{field} of tenant {tenant_id} is not a phasebook ciphertext")]
    Malformed { tenant_id: Uuid, field: SecretField },
    #[error("the master key is not valid: {0}")]
    BadMasterKey(String),
}

/// One 256-bit master key and its id (the first 8 hex digits of a hash of the key, so a
/// key file identifies itself and no list of ids needs to be configured).
pub struct MasterKey {
    id: String,
    cipher: Aes256Gcm,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKey").field("id", &self.id).finish()
    }
}

impl MasterKey {
    fn from_bytes(bytes: &[u8]) -> Result<Self, SecretError> {
        if bytes.len() != KEY_BYTES {
            return Err(SecretError::BadMasterKey(format!(
                "it must be {KEY_BYTES} bytes (base64 or hex), not {}",
                bytes.len()
            )));
        }
        let mut hasher = Sha256::new();
        hasher.update(b"phasebook master key id\0");
        hasher.update(bytes);
        let id = hex::encode(&hasher.finalize()[..4]);
        let cipher = Aes256Gcm::new_from_slice(bytes)
            .map_err(|_| SecretError::BadMasterKey("wrong length".to_string()))?;
        Ok(Self { id, cipher })
    }

    /// Reads a key written as base64 (44 characters) or hex (64 characters); surrounding
    /// white space (a trailing newline in a key file) is ignored.
    pub fn parse(text: &str) -> Result<Self, SecretError> {
        let text = text.trim();
        let bytes = if text.len() == 2 * KEY_BYTES && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(text).map_err(|_| SecretError::BadMasterKey("bad hex".to_string()))?
        } else {
            STANDARD.decode(text).map_err(|_| {
                SecretError::BadMasterKey(
                    "expected 32 bytes as base64 or 64 hex digits (`phasebook secrets generate-key` makes one)"
                        .to_string(),
                )
            })?
        };
        Self::from_bytes(&bytes)
    }

    /// A fresh random key and its base64 text (the only time the text exists).
    pub fn generate() -> (Self, SecretString) {
        let mut bytes = [0u8; KEY_BYTES];
        rand::rng().fill(&mut bytes[..]);
        let text = STANDARD.encode(bytes);
        let key = Self::from_bytes(&bytes).unwrap_or_else(|_| unreachable!("32 bytes"));
        (key, SecretString::from(text))
    }

    pub fn id(&self) -> &str {
        &self.id
    }
}

/// The configured master keys: the primary one seals, every one opens what it sealed.
#[derive(Clone, Default)]
pub struct SecretBox {
    primary: Option<Arc<MasterKey>>,
    keys: Vec<Arc<MasterKey>>,
}

impl fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretBox")
            .field("primary", &self.primary_id())
            .field("keys", &self.key_ids())
            .finish()
    }
}

fn associated_data(tenant_id: Uuid, field: SecretField) -> String {
    format!("phasebook secret v1|{}|{}", tenant_id.hyphenated(), field)
}

/// The key id a stored value was sealed with; None for plain text.
pub fn sealed_key_id(stored: &str) -> Option<&str> {
    stored.strip_prefix(SEALED_PREFIX)?.split(':').next()
}

impl SecretBox {
    /// No key: plain text passes, ciphertext cannot be opened and nothing can be sealed.
    pub fn without_key() -> Self {
        Self::default()
    }

    pub fn new(primary: MasterKey) -> Self {
        let primary = Arc::new(primary);
        Self {
            keys: vec![primary.clone()],
            primary: Some(primary),
        }
    }

    /// Adds a key that opens what it sealed but seals nothing new.
    pub fn with_decrypt_key(mut self, key: MasterKey) -> Self {
        if !self.keys.iter().any(|k| k.id == key.id) {
            self.keys.push(Arc::new(key));
        }
        self
    }

    /// The same keys with `key` sealing from now on.
    pub fn with_primary(mut self, key: MasterKey) -> Self {
        let key = Arc::new(key);
        self.keys.retain(|k| k.id != key.id);
        self.keys.push(key.clone());
        self.primary = Some(key);
        self
    }

    pub fn has_key(&self) -> bool {
        self.primary.is_some()
    }

    pub fn primary_id(&self) -> Option<&str> {
        self.primary.as_deref().map(MasterKey::id)
    }

    pub fn key_ids(&self) -> Vec<&str> {
        self.keys.iter().map(|k| k.id()).collect()
    }

    pub fn knows(&self, key_id: &str) -> bool {
        self.keys.iter().any(|k| k.id == key_id)
    }

    /// Encrypts `plaintext` for (tenant, field) under the primary key.
    pub fn seal(
        &self,
        tenant_id: Uuid,
        field: SecretField,
        plaintext: &str,
    ) -> Result<String, SecretError> {
        let key = self.primary.as_deref().ok_or(SecretError::NoMasterKey)?;
        let mut nonce = [0u8; NONCE_BYTES];
        rand::rng().fill(&mut nonce[..]);
        let aad = associated_data(tenant_id, field);
        let sealed = key
            .cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| SecretError::BadMasterKey("encryption failed".to_string()))?;
        let mut blob = Vec::with_capacity(NONCE_BYTES + sealed.len());
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&sealed);
        Ok(format!(
            "{SEALED_PREFIX}{}:{}",
            key.id,
            URL_SAFE_NO_PAD.encode(blob)
        ))
    }

    /// Decrypts a stored value. Plain text is returned as is only when no key is
    /// configured (a database from before encryption, served without a key); with a key,
    /// plain text is refused, since the start-up migration has encrypted every row.
    pub fn open(
        &self,
        tenant_id: Uuid,
        field: SecretField,
        stored: &str,
    ) -> Result<SecretString, SecretError> {
        let Some(rest) = stored.strip_prefix(SEALED_PREFIX) else {
            return if self.has_key() {
                Err(SecretError::Plaintext { tenant_id, field })
            } else {
                Ok(SecretString::from(stored.to_string()))
            };
        };
        let (key_id, encoded) = rest
            .split_once(':')
            .ok_or(SecretError::Malformed { tenant_id, field })?;
        if self.keys.is_empty() {
            return Err(SecretError::NoMasterKey);
        }
        let key =
            self.keys
                .iter()
                .find(|k| k.id == key_id)
                .ok_or_else(|| SecretError::UnknownKey {
                    tenant_id,
                    field,
                    key_id: key_id.to_string(),
                })?;
        let blob = URL_SAFE_NO_PAD
            .decode(encoded)
            .map_err(|_| SecretError::Malformed { tenant_id, field })?;
        if blob.len() < NONCE_BYTES + 16 {
            return Err(SecretError::Malformed { tenant_id, field });
        }
        let (nonce, sealed) = blob.split_at(NONCE_BYTES);
        let mut nonce_bytes = [0u8; NONCE_BYTES];
        nonce_bytes.copy_from_slice(nonce);
        let aad = associated_data(tenant_id, field);
        let tampered = || SecretError::Tampered {
            tenant_id,
            field,
            key_id: key_id.to_string(),
        };
        let plain = key
            .cipher
            .decrypt(
                &Nonce::from(nonce_bytes),
                Payload {
                    msg: sealed,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| tampered())?;
        String::from_utf8(plain)
            .map(SecretString::from)
            .map_err(|_| tampered())
    }
}

static PROCESS_DEFAULT: LazyLock<(Arc<MasterKey>, SecretString)> = LazyLock::new(|| {
    let (key, text) = MasterKey::generate();
    (Arc::new(key), text)
});

static INSTALLED: RwLock<Option<Arc<SecretBox>>> = RwLock::new(None);

/// The master key of a process that installed none (tests): generated on first use, so
/// every store, router and worker of one test process shares it. A test hands its text
/// to a `phasebook` child process as `PHASEBOOK_SECRET_KEY`. The command line always
/// installs its configured box first, so the binary never uses this.
pub fn process_default_key() -> &'static SecretString {
    &PROCESS_DEFAULT.1
}

/// Makes `secret_box` the keys of this process.
pub fn install(secret_box: SecretBox) {
    let mut installed = INSTALLED
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    *installed = Some(Arc::new(secret_box));
}

/// Adds a key that opens what it sealed to this process's keys (the first step of a
/// rotation, for a process that keeps running).
pub fn install_decrypt_key(key: MasterKey) {
    let mut installed = INSTALLED
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let keys = installed
        .as_deref()
        .cloned()
        .unwrap_or_else(process_default_box)
        .with_decrypt_key(key);
    *installed = Some(Arc::new(keys));
}

fn process_default_box() -> SecretBox {
    let primary = PROCESS_DEFAULT.0.clone();
    SecretBox {
        keys: vec![primary.clone()],
        primary: Some(primary),
    }
}

/// The keys of this process (see [`install`] and [`process_default_key`]).
pub fn current() -> Arc<SecretBox> {
    if let Some(installed) = INSTALLED
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .as_ref()
    {
        return installed.clone();
    }
    Arc::new(process_default_box())
}

/// Opens a secret column read by a store whose errors are `sqlx::Error` (the sync store):
/// the failure becomes a decode error carrying the clear message.
pub fn open_column(
    tenant_id: Uuid,
    field: SecretField,
    stored: &str,
) -> Result<SecretString, sqlx::Error> {
    current()
        .open(tenant_id, field, stored)
        .map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

/// Seals a secret with the process's keys.
pub fn seal(
    tenant_id: Uuid,
    field: SecretField,
    plaintext: &SecretString,
) -> Result<String, SecretError> {
    current().seal(tenant_id, field, plaintext.expose_secret())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boxed() -> SecretBox {
        SecretBox::new(MasterKey::generate().0)
    }

    #[test]
    fn a_sealed_secret_opens_for_its_tenant_and_field_only() {
        let keys = boxed();
        let tenant = Uuid::now_v7();
        let sealed = keys
            .seal(tenant, SecretField::CalcomApiKey, "cal_live_secret")
            .expect("seal");
        assert!(!sealed.contains("cal_live_secret"));
        assert_eq!(sealed_key_id(&sealed), keys.primary_id());
        let opened = keys
            .open(tenant, SecretField::CalcomApiKey, &sealed)
            .expect("open");
        assert_eq!(opened.expose_secret(), "cal_live_secret");
        assert!(matches!(
            keys.open(Uuid::now_v7(), SecretField::CalcomApiKey, &sealed),
            Err(SecretError::Tampered { .. })
        ));
        assert!(matches!(
            keys.open(tenant, SecretField::WebhookSecret, &sealed),
            Err(SecretError::Tampered { .. })
        ));
    }

    #[test]
    fn tampered_or_unknown_ciphertexts_fail_with_a_clear_error() {
        let keys = boxed();
        let tenant = Uuid::now_v7();
        let sealed = keys
            .seal(tenant, SecretField::WebhookSecret, "whsec_x")
            .expect("seal");
        let mut flipped = sealed.clone().into_bytes();
        let last = flipped.len() - 2;
        flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).expect("utf-8");
        let err = keys
            .open(tenant, SecretField::WebhookSecret, &flipped)
            .expect_err("tampered");
        assert!(err.to_string().contains("altered"), "{err}");
        let other = boxed();
        let err = other
            .open(tenant, SecretField::WebhookSecret, &sealed)
            .expect_err("unknown key");
        assert!(matches!(err, SecretError::UnknownKey { .. }), "{err}");
        assert!(matches!(
            keys.open(tenant, SecretField::WebhookSecret, "pbsec:v1:nonsense"),
            Err(SecretError::Malformed { .. })
        ));
    }

    #[test]
    fn plain_text_passes_only_without_a_key() {
        let tenant = Uuid::now_v7();
        let none = SecretBox::without_key();
        assert_eq!(
            none.open(tenant, SecretField::CalcomApiKey, "cal_plain")
                .expect("plain")
                .expose_secret(),
            "cal_plain"
        );
        assert!(matches!(
            none.seal(tenant, SecretField::CalcomApiKey, "x"),
            Err(SecretError::NoMasterKey)
        ));
        assert!(matches!(
            boxed().open(tenant, SecretField::CalcomApiKey, "cal_plain"),
            Err(SecretError::Plaintext { .. })
        ));
    }

    #[test]
    fn two_keys_open_both_generations_during_a_rotation() {
        let (old, _) = MasterKey::generate();
        let (new, new_text) = MasterKey::generate();
        let tenant = Uuid::now_v7();
        let before = SecretBox::new(old);
        let sealed_old = before
            .seal(tenant, SecretField::CalcomApiKey, "k")
            .expect("seal");
        let during = before
            .clone()
            .with_primary(MasterKey::parse(new_text.expose_secret()).expect("parse"));
        let sealed_new = during
            .seal(tenant, SecretField::CalcomApiKey, "k")
            .expect("seal");
        assert_eq!(sealed_key_id(&sealed_new), Some(new.id()));
        for sealed in [&sealed_old, &sealed_new] {
            assert_eq!(
                during
                    .open(tenant, SecretField::CalcomApiKey, sealed)
                    .expect("open")
                    .expose_secret(),
                "k"
            );
        }
    }

    #[test]
    fn master_keys_parse_from_base64_or_hex_and_name_themselves() {
        let (key, text) = MasterKey::generate();
        let again = MasterKey::parse(&format!("{}\n", text.expose_secret())).expect("base64");
        assert_eq!(key.id(), again.id());
        let bytes = STANDARD.decode(text.expose_secret()).expect("b64");
        assert_eq!(
            MasterKey::parse(&hex::encode(bytes)).expect("hex").id(),
            key.id()
        );
        assert!(MasterKey::parse("short").is_err());
        assert!(!format!("{key:?}").contains(text.expose_secret()));
    }
}
