//! slice2rs: the Slice compiler (see the crate README).
