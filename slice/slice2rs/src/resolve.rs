//! Name resolution and validation. Every name in the trees is rewritten to its absolute
//! form (`::Ice::Identity`) so the generator needs no scope rules, and the symbol table
//! lets it ask what a name is.
//!
//! Slice scoping: an absolute name (`::A::B`) is looked up as is; a relative one in the
//! current module, then in each enclosing module out to the global scope. Modules may be
//! reopened, also across files. Enumerators live in the scope that encloses their enum.

use std::collections::{HashMap, HashSet};

use crate::ast::*;
use crate::diag::{Code, Diagnostic, Pos};

/// Absolute name -> what inheritance checks need.
type Bases = HashMap<String, Inherits>;
use crate::load::SourceFile;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SymKind {
    Module,
    Class,
    ClassForward,
    Interface,
    InterfaceForward,
    Exception,
    Struct,
    Sequence,
    Dictionary,
    Enum,
    Const,
    Enumerator,
}

#[derive(Clone, Debug)]
pub struct Symbol {
    pub kind: SymKind,
    pub local: bool,
    pub file: usize,
    pub at: At,
    /// For an enumerator, its enum's absolute name.
    pub parent: String,
}

impl Symbol {
    fn is_type(&self) -> bool {
        !matches!(
            self.kind,
            SymKind::Module | SymKind::Const | SymKind::Enumerator | SymKind::Exception
        )
    }

    fn is_class(&self) -> bool {
        matches!(self.kind, SymKind::Class | SymKind::ClassForward)
    }

    fn is_interface(&self) -> bool {
        matches!(self.kind, SymKind::Interface | SymKind::InterfaceForward)
    }
}

pub type Symbols = HashMap<String, Symbol>;

/// Builds the symbol table and binds every name of every file in place.
pub fn resolve(files: &mut [SourceFile], diags: &mut Vec<Diagnostic>) -> Symbols {
    let mut symbols = Symbols::new();
    let mut consts = HashMap::new();
    for (idx, file) in files.iter().enumerate() {
        let mut d = Declarer {
            symbols: &mut symbols,
            consts: &mut consts,
            file: idx,
            source: file,
            diags,
        };
        d.declare_all("", &file.ast.definitions);
    }
    for file in files.iter_mut() {
        let mut defs = std::mem::take(&mut file.ast.definitions);
        let mut b = Binder {
            symbols: &symbols,
            consts: &consts,
            source: &*file,
            diags,
        };
        b.bind_all("", &mut defs);
        file.ast.definitions = defs;
    }
    check_inheritance(files, diags);
    check_struct_keys(files, diags);
    symbols
}

/// What inheritance checks need of a class, interface or exception.
struct Inherits {
    bases: Vec<String>,
    file: usize,
    at: At,
    /// Member and operation names (lowercase: Slice names clash case-insensitively).
    names: Vec<(String, At)>,
}

fn collect_bases(scope: &str, defs: &[Definition], file: usize, out: &mut Bases) {
    for def in defs {
        let name = format!("{scope}::{}", def.name);
        let member_names = |ms: &[Member]| -> Vec<(String, At)> {
            ms.iter().map(|m| (m.name.to_lowercase(), m.at)).collect()
        };
        let op_names = |os: &[Operation]| -> Vec<(String, At)> {
            os.iter().map(|o| (o.name.to_lowercase(), o.at)).collect()
        };
        let (bases, names): (Vec<String>, Vec<(String, At)>) = match &def.kind {
            Kind::Module(inner) => {
                collect_bases(&name, inner, file, out);
                continue;
            }
            Kind::Class {
                base,
                implements,
                members,
                ops,
                ..
            } => {
                let mut names = member_names(members);
                names.extend(op_names(ops));
                let bases = base.iter().chain(implements).map(|b| b.0.clone()).collect();
                (bases, names)
            }
            Kind::Interface { bases, ops } => {
                (bases.iter().map(|b| b.0.clone()).collect(), op_names(ops))
            }
            Kind::Exception { base, members } => (
                base.iter().map(|b| b.0.clone()).collect(),
                member_names(members),
            ),
            _ => continue,
        };
        let entry = Inherits {
            bases,
            file,
            at: def.at,
            names,
        };
        out.insert(name, entry);
    }
}

