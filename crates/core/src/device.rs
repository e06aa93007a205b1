//! A device's keys (DESIGN.md, "Users and devices"): what the wasm SDK's JS class `Identity`
//! holds and what a `KSP` export ([`crate::key_export`]) seals.

use crate::ids::RecipientId;
use crate::keys::{EncryptionKeyPair, SigningKeyPair};
use rand_core::CryptoRng;

/// One device (DESIGN.md, "Users and devices"): a recipient id, an X25519 key pair that grants
/// are sealed to, and an Ed25519 key pair that signs attachments and grants it authors.
/// Both private keys zeroize on drop; there is no `Clone` and no `Debug` of secrets.
pub struct DeviceKeys {
    id: RecipientId,
    encryption: EncryptionKeyPair,
    signing: SigningKeyPair,
}

impl DeviceKeys {
    /// Fresh key pairs for the device `id`.
    pub fn generate(rng: &mut impl CryptoRng, id: RecipientId) -> Self {
        let encryption = EncryptionKeyPair::generate(rng);
        let signing = SigningKeyPair::generate(rng);
        Self {
            id,
            encryption,
            signing,
        }
    }

    /// Assembles keys (from an import, or from test vectors).
    pub fn from_parts(
        id: RecipientId,
        encryption: EncryptionKeyPair,
        signing: SigningKeyPair,
    ) -> Self {
        Self {
            id,
            encryption,
            signing,
        }
    }

    /// The recipient id grants to this device name.
    pub fn id(&self) -> &RecipientId {
        &self.id
    }

    /// The X25519 key pair that opens grants.
    pub fn encryption(&self) -> &EncryptionKeyPair {
        &self.encryption
    }

    /// The Ed25519 key pair that signs as author and granter.
    pub fn signing(&self) -> &SigningKeyPair {
        &self.signing
    }
}

impl core::fmt::Debug for DeviceKeys {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DeviceKeys")
            .field("id", &self.id)
            .field("encryption", self.encryption.public())
            .field("signing", &self.signing.public())
            .finish_non_exhaustive()
    }
}
