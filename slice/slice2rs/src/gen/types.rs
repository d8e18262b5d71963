//! What generation needs to know about a Slice type: its Rust type, wire size, whether it
//! can hold class instances, whether `Eq`/`Hash` derive.

use std::collections::HashSet;

use super::Gen;
use crate::ast::*;

impl<'a> Gen<'a> {
    pub(super) fn rust_type(&self, ty: &TypeRef) -> String {
        match ty {
            TypeRef::Builtin(b) => match b {
                Builtin::Bool => "bool",
                Builtin::Byte => "u8",
                Builtin::Short => "i16",
                Builtin::Int => "i32",
                Builtin::Long => "i64",
                Builtin::Float => "f32",
                Builtin::Double => "f64",
                Builtin::String => "String",
                Builtin::Object | Builtin::LocalObject => "Option<crate::facade::ValueRef>",
                Builtin::ObjectProxy => "Option<crate::facade::Proxy>",
            }
            .to_string(),
            TypeRef::Named { name, proxy, .. } => {
                let is_value = self.is_class_like(name);
                if *proxy {
                    "Option<crate::facade::Proxy>".to_string()
                } else if is_value {
                    "Option<crate::facade::ValueRef>".to_string()
                } else {
                    self.path(name)
                }
            }
        }
    }

    /// Classes and interfaces by value are class instances; forward declarations count.
    pub(super) fn is_class_like(&self, abs: &str) -> bool {
        match self.def(abs).map(|d| &d.kind) {
            Some(Kind::Class { .. } | Kind::Interface { .. }) => true,
            Some(_) => false,
            // Only forward declarations are missing from the table.
            None => true,
        }
    }

    /// Whether values of `ty` can hold class instances (the 1.0 "uses classes" rule).
    pub(super) fn uses_classes(&self, ty: &TypeRef, seen: &mut HashSet<String>) -> bool {
        match ty {
            TypeRef::Builtin(b) => matches!(b, Builtin::Object),
            TypeRef::Named { name, proxy, .. } => {
                if *proxy {
                    return false;
                }
                if !seen.insert(name.clone()) {
                    return false;
                }
                match self.def(name).map(|d| &d.kind) {
                    None | Some(Kind::Class { .. } | Kind::Interface { .. }) => true,
                    Some(Kind::Struct(ms)) => ms.iter().any(|m| self.uses_classes(&m.ty, seen)),
                    Some(Kind::Sequence(t)) => self.uses_classes(t, seen),
                    Some(Kind::Dictionary(k, v)) => {
                        self.uses_classes(k, seen) || self.uses_classes(v, seen)
                    }
                    _ => false,
                }
            }
        }
    }

    /// (min wire size, fixed size) of a type.
    pub(super) fn wire_size(&self, ty: &TypeRef) -> (usize, Option<usize>) {
        match ty {
            TypeRef::Builtin(b) => match b {
                Builtin::Bool | Builtin::Byte => (1, Some(1)),
                Builtin::Short => (2, Some(2)),
                Builtin::Int | Builtin::Float => (4, Some(4)),
                Builtin::Long | Builtin::Double => (8, Some(8)),
                Builtin::ObjectProxy => (2, None),
                _ => (1, None),
            },
            TypeRef::Named { name, proxy, .. } => {
                if *proxy {
                    return (2, None);
                }
                match self.def(name).map(|d| &d.kind) {
                    Some(Kind::Struct(ms)) => self.struct_size(ms),
                    _ => (1, None),
                }
            }
        }
    }

    pub(super) fn struct_size(&self, members: &[Member]) -> (usize, Option<usize>) {
        let mut min = 0;
        let mut fixed = Some(0);
        for m in members {
            let (mn, fx) = self.wire_size(&m.ty);
            min += mn;
            fixed = match (fixed, fx) {
                (Some(a), Some(b)) => Some(a + b),
                _ => None,
            };
        }
        (min, fixed)
    }

    /// Whether `Eq` and `Hash` can be derived for a type.
    pub(super) fn eq_hash(&self, ty: &TypeRef, seen: &mut HashSet<String>) -> bool {
        match ty {
            TypeRef::Builtin(b) => matches!(
                b,
                Builtin::Bool
                    | Builtin::Byte
                    | Builtin::Short
                    | Builtin::Int
                    | Builtin::Long
                    | Builtin::String
            ),
            TypeRef::Named {
                name, proxy: false, ..
            } => {
                if !seen.insert(name.clone()) {
                    return true;
                }
                match self.def(name).map(|d| &d.kind) {
                    Some(Kind::Enum(_)) => true,
                    Some(Kind::Struct(ms)) => ms.iter().all(|m| self.eq_hash(&m.ty, seen)),
                    Some(Kind::Sequence(t)) => self.eq_hash(t, seen),
                    _ => false,
                }
            }
            TypeRef::Named { .. } => false,
        }
    }

    pub(super) fn param_type(&self, ty: &TypeRef, tag: Option<i64>) -> String {
        let t = self.rust_type(ty);
        if tag.is_some() {
            format!("Option<{t}>")
        } else {
            t
        }
    }

    /// The Rust type of what an operation returns: `ret` and outs as in the contract.
    pub(super) fn result_type(&self, op: &Operation) -> String {
        let mut parts = Vec::new();
        if let Some(r) = &op.ret {
            parts.push(self.param_type(r, op.ret_tag));
        }
        for p in op.params.iter().filter(|p| p.out) {
            parts.push(self.param_type(&p.ty, p.tag));
        }
        match parts.len() {
            0 => "()".to_string(),
            1 => parts.remove(0),
            _ => format!("({})", parts.join(", ")),
        }
    }
}
