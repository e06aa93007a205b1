//! A test sink that collects delivered events as lines and can be switched off.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use keystead_server::audit::SinkSource;
use keystead_server::audit::deliver::SinkList;
use keystead_server::audit::sink::{Sink, SinkError};
use keystead_server::kms::BoxFuture;

/// Collects delivered events as lines; can be switched off to simulate a SIEM outage.
#[derive(Default)]
pub struct Collector {
    /// Delivered events, one JSON per line.
    pub lines: Mutex<Vec<String>>,
    /// Refuse deliveries (a SIEM outage).
    pub down: AtomicBool,
    /// Sizes of the batches accepted.
    pub batches: Mutex<Vec<usize>>,
    /// What [`Sink::batch_scale`] answers (0: the default).
    pub scale: AtomicUsize,
}

impl Sink for Collector {
    fn kind(&self) -> &'static str {
        "test"
    }
    fn batch_scale(&self) -> usize {
        match self.scale.load(Ordering::SeqCst) {
            0 => 1,
            n => n,
        }
    }
    fn deliver<'a>(&'a self, events: &'a [Arc<[u8]>]) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            if self.down.load(Ordering::SeqCst) {
                return Err(SinkError::new("down (test)"));
            }
            self.batches.lock().unwrap().push(events.len());
            let mut l = self.lines.lock().unwrap();
            for e in events {
                l.push(String::from_utf8(e.to_vec()).unwrap());
            }
            Ok(())
        })
    }
}

/// A source giving every tenant the one collector.
pub struct One(pub Arc<Collector>);

impl SinkSource for One {
    fn sinks_for(&self, _tenant: &str) -> Result<SinkList, SinkError> {
        Ok(vec![("siem".into(), self.0.clone() as Arc<dyn Sink>)])
    }
}