/// Every (indirect) base of `name`, or None when `name` is among them.
fn ancestors<'a>(name: &str, bases: &'a Bases) -> Option<Vec<&'a String>> {
    let mut stack: Vec<&String> = bases.get(name)?.bases.iter().collect();
    let mut seen = Vec::new();
    while let Some(b) = stack.pop() {
        if b == name {
            return None;
        }
        if !seen.contains(&b) {
            seen.push(b);
            if let Some(more) = bases.get(b) {
                stack.extend(&more.bases);
            }
        }
    }
    Some(seen)
}

/// Reports every type that is its own (indirect) base (the generator relies on there
/// being none), and members or operations that redefine one of a base.
fn check_inheritance(files: &[SourceFile], diags: &mut Vec<Diagnostic>) {
    let mut bases = Bases::new();
    for (idx, f) in files.iter().enumerate() {
        collect_bases("", &f.ast.definitions, idx, &mut bases);
    }
    let mut names: Vec<&String> = bases.keys().collect();
    names.sort();
    for name in names {
        let entry = &bases[name];
        let source = &files[entry.file];
        let Some(ancestors) = ancestors(name, &bases) else {
            diags.push(Diagnostic::new(
                source.pos(entry.at),
                Code::E008,
                format!("`{name}` inherits from itself"),
            ));
            continue;
        };
        for (own, at) in &entry.names {
            let clash = ancestors.iter().find(|a| {
                bases
                    .get(**a)
                    .is_some_and(|b| b.names.iter().any(|n| n.0 == *own))
            });
            if let Some(base) = clash {
                diags.push(Diagnostic::new(
                    source.pos(*at),
                    Code::E009,
                    format!("`{own}` is already defined in base `{base}`"),
                ));
            }
        }
    }
}

/// Structs and sequences by absolute name, for the key check.
type Aggregates<'a> = HashMap<String, &'a Kind>;

fn collect_aggregates<'a>(
    scope: &str,
    defs: &'a [Definition],
    file: usize,
    out: &mut Aggregates<'a>,
    dicts: &mut Vec<(&'a TypeRef, usize, At)>,
) {
    for def in defs {
        let name = format!("{scope}::{}", def.name);
        match &def.kind {
            Kind::Module(inner) => collect_aggregates(&name, inner, file, out, dicts),
            Kind::Struct(_) | Kind::Sequence(_) | Kind::Enum(_) => {
                out.insert(name, &def.kind);
            }
            Kind::Dictionary(k, _) => dicts.push((k, file, def.at)),
            _ => {}
        }
    }
}

/// Whether `t` may be (part of) a dictionary key: what can be compared and hashed.
fn legal_key(t: &TypeRef, types: &Aggregates<'_>, depth: usize) -> bool {
    match t {
        TypeRef::Builtin(b) => matches!(
            b,
            Builtin::Bool
                | Builtin::Byte
                | Builtin::Short
                | Builtin::Int
                | Builtin::Long
                | Builtin::String
        ),
        TypeRef::Named { proxy: true, .. } => false,
        TypeRef::Named { name, .. } => match types.get(name) {
            _ if depth > 32 => false,
            Some(Kind::Enum(_)) => true,
            Some(Kind::Struct(ms)) => ms.iter().all(|m| legal_key(&m.ty, types, depth + 1)),
            Some(Kind::Sequence(e)) => legal_key(e, types, depth + 1),
            _ => false,
        },
    }
}

/// Struct and sequence keys must hold only legal key types, all the way down.
fn check_struct_keys(files: &[SourceFile], diags: &mut Vec<Diagnostic>) {
    let mut types = Aggregates::new();
    let mut dicts = Vec::new();
    for (idx, f) in files.iter().enumerate() {
        collect_aggregates("", &f.ast.definitions, idx, &mut types, &mut dicts);
    }
    for (key, file, at) in dicts {
        let TypeRef::Named {
            name, proxy: false, ..
        } = key
        else {
            continue;
        };
        let aggregate = matches!(types.get(name), Some(Kind::Struct(_) | Kind::Sequence(_)));
        if aggregate && !legal_key(key, &types, 0) {
            diags.push(Diagnostic::new(
                files[file].pos(at),
                Code::E012,
                format!("dictionary key `{name}` contains a type that cannot be a key"),
            ));
        }
    }
}

