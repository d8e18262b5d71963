use thiserror::Error;

/// Why a byte sequence could not be decoded. Each variant maps to the Ice local exception a
/// ZeroC runtime would raise, so the text can go back to the caller in an
/// UnknownLocalException reply.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    #[error("UnmarshalOutOfBoundsException: needed {needed} bytes at offset {offset}, {remaining} remain")]
    OutOfBounds {
        offset: usize,
        needed: usize,
        remaining: usize,
    },
    #[error("MarshalException: negative size {0}")]
    NegativeSize(i32),
    #[error("MarshalException: count {count} exceeds what {remaining} remaining bytes can hold")]
    CountTooLarge { count: usize, remaining: usize },
    #[error("MarshalException: invalid UTF-8 in a string")]
    InvalidUtf8,
    #[error("UnsupportedEncodingException: encoding {major}.{minor}")]
    UnsupportedEncoding { major: u8, minor: u8 },
    #[error("EncapsulationException: {0}")]
    Encapsulation(String),
    #[error("MarshalException: {0}")]
    Marshal(String),
    #[error("MarshalException: nesting deeper than {0}")]
    TooDeep(usize),
    /// More class instances in one encapsulation than [`DecodeLimits::max_instances`](super::DecodeLimits::max_instances).
    #[error("MarshalException: class graph holds more than {0} instances")]
    TooManyInstances(usize),
    #[error("MarshalException: instance or exception with more than {0} slices")]
    TooManySlices(usize),
    #[error("MarshalException: type id of {len} bytes (at most {max} accepted)")]
    TypeIdTooLong { len: usize, max: usize },
    #[error("MemoryLimitException: decoding would allocate more than {0} bytes")]
    AllocationBudget(usize),
    #[error("NoValueFactoryException: no factory for type {0}")]
    NoValueFactory(String),
    #[error("UnknownUserException: {0}")]
    UnknownUserException(String),
    #[error("MarshalException: enumerator {0} out of range")]
    InvalidEnumerator(i32),
    /// A class graph with a cycle, on a stream told to refuse them (see
    /// [`InputStream::refuse_cycles`](super::InputStream::refuse_cycles)).
    #[error("MarshalException: cyclic class graphs are not accepted by this server")]
    CyclicGraph,
}
