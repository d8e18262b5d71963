use std::collections::HashMap;

use super::{Decode, DecodeError, Encode, InputStream, OutputStream};

/// `Ice::Identity`. On the wire the name comes first, although the string form is
/// `category/name`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identity {
    pub name: String,
    pub category: String,
}

impl Identity {
    pub fn new(category: impl Into<String>, name: impl Into<String>) -> Self {
        Identity {
            name: name.into(),
            category: category.into(),
        }
    }
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.category.is_empty() {
            write!(f, "{}", self.name)
        } else {
            write!(f, "{}/{}", self.category, self.name)
        }
    }
}

impl Decode for Identity {
    const MIN_WIRE_SIZE: usize = 2;
    fn decode(r: &mut InputStream<'_>) -> Result<Self, DecodeError> {
        let name = r.read_string()?;
        let category = r.read_string()?;
        Ok(Identity { name, category })
    }
}

impl Encode for Identity {
    fn encode(&self, w: &mut OutputStream) {
        w.write_string(&self.name);
        w.write_string(&self.category);
    }
}

/// `Ice::Context`: the request context, a string-to-string dictionary.
pub type Context = HashMap<String, String>;