struct Declarer<'a> {
    symbols: &'a mut Symbols,
    consts: &'a mut HashMap<String, ConstValue>,
    file: usize,
    source: &'a SourceFile,
    diags: &'a mut Vec<Diagnostic>,
}

impl Declarer<'_> {
    fn declare_all(&mut self, scope: &str, defs: &[Definition]) {
        for def in defs {
            let name = format!("{scope}::{}", def.name);
            let kind = match &def.kind {
                Kind::Module(inner) => {
                    self.declare(&name, SymKind::Module, def, "");
                    self.declare_all(&name, inner);
                    continue;
                }
                Kind::Class { .. } => SymKind::Class,
                Kind::ClassForward => SymKind::ClassForward,
                Kind::Interface { .. } => SymKind::Interface,
                Kind::InterfaceForward => SymKind::InterfaceForward,
                Kind::Exception { .. } => SymKind::Exception,
                Kind::Struct(_) => SymKind::Struct,
                Kind::Sequence(_) => SymKind::Sequence,
                Kind::Dictionary(..) => SymKind::Dictionary,
                Kind::Enum(items) => {
                    for e in items {
                        let sym = Symbol {
                            kind: SymKind::Enumerator,
                            local: def.local,
                            file: self.file,
                            at: e.at,
                            parent: name.clone(),
                        };
                        self.insert(format!("{scope}::{}", e.name), sym);
                        // Ice 3.7 also accepts the enum-qualified form.
                        let sym = Symbol {
                            kind: SymKind::Enumerator,
                            local: def.local,
                            file: self.file,
                            at: e.at,
                            parent: name.clone(),
                        };
                        self.symbols.insert(format!("{name}::{}", e.name), sym);
                    }
                    SymKind::Enum
                }
                Kind::Const(_, v) => {
                    self.consts.insert(name.clone(), v.clone());
                    SymKind::Const
                }
            };
            self.declare(&name, kind, def, "");
        }
    }

    fn declare(&mut self, name: &str, kind: SymKind, def: &Definition, parent: &str) {
        let sym = Symbol {
            kind,
            local: def.local,
            file: self.file,
            at: def.at,
            parent: parent.to_string(),
        };
        self.insert(name.to_string(), sym);
    }

    fn insert(&mut self, name: String, sym: Symbol) {
        use SymKind::*;
        let Some(old) = self.symbols.get(&name) else {
            self.symbols.insert(name, sym);
            return;
        };
        match (old.kind, sym.kind) {
            (Module, Module)
            | (ClassForward, ClassForward)
            | (InterfaceForward, InterfaceForward) => {}
            (ClassForward, Class) | (InterfaceForward, Interface) => {
                self.symbols.insert(name, sym);
            }
            (Class, ClassForward) | (Interface, InterfaceForward) => {}
            _ => self.diags.push(Diagnostic::new(
                self.source.pos(sym.at),
                Code::E006,
                format!("`{name}` is already defined"),
            )),
        }
    }
}

struct Binder<'a> {
    symbols: &'a Symbols,
    consts: &'a HashMap<String, ConstValue>,
    source: &'a SourceFile,
    diags: &'a mut Vec<Diagnostic>,
}

fn parent_scope(scope: &str) -> Option<&str> {
    if scope.is_empty() {
        return None;
    }
    Some(scope.rfind("::").map_or("", |i| &scope[..i]))
}

