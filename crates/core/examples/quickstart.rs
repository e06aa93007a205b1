//! The CMK flow in one process, until the Encryption Service lands: a "KMS" wraps a leased
//! key once, the leased key wraps a fresh DEK per record, fields are encrypted under the
//! DEK, and everything is decrypted again from the stored bytes alone.
//!
//! Run: `cargo run -p keystead-core --example quickstart`

use getrandom::SysRng;
use keystead_core::edek::Edek;
use keystead_core::envelope::{EdekPlacement, EncryptedDocument};
use keystead_core::*;
use rand_core::UnwrapErr;

fn main() -> Result<(), Error> {
    let mut rng = UnwrapErr(SysRng);
    let tenant = TenantId::new("acme")?;

    // Once per lease period: a new leased key (its KMS-wrapped form would come from the
    // tenant's KMS; a placeholder blob stands in for it here).
    let leased = LeasedKey::generate(&mut rng);
    let kms_wrapped_leased_key = b"<ciphertext from the tenant's KMS>";

    // Per record: a fresh DEK, wrapped locally into a self-contained EDEK.
    let dek = Dek::generate(&mut rng);
    let edek = Edek::wrap_leased(
        &mut rng,
        tenant.clone(),
        ConfigId::new("kms-1")?,
        KeyVersion(1),
        &leased,
        kms_wrapped_leased_key,
        &dek,
    )?;
    let fields: Vec<(FieldPath, &[u8])> = vec![
        (FieldPath::new("name")?, b"Ada Lovelace"),
        (FieldPath::new("email")?, b"ada@example.com"),
    ];
    let doc = EncryptedDocument::encrypt(
        &mut rng,
        &dek,
        tenant,
        DocumentId::new("customer/17")?,
        EdekPlacement::Attached(edek),
        fields,
    )?;
    let stored = doc.to_bytes()?;
    println!("stored document: {} bytes (EDEK attached)", stored.len());

    // Later, any ES instance holding the leased key (or after one KMS call to unwrap the
    // leased key the EDEK carries): parse, unwrap, decrypt.
    let doc = EncryptedDocument::parse(&stored)?;
    let edek = doc.edek().ok_or(Error::Usage)?;
    let dek = edek.unwrap_leased(&leased)?;
    for (path, value) in doc.decrypt(&dek)? {
        println!("{path} = {}", String::from_utf8_lossy(&value));
    }
    Ok(())
}
