//! The node's Ed25519 signing key. Created on first run as a PKCS#8 PEM file with mode 0600
//! (written aside and hard-linked into place, so two processes starting at once end up with the
//! same key), loaded afterwards. Its public half is published as SPKI PEM — the form
//! `openssl pkeyutl -verify -pubin -inkey key.pem -rawin` reads — and named by its key id, the
//! hex SHA-256 of the SPKI DER.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::catalog::NodeKey;

/// Key failures.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file cannot be read, created or parsed.
    #[error("node key {path}: {message}")]
    File {
        /// The key file (`custody.key_file`).
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A published public key does not parse.
    #[error("public key: {0}")]
    Public(String),
    /// A signature does not verify.
    #[error("signature does not verify with key {0}")]
    BadSignature(String),
}

/// This node's signing key and its published identity.
pub struct NodeSigner {
    /// The private key (never leaves this process).
    key: SigningKey,
    /// Hex SHA-256 of the SPKI DER of the public key.
    pub key_id: String,
    /// The public key as SPKI PEM.
    pub public_pem: String,
    /// The node that holds it.
    pub node: String,
}

impl NodeSigner {
    /// Loads the key at `path`, creating it (mode 0600) when it does not exist yet.
    pub fn load_or_create(path: &Path, node: &str) -> Result<Self, KeyError> {
        let err = |message: String| KeyError::File { path: path.to_path_buf(), message };
        let pem = match std::fs::read_to_string(path) {
            Ok(pem) => {
                let mode = std::fs::metadata(path).map(|m| m.permissions().mode() & 0o777).unwrap_or(0);
                if mode & 0o077 != 0 {
                    tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), "node key is readable by others; chmod 600 it");
                }
                pem
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => create(path).map_err(|e| err(format!("cannot create: {e}")))?,
            Err(e) => return Err(err(format!("cannot read: {e}"))),
        };
        let key = SigningKey::from_pkcs8_pem(&pem).map_err(|e| err(format!("not an Ed25519 PKCS#8 PEM key: {e}")))?;
        let public_pem = key.verifying_key().to_public_key_pem(LineEnding::LF).map_err(|e| err(e.to_string()))?;
        let key_id = key_id_of(&public_pem)?;
        Ok(Self { key, key_id, public_pem, node: node.to_string() })
    }

    /// Signs `msg` (raw Ed25519, 64 bytes).
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.key.sign(msg).to_bytes()
    }

    /// The catalog record of the public half.
    pub fn node_key(&self) -> NodeKey {
        NodeKey {
            key_id: self.key_id.clone(),
            node: self.node.clone(),
            public_pem: self.public_pem.clone(),
            created_at: crate::catalog::now_micros(),
        }
    }
}

/// Writes a fresh key to `path` without ever exposing a partial or world-readable file.
fn create(path: &Path) -> std::io::Result<String> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut seed = [0u8; 32];
    rand::fill(&mut seed);
    let key = SigningKey::from_bytes(&seed);
    let pem = key.to_pkcs8_pem(LineEnding::LF).map_err(|e| std::io::Error::other(e.to_string()))?;
    let tmp = dir.join(format!(".node-key-{}.tmp", uuid::Uuid::new_v4()));
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
    f.write_all(pem.as_bytes())?;
    f.sync_all()?;
    // A hard link never replaces an existing file: if another process won the race, use its key.
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            std::fs::File::open(dir)?.sync_all()?;
            tracing::info!(path = %path.display(), "created the node signing key");
            Ok(pem.to_string())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => std::fs::read_to_string(path),
        Err(e) => Err(e),
    }
}

/// The key id of an SPKI PEM public key: hex SHA-256 of its DER.
pub fn key_id_of(public_pem: &str) -> Result<String, KeyError> {
    let vk = VerifyingKey::from_public_key_pem(public_pem).map_err(|e| KeyError::Public(e.to_string()))?;
    let der = vk.to_public_key_der().map_err(|e| KeyError::Public(e.to_string()))?;
    Ok(hex::encode(Sha256::digest(der.as_bytes())))
}

/// Checks an Ed25519 signature over `msg` with an SPKI PEM public key.
pub fn verify(public_pem: &str, msg: &[u8], sig: &[u8]) -> Result<(), KeyError> {
    let vk = VerifyingKey::from_public_key_pem(public_pem).map_err(|e| KeyError::Public(e.to_string()))?;
    let sig = Signature::from_slice(sig).map_err(|_| KeyError::BadSignature(short(public_pem)))?;
    vk.verify_strict(msg, &sig).map_err(|_| KeyError::BadSignature(short(public_pem)))
}

fn short(public_pem: &str) -> String {
    key_id_of(public_pem).map(|k| k[..16].to_string()).unwrap_or_else(|_| "?".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_with_mode_600_and_signatures_verify() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/node-key.pem");
        let a = NodeSigner::load_or_create(&path, "n1").unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let b = NodeSigner::load_or_create(&path, "n1").unwrap();
        assert_eq!(a.key_id, b.key_id);
        assert!(a.public_pem.starts_with("-----BEGIN PUBLIC KEY-----"));
        let sig = a.sign(b"head");
        verify(&b.public_pem, b"head", &sig).unwrap();
        assert!(verify(&b.public_pem, b"heaD", &sig).is_err());
        assert!(verify(&b.public_pem, b"head", &sig[..63]).is_err());
    }

    #[test]
    fn garbage_key_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        std::fs::write(&path, "nope").unwrap();
        let e = NodeSigner::load_or_create(&path, "n1").err().unwrap().to_string();
        assert!(e.contains("k.pem") && e.contains("PKCS#8"), "{e}");
    }
}