/// Looks a name up from `scope` outwards; returns its absolute form.
pub fn lookup<'s>(symbols: &'s Symbols, scope: &str, name: &str) -> Option<(String, &'s Symbol)> {
    if name.starts_with("::") {
        return symbols.get(name).map(|s| (name.to_string(), s));
    }
    let mut s = Some(scope);
    while let Some(cur) = s {
        let full = format!("{cur}::{name}");
        if let Some(sym) = symbols.get(&full) {
            return Some((full, sym));
        }
        s = parent_scope(cur);
    }
    None
}

impl Binder<'_> {
    fn error(&mut self, at: At, code: Code, msg: String) {
        self.diags
            .push(Diagnostic::new(self.source.pos(at), code, msg));
    }

    fn pos(&self, at: At) -> Pos {
        self.source.pos(at)
    }

    fn bind_all(&mut self, scope: &str, defs: &mut [Definition]) {
        for def in defs {
            let name = format!("{scope}::{}", def.name);
            let local = def.local;
            match &mut def.kind {
                Kind::Module(inner) => self.bind_all(&name, inner),
                Kind::Class {
                    compact_id,
                    base,
                    implements,
                    members,
                    ops,
                } => {
                    if let Some(id) = compact_id {
                        if !(0..=i32::MAX as i128).contains(id) {
                            self.error(
                                def.at,
                                Code::E016,
                                format!("compact id {id} is out of range"),
                            );
                        }
                    }
                    if let Some(b) = base {
                        self.bind_base(scope, b, &[SymKind::Class], "a class", &name);
                    }
                    for i in implements.iter_mut() {
                        self.bind_base(scope, i, &[SymKind::Interface], "an interface", &name);
                    }
                    self.bind_members(scope, members, local);
                    self.bind_ops(scope, ops, local);
                }
                Kind::Interface { bases, ops } => {
                    for b in bases.iter_mut() {
                        self.bind_base(scope, b, &[SymKind::Interface], "an interface", &name);
                    }
                    self.bind_ops(scope, ops, local);
                }
                Kind::Exception { base, members } => {
                    if let Some(b) = base {
                        self.bind_base(scope, b, &[SymKind::Exception], "an exception", &name);
                    }
                    self.bind_members(scope, members, local);
                }
                Kind::Struct(members) => {
                    if members.is_empty() {
                        self.error(
                            def.at,
                            Code::E009,
                            format!("struct `{name}` has no members"),
                        );
                    }
                    self.bind_members(scope, members, local);
                    for m in members.iter() {
                        if m.tag.is_some() {
                            self.error(
                                m.at,
                                Code::E010,
                                "struct members cannot be optional".into(),
                            );
                        }
                    }
                }
                Kind::Sequence(t) => self.bind_type(scope, t, local, def.at),
                Kind::Dictionary(k, v) => {
                    self.bind_type(scope, k, local, def.at);
                    self.bind_type(scope, v, local, def.at);
                    self.check_key(k, def.at);
                }
                Kind::Enum(items) => self.bind_enum(scope, items),
                Kind::Const(t, v) => {
                    self.bind_type(scope, t, local, def.at);
                    self.bind_value(scope, t, v, def.at);
                }
                Kind::ClassForward | Kind::InterfaceForward => {}
            }
        }
    }

    fn bind_base(
        &mut self,
        scope: &str,
        base: &mut (String, At),
        kinds: &[SymKind],
        what: &str,
        derived: &str,
    ) {
        let Some((full, sym)) = lookup(self.symbols, scope, &base.0) else {
            self.error(base.1, Code::E005, format!("`{}` is not defined", base.0));
            return;
        };
        let ok = kinds.iter().any(|k| match k {
            SymKind::Class => sym.is_class(),
            SymKind::Interface => sym.is_interface(),
            other => sym.kind == *other,
        });
        if !ok {
            self.error(base.1, Code::E008, format!("`{}` is not {what}", base.0));
        } else if matches!(sym.kind, SymKind::ClassForward | SymKind::InterfaceForward) {
            self.error(
                base.1,
                Code::E008,
                format!(
                    "`{}` is declared but not defined, so it cannot be a base",
                    base.0
                ),
            );
        } else if full == derived {
            self.error(
                base.1,
                Code::E008,
                format!("`{}` cannot extend itself", base.0),
            );
        }
        base.0 = full;
    }

    /// `owner_at` locates the member, parameter or definition that uses the type.
    fn bind_type(&mut self, scope: &str, t: &mut TypeRef, local: bool, owner_at: At) {
        let TypeRef::Named { name, proxy, at } = t else {
            if *t == TypeRef::Builtin(Builtin::LocalObject) && !local {
                let msg = "non-local definition uses `LocalObject`".to_string();
                self.error(owner_at, Code::E017, msg);
            }
            return;
        };
        let at = *at;
        let Some((full, sym)) = lookup(self.symbols, scope, name) else {
            self.error(at, Code::E005, format!("type `{name}` is not defined"));
            return;
        };
        if !sym.is_type() {
            let kind = format!("{:?}", sym.kind).to_lowercase();
            self.error(at, Code::E007, format!("`{name}` is a {kind}, not a type"));
        } else if *proxy && !(sym.is_interface() || sym.is_class()) {
            self.error(
                at,
                Code::E007,
                format!("`{name}*`: only interfaces and classes have proxies"),
            );
        } else if sym.local && !local {
            self.error(
                at,
                Code::E017,
                format!("non-local definition uses local type `{name}`"),
            );
        }
        *name = full;
    }

    fn bind_members(&mut self, scope: &str, members: &mut [Member], local: bool) {
        let mut names = HashSet::new();
        let mut tags = HashSet::new();
        for m in members.iter_mut() {
            self.bind_type(scope, &mut m.ty, local, m.at);
            if !names.insert(m.name.to_lowercase()) {
                self.error(
                    m.at,
                    Code::E009,
                    format!("member `{}` is declared twice", m.name),
                );
            }
            self.bind_tag(scope, &mut m.tag, &m.tag_const, m.at);
            if let Some(tag) = m.tag {
                self.check_tag(tag, m.at, &mut tags);
            }
            if let Some(v) = &mut m.default {
                let ty = m.ty.clone();
                self.bind_value(scope, &ty, v, m.at);
            }
        }
    }

    /// Turns `optional(NAME)` into the value of the integer constant NAME.
    fn bind_tag(&mut self, scope: &str, tag: &mut Option<i64>, name: &Option<String>, at: At) {
        let Some(name) = name else {
            return;
        };
        match self
            .const_int(scope, name)
            .and_then(|v| i64::try_from(v).ok())
        {
            Some(v) => *tag = Some(v),
            None => self.error(
                at,
                Code::E010,
                format!("tag `{name}` is not an integer constant"),
            ),
        }
    }

    fn check_tag(&mut self, tag: i64, at: At, tags: &mut HashSet<i64>) {
        if !(0..=i32::MAX as i64).contains(&tag) {
            self.error(at, Code::E010, format!("tag {tag} is out of range"));
        } else if !tags.insert(tag) {
            self.error(at, Code::E010, format!("tag {tag} is used twice"));
        }
    }

    fn bind_ops(&mut self, scope: &str, ops: &mut [Operation], local: bool) {
        let mut names = HashSet::new();
        for op in ops.iter_mut() {
            if !names.insert(op.name.to_lowercase()) {
                self.error(
                    op.at,
                    Code::E009,
                    format!("operation `{}` is declared twice", op.name),
                );
            }
            if let Some(r) = &mut op.ret {
                self.bind_type(scope, r, local, op.at);
            }
            let mut tags = HashSet::new();
            self.bind_tag(scope, &mut op.ret_tag, &op.ret_tag_const, op.at);
            if let Some(tag) = op.ret_tag {
                self.check_tag(tag, op.at, &mut tags);
            }
            let mut params = HashSet::new();
            let mut seen_out = false;
            for p in op.params.iter_mut() {
                self.bind_type(scope, &mut p.ty, local, p.at);
                if !params.insert(p.name.to_lowercase()) {
                    self.error(
                        p.at,
                        Code::E009,
                        format!("parameter `{}` is declared twice", p.name),
                    );
                }
                self.bind_tag(scope, &mut p.tag, &p.tag_const, p.at);
                if let Some(tag) = p.tag {
                    self.check_tag(tag, p.at, &mut tags);
                }
                if seen_out && !p.out {
                    self.error(
                        p.at,
                        Code::E014,
                        format!("in-parameter `{}` follows an out-parameter", p.name),
                    );
                }
                seen_out |= p.out;
            }
            for t in op.throws.iter_mut() {
                match lookup(self.symbols, scope, &t.0) {
                    Some((full, sym)) if sym.kind == SymKind::Exception => t.0 = full,
                    Some(_) => {
                        self.error(t.1, Code::E013, format!("`{}` is not an exception", t.0))
                    }
                    None => self.error(
                        t.1,
                        Code::E005,
                        format!("exception `{}` is not defined", t.0),
                    ),
                }
            }
        }
    }

    fn bind_enum(&mut self, scope: &str, items: &mut [Enumerator]) {
        let mut next: i128 = 0;
        let mut values = HashMap::new();
        for e in items.iter_mut() {
            let value = match &e.value {
                None => next,
                Some(ConstValue::Int(v)) => *v,
                Some(ConstValue::Name(n)) => match self.const_int(scope, n) {
                    Some(v) => v,
                    None => {
                        self.error(
                            e.at,
                            Code::E011,
                            format!("`{n}` is not an integer constant"),
                        );
                        next
                    }
                },
                Some(_) => {
                    self.error(e.at, Code::E011, "enumerator values are integers".into());
                    next
                }
            };
            if !(0..=i32::MAX as i128).contains(&value) {
                self.error(
                    e.at,
                    Code::E011,
                    format!("enumerator value {value} is out of range"),
                );
            }
            if let Some(other) = values.insert(value, e.name.clone()) {
                self.error(
                    e.at,
                    Code::E015,
                    format!(
                        "enumerators `{other}` and `{}` have the same value {value}",
                        e.name
                    ),
                );
            }
            e.value = Some(ConstValue::Int(value));
            next = value + 1;
        }
    }

    /// The value of an integer constant named `n`, following constants defined as other
    /// constants (each name looked up from the scope of the constant that uses it).
    fn const_int(&self, scope: &str, n: &str) -> Option<i128> {
        let mut scope = scope.to_string();
        let mut name = n.to_string();
        for _ in 0..16 {
            let (full, sym) = lookup(self.symbols, &scope, &name)?;
            if sym.kind != SymKind::Const {
                return None;
            }
            match self.consts.get(&full)? {
                ConstValue::Int(v) => return Some(*v),
                ConstValue::Name(next) => {
                    scope = parent_scope(&full).unwrap_or("").to_string();
                    name = next.clone();
                }
                _ => return None,
            }
        }
        None
    }

    /// Checks a constant or default value against its type; binds names in it.
    fn bind_value(&mut self, scope: &str, ty: &TypeRef, v: &mut ConstValue, at: At) {
        let kind = match ty {
            TypeRef::Builtin(b) => Ok(*b),
            TypeRef::Named {
                name, proxy: false, ..
            } => match self.symbols.get(name) {
                Some(s) if s.kind == SymKind::Enum => Err(name.clone()),
                Some(_) => {
                    self.error(
                        at,
                        Code::E011,
                        format!("constants of type `{name}` are not allowed"),
                    );
                    return;
                }
                None => return,
            },
            TypeRef::Named { .. } => {
                self.error(at, Code::E011, "proxy constants are not allowed".into());
                return;
            }
        };
        if let ConstValue::Name(n) = v {
            // An enumerator may also be named relative to its enum's scope.
            let found = lookup(self.symbols, scope, n).or_else(|| match &kind {
                Err(enum_name) => lookup(self.symbols, parent_scope(enum_name)?, n),
                Ok(_) => None,
            });
            match found {
                Some((full, sym)) => {
                    let fits = match (&kind, sym.kind) {
                        (Err(enum_name), SymKind::Enumerator) => sym.parent == *enum_name,
                        (_, SymKind::Const) => true,
                        _ => false,
                    };
                    if !fits {
                        self.error(
                            at,
                            Code::E011,
                            format!("`{n}` does not fit the type of this value"),
                        );
                    }
                    *n = full;
                }
                None => self.error(at, Code::E005, format!("`{n}` is not defined")),
            }
            return;
        }
        let ok = match (kind, &*v) {
            (Ok(Builtin::Bool), ConstValue::Bool(_)) => Ok(()),
            (Ok(Builtin::String), ConstValue::String(_)) => Ok(()),
            (Ok(Builtin::Float), ConstValue::Float(f)) if f.abs() > f64::from(f32::MAX) => {
                Err(format!("{f} is out of range for float"))
            }
            (Ok(Builtin::Float | Builtin::Double), ConstValue::Float(_) | ConstValue::Int(_)) => {
                Ok(())
            }
            (
                Ok(b @ (Builtin::Byte | Builtin::Short | Builtin::Int | Builtin::Long)),
                ConstValue::Int(i),
            ) => {
                let (lo, hi): (i128, i128) = match b {
                    Builtin::Byte => (0, 255),
                    Builtin::Short => (i16::MIN.into(), i16::MAX.into()),
                    Builtin::Int => (i32::MIN.into(), i32::MAX.into()),
                    _ => (i64::MIN.into(), i64::MAX.into()),
                };
                if (lo..=hi).contains(i) {
                    Ok(())
                } else {
                    Err(format!("{i} is out of range for {b:?}").to_lowercase())
                }
            }
            (Ok(b), _) => Err(format!("value does not fit type {b:?}").to_lowercase()),
            (Err(e), _) => Err(format!(
                "value of enum `{e}` must be one of its enumerators"
            )),
        };
        if let Err(msg) = ok {
            self.error(at, Code::E011, msg);
        }
    }

    fn check_key(&mut self, k: &TypeRef, at: At) {
        let ok = match k {
            TypeRef::Builtin(b) => matches!(
                b,
                Builtin::Bool
                    | Builtin::Byte
                    | Builtin::Short
                    | Builtin::Int
                    | Builtin::Long
                    | Builtin::String
            ),
            TypeRef::Named { name, proxy, .. } => {
                !*proxy && self.symbols.get(name).is_none_or_key()
            }
        };
        if !ok {
            let p = self.pos(at);
            self.diags.push(Diagnostic::new(
                p,
                Code::E012,
                "dictionary keys must be integral, bool, string, enum or struct types".to_string(),
            ));
        }
    }
}

