//! The two-call integration. Run against `keystead serve --dev`:
//! `KEYSTEAD_KEY=ks_... cargo run -p keystead-client --example two_calls`
use keystead_client::{Client, Document, Error, Metadata, ServiceKey};

/// Encrypts a document and decrypts it again: the whole integration.
pub async fn run(url: &str, key: &str) -> Result<Document, Error> {
    let client = Client::new(url, ServiceKey::new(key))?;
    let md = Metadata::new("user-17");
    let doc = Document::new("acme", "customer/17")?.field("email", b"ada@example.com")?;
    let stored = client.encrypt(&md, &doc).await?.to_bytes()?; // call 1: encrypt
    client.decrypt(&md, &stored).await // call 2: decrypt
}

#[allow(dead_code)]
#[tokio::main]
async fn main() -> Result<(), Error> {
    let key =
        std::env::var("KEYSTEAD_KEY").map_err(|_| Error::Config("set KEYSTEAD_KEY".into()))?;
    let doc = run("http://127.0.0.1:7777", &key).await?;
    println!(
        "email = {}",
        String::from_utf8_lossy(doc.get("email").unwrap_or_default())
    );
    Ok(())
}
