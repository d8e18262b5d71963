//! A session's input and output maps: values with their sizes (for the caps), and how values
//! become bytes for the store.

use std::collections::HashMap;

use super::error::SessionError;
use super::store::Env;
use super::types::SessionConfig;

/// A value of a session's environment maps: the session layer keeps it as it is and hands the
/// store its bytes (the services layer encodes Ice values in an encapsulation).
pub trait EnvValue: Clone + Send + Sync + 'static {
    fn encode(&self) -> Vec<u8>;
    /// The value back from [`EnvValue::encode`]'s bytes; a message when they are not one.
    fn decode(bytes: &[u8]) -> Result<Self, String>;
}

impl EnvValue for String {
    fn encode(&self) -> Vec<u8> {
        self.as_bytes().to_vec()
    }

    fn decode(bytes: &[u8]) -> Result<Self, String> {
        String::from_utf8(bytes.to_vec()).map_err(|e| e.to_string())
    }
}

impl EnvValue for () {
    fn encode(&self) -> Vec<u8> {
        Vec::new()
    }

    fn decode(_: &[u8]) -> Result<Self, String> {
        Ok(())
    }
}

/// One environment map with the size of each value, so its total stays known.
pub(crate) struct EnvMap<V> {
    pub(crate) values: HashMap<String, (V, usize)>,
    /// Sum of key lengths and value sizes.
    pub(crate) bytes: usize,
}

impl<V> EnvMap<V> {
    pub(crate) fn new() -> Self {
        EnvMap {
            values: HashMap::new(),
            bytes: 0,
        }
    }

    pub(crate) fn remove(&mut self, key: &str) {
        if let Some((_, size)) = self.values.remove(key) {
            self.bytes = self.bytes.saturating_sub(key.len().saturating_add(size));
        }
    }

    /// The map's byte total after setting `key`, or the error when a cap would be exceeded.
    pub(crate) fn check(
        &self,
        key: &str,
        size: usize,
        config: &SessionConfig,
        env: Env,
    ) -> Result<usize, SessionError> {
        let old = self
            .values
            .get(key)
            .map(|(_, s)| key.len().saturating_add(*s));
        let keys = self.values.len() + usize::from(old.is_none());
        let bytes = (self.bytes - old.unwrap_or(0)).saturating_add(key.len().saturating_add(size));
        if keys > config.max_env_keys {
            return Err(SessionError::ApiUsage(format!(
                "The {} map of this session may hold at most {} keys",
                env.name(),
                config.max_env_keys
            )));
        }
        if bytes > config.max_env_bytes {
            return Err(SessionError::ApiUsage(format!(
                "The {} map of this session may hold at most {} bytes",
                env.name(),
                config.max_env_bytes
            )));
        }
        Ok(bytes)
    }

    /// Sets `key`, unless the map would then exceed `config`'s caps.
    pub(crate) fn insert(
        &mut self,
        key: &str,
        value: V,
        size: usize,
        config: &SessionConfig,
        env: Env,
    ) -> Result<(), SessionError> {
        self.bytes = self.check(key, size, config, env)?;
        self.values.insert(key.to_string(), (value, size));
        Ok(())
    }
}
