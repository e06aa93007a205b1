//! `grantAccess` and `revokeAccess`: changing who can open an existing attachment by
//! rewriting its access block only (the file never changes).

use js_sys::Array;
use keystead_core::attachment::{AttachmentHeader, HEADER_PREFIX_LEN};
use keystead_core::grant::{AccessBlock, Grant};
use keystead_core::stream::AttachmentParams;
use wasm_bindgen::prelude::*;

use crate::engine::grant_all;
use crate::error::{Error, Result};
use crate::identity::Identity;
use crate::js;
use crate::rng::rng;

/// The attachment header at the front of `prefix` (the file's first bytes, at least the
/// header).
fn header_of(prefix: &[u8]) -> Result<AttachmentHeader> {
    let p = prefix
        .get(..HEADER_PREFIX_LEN)
        .ok_or(keystead_core::Error::Truncated)?;
    let len = AttachmentHeader::encoded_len(p)?;
    let h = prefix.get(..len).ok_or(keystead_core::Error::Truncated)?;
    Ok(AttachmentHeader::parse(h)?)
}

fn grant_access_inner(
    header: &JsValue,
    granter: &Identity,
    recipients: &JsValue,
    options: &JsValue,
) -> Result<Vec<u8>> {
    let header = header_of(&js::byte_vec(header, "header")?)?;
    let policy = js::access_policy(options)?;
    let recipients = js::recipients(recipients)?;
    let keys = granter.keys();
    let dek = policy.open_dek(&header, &keys)?;
    // The DEK matches the header's key commitment; the header must also be the expected
    // author's, or a forged file could be passed on under the granter's name.
    header.verify(&dek, policy.author())?;
    let mut block = policy.block().clone();
    for r in &recipients {
        let g = Grant::create(&mut rng(), &header, &dek, &r.id, &r.key, 0, keys.signing())?;
        block.add(g)?;
    }
    Ok(block.to_bytes()?)
}

/// Grants more devices access to an existing attachment: opens the DEK with `granter`'s own
/// grant (or through `options.group`), checks the header against `options.author`, and
/// returns `options.accessBlock` with one grant per recipient added, signed by `granter`.
/// Recipients must list the granter's `signingPublicKey` in `trustedGranters`.
#[wasm_bindgen(js_name = grantAccess, unchecked_return_type = "Uint8Array")]
pub fn grant_access(
    #[wasm_bindgen(unchecked_param_type = "Uint8Array")] header: JsValue,
    granter: &Identity,
    #[wasm_bindgen(unchecked_param_type = "Recipient[]")] recipients: JsValue,
    #[wasm_bindgen(unchecked_param_type = "DecryptOptions")] options: JsValue,
) -> std::result::Result<JsValue, JsValue> {
    Ok(js::to_js(&grant_access_inner(
        &header,
        granter,
        &recipients,
        &options,
    )?)
    .into())
}

/// Removes from `accessBlock` every grant to the given recipients (`Recipient`s, matched by
/// public key) and, with `options.group`, every grant to that group. Withdrawing the grant
/// relies on the server no longer serving the old block; the holder of the DEK keeps it.
#[wasm_bindgen(js_name = revokeAccess, unchecked_return_type = "Uint8Array")]
pub fn revoke_access(
    #[wasm_bindgen(unchecked_param_type = "Uint8Array")] access_block: JsValue,
    #[wasm_bindgen(unchecked_param_type = "Recipient[]")] recipients: JsValue,
    #[wasm_bindgen(unchecked_param_type = "RevokeOptions | undefined")] options: JsValue,
) -> std::result::Result<JsValue, JsValue> {
    let run = || -> Result<Vec<u8>> {
        let mut block = AccessBlock::parse(&js::byte_vec(&access_block, "accessBlock")?)?;
        let list = if Array::is_array(&recipients) {
            js::recipients(&recipients)?
        } else {
            return Err(Error::invalid_argument("recipients must be an array"));
        };
        for r in &list {
            block.revoke(&r.key.fingerprint());
        }
        if let Some(g) = crate::groups::group_option(&options)? {
            let gid = g.borrow().state().group_id().as_str().to_owned();
            let fps: Vec<_> = block
                .grants()
                .iter()
                .filter(|g| g.recipient_id().as_str() == gid)
                .map(|g| *g.recipient_fingerprint())
                .collect();
            for fp in &fps {
                block.revoke(fp);
            }
        }
        Ok(block.to_bytes()?)
    };
    Ok(js::to_js(&run()?).into())
}

fn reencrypt_inner(
    file: &JsValue,
    identity: &Identity,
    recipients: &JsValue,
    signer: &Identity,
    options: &JsValue,
) -> Result<JsValue> {
    let file = zeroize::Zeroizing::new(js::byte_vec(file, "file")?);
    let header = header_of(&file)?;
    let policy = js::access_policy(options)?;
    let recipients = js::recipients(recipients)?;
    let old_dek = policy.open_dek(&header, &identity.keys())?;
    let group = crate::groups::group_arg(&js::get(options, "to"))?;
    let group = group.as_ref().map(|g| g.borrow());
    let state = group.as_ref().map(|g| g.state());
    if recipients.is_empty() && state.is_none() {
        return Err(Error::invalid_argument(
            "an attachment needs at least one recipient",
        ));
    }
    let params = AttachmentParams {
        document: header.document_id().clone(),
        group: state.map(keystead_core::groups::binding),
    };
    let keys = signer.keys();
    let mut rng = rng();
    let (dek, out) = keystead_core::groups::reencrypt(
        &mut rng,
        &file,
        &old_dek,
        policy.author(),
        keys.signing(),
        params,
    )?;
    let new_header = header_of(&out)?;
    let block = grant_all(&mut rng, &new_header, &dek, &recipients, &keys, state)?;
    Ok(js::object(&[
        ("file", &js::to_js(&out).into()),
        ("accessBlock", &js::to_js(&block.to_bytes()?).into()),
    ]))
}

/// Re-encrypts a whole attachment under a fresh DEK (the cryptographic revoke): `identity`
/// opens it with `options` (as for `decryptBlob`: full check, trailer included), `signer`
/// becomes the author of the new file, granted to `recipients` and, with `options.to`, to
/// that group's current epoch. Returns `{ file, accessBlock }`. In memory: for attachments
/// that fit it.
#[wasm_bindgen(unchecked_return_type = "Reencrypted")]
pub fn reencrypt(
    #[wasm_bindgen(unchecked_param_type = "Uint8Array")] file: JsValue,
    identity: &Identity,
    #[wasm_bindgen(unchecked_param_type = "Recipient[]")] recipients: JsValue,
    signer: &Identity,
    #[wasm_bindgen(unchecked_param_type = "ReencryptOptions")] options: JsValue,
) -> std::result::Result<JsValue, JsValue> {
    Ok(reencrypt_inner(
        &file,
        identity,
        &recipients,
        signer,
        &options,
    )?)
}
