//! The syntax tree one file parses into. Names are kept as written; `resolve` binds them.

/// A byte offset into the preprocessed text of the file the node came from.
pub type At = usize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Builtin {
    Bool,
    Byte,
    Short,
    Int,
    Long,
    Float,
    Double,
    String,
    /// `Object` by value (a class instance of any type), or `Value`.
    Object,
    /// `Object*`: a proxy to anything.
    ObjectProxy,
    LocalObject,
}

#[derive(Clone, Debug, PartialEq)]
pub enum TypeRef {
    Builtin(Builtin),
    /// A scoped name as written (`Ice::Identity`, `::omero::RString`); `proxy` for `Name*`.
    Named {
        name: String,
        proxy: bool,
        at: At,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub enum ConstValue {
    Int(i128),
    Float(f64),
    Bool(bool),
    String(String),
    /// An enumerator or another constant.
    Name(String),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Member {
    pub name: String,
    pub ty: TypeRef,
    pub tag: Option<i64>,
    /// `optional(NAME)`: an integer constant the resolver turns into `tag`.
    pub tag_const: Option<String>,
    pub default: Option<ConstValue>,
    pub meta: Vec<String>,
    pub at: At,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    pub name: String,
    pub ty: TypeRef,
    pub out: bool,
    pub tag: Option<i64>,
    pub tag_const: Option<String>,
    pub meta: Vec<String>,
    pub at: At,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Operation {
    pub name: String,
    /// None for `void`.
    pub ret: Option<TypeRef>,
    pub ret_tag: Option<i64>,
    pub ret_tag_const: Option<String>,
    pub params: Vec<Param>,
    pub throws: Vec<(String, At)>,
    pub idempotent: bool,
    pub meta: Vec<String>,
    pub at: At,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Enumerator {
    pub name: String,
    pub value: Option<ConstValue>,
    pub at: At,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    Module(Vec<Definition>),
    Class {
        compact_id: Option<i128>,
        base: Option<(String, At)>,
        implements: Vec<(String, At)>,
        members: Vec<Member>,
        ops: Vec<Operation>,
    },
    ClassForward,
    Interface {
        bases: Vec<(String, At)>,
        ops: Vec<Operation>,
    },
    InterfaceForward,
    Exception {
        base: Option<(String, At)>,
        members: Vec<Member>,
    },
    Struct(Vec<Member>),
    Sequence(TypeRef),
    Dictionary(TypeRef, TypeRef),
    Enum(Vec<Enumerator>),
    Const(TypeRef, ConstValue),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Definition {
    pub name: String,
    pub kind: Kind,
    pub local: bool,
    pub meta: Vec<String>,
    pub at: At,
}

/// One parsed file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct File {
    pub global_meta: Vec<String>,
    pub definitions: Vec<Definition>,
}

impl Kind {
    /// What the definition is, for messages.
    pub fn describe(&self) -> &'static str {
        match self {
            Kind::Module(_) => "module",
            Kind::Class { .. } | Kind::ClassForward => "class",
            Kind::Interface { .. } | Kind::InterfaceForward => "interface",
            Kind::Exception { .. } => "exception",
            Kind::Struct(_) => "struct",
            Kind::Sequence(_) => "sequence",
            Kind::Dictionary(..) => "dictionary",
            Kind::Enum(_) => "enum",
            Kind::Const(..) => "constant",
        }
    }
}
