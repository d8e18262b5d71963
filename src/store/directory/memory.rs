//! A directory backend in memory, for tests: clones share one store, as handles of two
//! processes share one database.

use std::sync::{Arc, Mutex};

use super::{BackendError, Commit, DirectoryBackend, DirectoryChanges, DirectoryData, Versioned};

#[derive(Debug, Clone)]
pub struct MemoryBackend {
    stored: Arc<Mutex<Versioned>>,
}

impl Default for MemoryBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryBackend {
    /// An empty store at version 0.
    pub fn new() -> Self {
        MemoryBackend {
            stored: Arc::new(Mutex::new(Versioned {
                version: 0,
                data: DirectoryData::empty(),
            })),
        }
    }

    fn stored(&self) -> std::sync::MutexGuard<'_, Versioned> {
        // A panic while holding the lock cannot leave a half-applied change: commits build
        // the new data first and swap it in at once.
        self.stored.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl DirectoryBackend for MemoryBackend {
    fn location(&self) -> String {
        "memory".to_string()
    }

    fn load(&self) -> Result<Versioned, BackendError> {
        Ok(self.stored().clone())
    }

    fn version(&self) -> Result<i64, BackendError> {
        Ok(self.stored().version)
    }

    fn commit(&self, base: i64, changes: &DirectoryChanges) -> Result<Commit, BackendError> {
        let mut stored = self.stored();
        if stored.version != base {
            return Ok(Commit::Stale);
        }
        let mut data = stored.data.clone();
        changes.apply_to(&mut data);
        stored.data = data;
        stored.version += 1;
        Ok(Commit::Done(stored.version))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_backend_keeps_the_contract() {
        let store = MemoryBackend::new();
        super::super::contract::check_backend(&|| Box::new(store.clone()));
    }
}
