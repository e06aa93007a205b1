//! JSON-lines sinks: a file under the operator's audit file directory, and stdout in
//! `--dev`. Each line is one event's JSON exactly as spooled.

use std::fmt;
use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use super::{Sink, SinkContext, SinkError, check_lines};
use crate::kms::BoxFuture;

/// The batch as JSON lines.
fn lines(events: &[Arc<[u8]>]) -> Result<Vec<u8>, SinkError> {
    check_lines(events)?;
    let mut out = Vec::with_capacity(events.iter().map(|e| e.len() + 1).sum());
    for e in events {
        out.extend_from_slice(e);
        out.push(b'\n');
    }
    Ok(out)
}

/// Checks a tenant-given relative path: not empty, not absolute, only plain components
/// (no `..`, no root or prefix).
fn relative_path(path: &str) -> Result<PathBuf, SinkError> {
    let p = Path::new(path);
    let mut normal = 0;
    for c in p.components() {
        match c {
            Component::Normal(_) => normal += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                return Err(SinkError::new("file sink path must not contain '..'"));
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(SinkError::new(
                    "file sink path must be relative to the audit file directory",
                ));
            }
        }
    }
    if normal == 0 || path.ends_with('/') {
        return Err(SinkError::new("file sink path must name a file"));
    }
    Ok(p.to_path_buf())
}

/// Appends JSON lines to a file (created with mode 0600, parent directories as needed),
/// flushed and `fdatasync`ed per batch. The file is opened per batch, so an external log
/// rotation (rename, then a new file) needs no signal.
///
/// The path is checked lexically; symbolic links inside the directory are followed (the
/// directory is the operator's, not the tenant's).
pub(super) struct FileSink {
    path: PathBuf,
}

impl FileSink {
    pub(super) fn new(path: &str, ctx: &SinkContext) -> Result<Self, SinkError> {
        Ok(Self {
            path: ctx.file_dir.join(relative_path(path)?),
        })
    }
}

impl fmt::Debug for FileSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileSink")
            .field("path", &self.path)
            .finish()
    }
}

fn append(path: &Path, data: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(data)?;
    f.flush()?;
    f.sync_data()
}

impl Sink for FileSink {
    fn kind(&self) -> &'static str {
        "file"
    }

    fn batch_scale(&self) -> usize {
        8
    }

    fn deliver<'a>(&'a self, events: &'a [Arc<[u8]>]) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            let data = lines(events)?;
            let path = self.path.clone();
            tokio::task::spawn_blocking(move || append(&path, &data))
                .await
                .map_err(|e| SinkError::new(format!("file sink: {e}")))?
                .map_err(|e| SinkError::new(format!("file sink {}: {e}", self.path.display())))
        })
    }
}

/// JSON lines on standard output (`--dev` only; [`super::build`] refuses it otherwise).
#[derive(Debug)]
pub(super) struct StdoutSink;

impl Sink for StdoutSink {
    fn kind(&self) -> &'static str {
        "stdout"
    }

    fn deliver<'a>(&'a self, events: &'a [Arc<[u8]>]) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            let data = lines(events)?;
            tokio::task::spawn_blocking(move || {
                let mut out = std::io::stdout().lock();
                out.write_all(&data)?;
                out.flush()
            })
            .await
            .map_err(|e| SinkError::new(format!("stdout sink: {e}")))?
            .map_err(|e| SinkError::new(format!("stdout sink: {e}")))
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn paths_stay_inside_the_directory() {
        assert!(relative_path("a.jsonl").is_ok());
        assert!(relative_path("acme/audit.jsonl").is_ok());
        assert!(relative_path("./acme/audit.jsonl").is_ok());
        for bad in [
            "",
            ".",
            "./",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a/..",
            "acme/",
        ] {
            assert!(relative_path(bad).is_err(), "{bad}");
        }
    }
}
