//! Data definitions: structs, enums, constants, classes and exceptions, with their
//! defaults and the `slice_*!` macro call that implements their encoding.

use std::collections::HashSet;
use std::fmt::Write;

use super::names::*;
use super::Gen;
use crate::ast::*;

impl<'a> Gen<'a> {
    pub(super) fn structure(&self, def: &Definition, members: &[Member], out: &mut String) {
        let name = type_name(&def.name);
        let mut seen = HashSet::new();
        let eq = members.iter().all(|m| self.eq_hash(&m.ty, &mut seen));
        let has_defaults = members.iter().any(|m| m.default.is_some());
        let mut derives = vec!["Clone", "Debug", "PartialEq"];
        if eq {
            derives.extend(["Eq", "Hash"]);
        }
        if !has_defaults {
            derives.push("Default");
        }
        let _ = writeln!(
            out,
            "#[derive({})]\npub struct {name} {{",
            derives.join(", ")
        );
        let fields = self.fields(members, out, false);
        out.push_str("}\n\n");
        if has_defaults {
            self.default_impl(&name, None, members, out);
        }
        let (min, fixed) = self.struct_size(members);
        let fixed_arg = fixed.map_or("None".to_string(), |n| format!("Some({n})"));
        let _ = writeln!(
            out,
            "crate::facade::slice_struct!({name}, {min}, {fixed_arg}, [{}]);\n",
            fields.join(", ")
        );
    }

    /// Writes `pub name: Type,` lines; returns the Rust field names of required members
    /// (and, with `split_optional`, leaves optional ones to the caller's own list).
    pub(super) fn fields(
        &self,
        members: &[Member],
        out: &mut String,
        renamed_base: bool,
    ) -> Vec<String> {
        let mut names = Vec::new();
        for m in members {
            let f = self.member_field(m, renamed_base);
            let ty = self.rust_type(&m.ty);
            if m.tag.is_some() {
                let _ = writeln!(out, "    pub {f}: Option<{ty}>,");
            } else {
                let _ = writeln!(out, "    pub {f}: {ty},");
            }
            names.push(f);
        }
        names
    }

    pub(super) fn member_field(&self, m: &Member, has_base: bool) -> String {
        let f = field_name(&m.name);
        if has_base && f == "base" {
            "base_".to_string()
        } else {
            f
        }
    }

    pub(super) fn default_impl(
        &self,
        name: &str,
        base: Option<&str>,
        members: &[Member],
        out: &mut String,
    ) {
        let _ = writeln!(
            out,
            "impl Default for {name} {{\n    fn default() -> Self {{\n        Self {{"
        );
        if base.is_some() {
            out.push_str("            base: Default::default(),\n");
        }
        for m in members {
            let f = self.member_field(m, base.is_some());
            let v = match &m.default {
                Some(v) => {
                    let expr = self.value_expr(&m.ty, v, true);
                    if m.tag.is_some() {
                        format!("Some({expr})")
                    } else {
                        expr
                    }
                }
                None => "Default::default()".to_string(),
            };
            let _ = writeln!(out, "            {f}: {v},");
        }
        out.push_str("        }\n    }\n}\n\n");
    }

    /// A Rust expression for a constant value of type `ty`.
    pub(super) fn value_expr(&self, ty: &TypeRef, v: &ConstValue, owned: bool) -> String {
        match v {
            ConstValue::Name(n) => match self.def(n) {
                Some(d) if matches!(d.kind, Kind::Const(..)) => {
                    let path = const_path(n, &self.scope.borrow());
                    match ty {
                        TypeRef::Builtin(Builtin::String) if owned => format!("{path}.to_string()"),
                        // Slice lets a `long` take an `int` constant, and so on.
                        TypeRef::Builtin(
                            Builtin::Byte
                            | Builtin::Short
                            | Builtin::Int
                            | Builtin::Long
                            | Builtin::Float
                            | Builtin::Double,
                        ) => format!("{path} as {}", self.rust_type(ty)),
                        _ => path,
                    }
                }
                _ => enumerator_path(n, ty, &self.scope.borrow()),
            },
            ConstValue::String(s) => {
                if owned {
                    format!("{s:?}.to_string()")
                } else {
                    format!("{s:?}")
                }
            }
            ConstValue::Bool(b) => b.to_string(),
            ConstValue::Int(i) => match ty {
                TypeRef::Builtin(Builtin::Float) => format!("{}_f32", *i as f64),
                TypeRef::Builtin(Builtin::Double) => format!("{}_f64", *i as f64),
                TypeRef::Builtin(Builtin::Long) if *i == i64::MIN as i128 => "i64::MIN".to_string(),
                _ => i.to_string(),
            },
            ConstValue::Float(f) => match ty {
                TypeRef::Builtin(Builtin::Float) => format!("{:?}_f32", *f as f32),
                _ => format!("{f:?}_f64"),
            },
        }
    }

