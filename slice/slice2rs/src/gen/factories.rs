//! The per-module lookups from type ids (and compact ids) to class and exception factories.

use std::fmt::Write;

use super::names::*;
use super::{Gen, ModNode};
use crate::ast::*;

impl<'a> Gen<'a> {
    pub(super) fn factories(&self, node: &ModNode<'_>, out: &mut String) {
        let mut values = Vec::new();
        let mut compact = Vec::new();
        let mut exceptions = Vec::new();
        for def in &node.defs {
            let abs = format!("{}::{}", node.scope, def.name);
            match &def.kind {
                Kind::Class { compact_id, .. } => {
                    values.push((abs.clone(), type_name(&def.name)));
                    if let Some(c) = compact_id {
                        compact.push((*c, abs));
                    }
                }
                Kind::Exception { .. } => exceptions.push((abs, type_name(&def.name))),
                _ => {}
            }
        }
        self.lookup_fn(
            out,
            "value_factory(type_id: &str) -> Option<crate::facade::ValueFactory>",
            "type_id",
            &values,
            "crate::facade::value_of::<{}>",
            node,
            "value_factory(type_id)",
            "crate::facade::ValueFactory",
        );
        let compact_entries: Vec<(String, String)> = compact
            .iter()
            .map(|(c, id)| (c.to_string(), format!("{id:?}")))
            .collect();
        let mut s =
            String::from("pub fn compact_id_to_type_id(id: i32) -> Option<&'static str> {\n");
        let mut tail = String::new();
        for c in &node.children {
            let _ = write!(
                tail,
                "\n        .or_else(|| {}::compact_id_to_type_id(id))",
                module_name(&c.name)
            );
        }
        if compact_entries.is_empty() && tail.is_empty() {
            s.push_str("    let _ = id;\n    None\n}\n\n");
        } else if compact_entries.is_empty() {
            let _ = write!(s, "    None{tail}\n}}\n\n");
        } else {
            s.push_str("    let found = match id {\n");
            for (c, id) in &compact_entries {
                let _ = writeln!(s, "        {c} => Some({id}),");
            }
            let _ = write!(s, "        _ => None,\n    }};\n    found{tail}\n}}\n\n");
        }
        out.push_str(&s);
        self.lookup_fn(
            out,
            "exception_factory(type_id: &str) -> Option<crate::facade::ExceptionFactory>",
            "type_id",
            &exceptions,
            "crate::facade::exception_of::<{}>",
            node,
            "exception_factory(type_id)",
            "crate::facade::ExceptionFactory",
        );
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn lookup_fn(
        &self,
        out: &mut String,
        sig: &str,
        arg: &str,
        entries: &[(String, String)],
        make: &str,
        node: &ModNode<'_>,
        child_call: &str,
        fn_type: &str,
    ) {
        let _ = writeln!(out, "pub fn {sig} {{");
        let mut tail = String::new();
        for c in &node.children {
            let _ = write!(
                tail,
                "\n        .or_else(|| {}::{child_call})",
                module_name(&c.name)
            );
        }
        if entries.is_empty() {
            if tail.is_empty() {
                let _ = writeln!(out, "    let _ = {arg};\n    None\n}}\n");
            } else {
                let _ = writeln!(out, "    None{tail}\n}}\n");
            }
            return;
        }
        let _ = writeln!(out, "    let f: {fn_type} = match {arg} {{");
        for (id, ty) in entries {
            let _ = writeln!(out, "        {id:?} => {},", make.replace("{}", ty));
        }
        if tail.is_empty() {
            out.push_str("        _ => return None,\n    };\n    Some(f)\n}\n\n");
        } else {
            let _ = writeln!(
                out,
                "        _ => return None{tail},\n    }};\n    Some(f)\n}}\n"
            );
        }
    }
}