trait KeyKind {
    fn is_none_or_key(&self) -> bool;
}

impl KeyKind for Option<&Symbol> {
    fn is_none_or_key(&self) -> bool {
        !matches!(self, Some(s) if !matches!(s.kind, SymKind::Enum | SymKind::Struct | SymKind::Sequence))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sym(kind: SymKind) -> Symbol {
        Symbol {
            kind,
            local: false,
            file: 0,
            at: 0,
            parent: String::new(),
        }
    }

    #[test]
    fn relative_names_are_found_from_the_innermost_scope_out() {
        let mut symbols = Symbols::new();
        symbols.insert("::A::T".into(), sym(SymKind::Struct));
        symbols.insert("::A::B::T".into(), sym(SymKind::Enum));
        symbols.insert("::U".into(), sym(SymKind::Struct));
        let found = |scope: &str, name: &str| lookup(&symbols, scope, name).map(|(n, _)| n);
        assert_eq!(found("::A::B", "T").as_deref(), Some("::A::B::T"));
        assert_eq!(found("::A", "T").as_deref(), Some("::A::T"));
        assert_eq!(found("::A::B", "::A::T").as_deref(), Some("::A::T"));
        assert_eq!(found("::A::B", "U").as_deref(), Some("::U"));
        assert_eq!(found("::A::B", "B::T").as_deref(), Some("::A::B::T"));
        assert_eq!(found("", "T"), None);
    }

    #[test]
    fn parent_scopes() {
        assert_eq!(parent_scope("::A::B"), Some("::A"));
        assert_eq!(parent_scope("::A"), Some(""));
        assert_eq!(parent_scope(""), None);
    }
}