    pub(super) fn constant(
        &self,
        def: &Definition,
        ty: &TypeRef,
        v: &ConstValue,
        out: &mut String,
    ) {
        let rust_ty = match ty {
            TypeRef::Builtin(Builtin::String) => "&str".to_string(),
            _ => self.rust_type(ty),
        };
        let _ = writeln!(
            out,
            "pub const {}: {rust_ty} = {};\n",
            const_name(&def.name),
            self.value_expr(ty, v, false)
        );
    }

    pub(super) fn enumeration(&self, def: &Definition, items: &[Enumerator], out: &mut String) {
        let max = items
            .iter()
            .filter_map(|e| match e.value {
                Some(ConstValue::Int(v)) => Some(v),
                _ => None,
            })
            .max()
            .unwrap_or(0);
        let variants: Vec<String> = items
            .iter()
            .map(|e| {
                let v = match e.value {
                    Some(ConstValue::Int(v)) => v,
                    _ => 0,
                };
                format!("{} = {v}", camel_case(&e.name))
            })
            .collect();
        let _ = writeln!(
            out,
            "crate::facade::slice_enum!({}, {max}, [{}]);\n",
            type_name(&def.name),
            variants.join(", ")
        );
    }

    /// (required field names, optional (tag, field) sorted by tag).
    pub(super) fn split_members(
        &self,
        members: &[Member],
        has_base: bool,
    ) -> (Vec<String>, Vec<(i64, String)>) {
        let required = members
            .iter()
            .filter(|m| m.tag.is_none())
            .map(|m| self.member_field(m, has_base))
            .collect();
        let mut optional: Vec<(i64, String)> = members
            .iter()
            .filter_map(|m| m.tag.map(|t| (t, self.member_field(m, has_base))))
            .collect();
        optional.sort();
        (required, optional)
    }

    pub(super) fn class(&self, abs: &str, def: &Definition, out: &mut String) {
        let Kind::Class {
            compact_id,
            base,
            members,
            ..
        } = &def.kind
        else {
            return;
        };
        let name = type_name(&def.name);
        let base_path = base.as_ref().map(|b| self.path(&b.0));
        self.struct_with_base(&name, base_path.as_deref(), members, out);
        let (required, optional) = self.split_members(members, base.is_some());
        let compact = compact_id.map_or("None".to_string(), |c| format!("Some({c})"));
        let base_arg = base_path.map_or(String::new(), |b| format!(", base {b}"));
        let _ = writeln!(
            out,
            "crate::facade::slice_class!({name}, {abs:?}, {compact}, [{}], [{}]{base_arg});\n",
            required.join(", "),
            tagged(&optional)
        );
    }

    /// The Rust struct of a class or an exception: its base as a `base` field, then its own
    /// members, and a `Default` written by hand when Slice gives default values.
    pub(super) fn struct_with_base(
        &self,
        name: &str,
        base_path: Option<&str>,
        members: &[Member],
        out: &mut String,
    ) {
        let has_defaults = members.iter().any(|m| m.default.is_some());
        let derives = if has_defaults {
            "Clone, Debug, PartialEq"
        } else {
            "Clone, Debug, PartialEq, Default"
        };
        let _ = writeln!(out, "#[derive({derives})]\npub struct {name} {{");
        if let Some(b) = base_path {
            let _ = writeln!(out, "    pub base: {b},");
        }
        self.fields(members, out, base_path.is_some());
        out.push_str("}\n\n");
        if has_defaults {
            self.default_impl(name, base_path, members, out);
        }
    }

    pub(super) fn exception(&self, abs: &str, def: &Definition, out: &mut String) {
        let Kind::Exception { base, members } = &def.kind else {
            return;
        };
        let name = type_name(&def.name);
        let base_path = base.as_ref().map(|b| self.path(&b.0));
        self.struct_with_base(&name, base_path.as_deref(), members, out);
        let (required, optional) = self.split_members(members, base.is_some());
        let uses_classes = self.exception_uses_classes(abs);
        let base_arg = base_path.map_or(String::new(), |b| format!(", base {b}"));
        let _ = writeln!(
            out,
            "crate::facade::slice_exception!({name}, {abs:?}, {uses_classes}, [{}], [{}]{base_arg});\n",
            required.join(", "),
            tagged(&optional)
        );
    }

    pub(super) fn exception_uses_classes(&self, abs: &str) -> bool {
        let mut cur = self.def(abs);
        let mut seen = HashSet::new();
        while let Some(Definition {
            kind: Kind::Exception { base, members },
            ..
        }) = cur
        {
            // Optional members do not exist in encoding 1.0, the only user of the flag.
            if members
                .iter()
                .any(|m| m.tag.is_none() && self.uses_classes(&m.ty, &mut seen))
            {
                return true;
            }
            cur = base.as_ref().and_then(|b| self.def(&b.0));
        }
        false
    }
}

pub(super) fn tagged(optional: &[(i64, String)]) -> String {
    optional
        .iter()
        .map(|(t, f)| format!("{t} {f}"))
        .collect::<Vec<_>>()
        .join(", ")
}
