//! Shared by tests that read the server's own log lines: a `tracing` subscriber writing
//! plain text into memory, for the current thread.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use tracing_subscriber::fmt::MakeWriter;

#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// Lines logged at INFO or above.
    pub fn info_and_above(&self) -> Vec<String> {
        self.text()
            .lines()
            .filter(|l| {
                [" INFO ", " WARN ", " ERROR "]
                    .iter()
                    .any(|lv| l.contains(lv))
            })
            .map(str::to_string)
            .collect()
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Captures every level of `targets` (an `EnvFilter` directive list) on this thread until
/// the guard is dropped; use a current-thread runtime so spawned tasks log here too.
pub fn capture(targets: &str) -> (Captured, tracing::subscriber::DefaultGuard) {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(targets))
        .with_writer(captured.clone())
        .with_ansi(false)
        .finish();
    let guard = tracing::subscriber::set_default(subscriber);
    (captured, guard)
}
