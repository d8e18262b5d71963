//! Interfaces: the servant trait and the dispatcher that decodes a request, calls the
//! servant and encodes its reply.

use std::collections::{BTreeSet, HashSet};
use std::fmt::Write;

use super::names::*;
use super::{has_meta, Flattened, Gen};
use crate::ast::*;

impl<'a> Gen<'a> {
    pub(super) fn flatten(&self, abs: &str, acc: &mut Flattened<'a>) {
        if !acc.type_ids.insert(abs.to_string()) {
            return;
        }
        let Some(def) = self.def(abs) else { return };
        let Kind::Interface { bases, ops } = &def.kind else {
            return;
        };
        let sliced = has_meta(&def.meta, "format:sliced");
        for op in ops {
            if !acc.ops.iter().any(|o| o.name == op.name) {
                if sliced || has_meta(&op.meta, "format:sliced") {
                    acc.sliced.insert(op.name.clone());
                }
                acc.ops.push(op);
            }
        }
        for b in bases {
            self.flatten(&b.0, acc);
        }
    }

    pub(super) fn interface(&self, abs: &str, def: &Definition, out: &mut String) {
        let mut flat = Flattened {
            type_ids: BTreeSet::new(),
            ops: Vec::new(),
            sliced: HashSet::new(),
        };
        self.flatten(abs, &mut flat);
        flat.type_ids.insert("::Ice::Object".to_string());
        let name = type_name(&def.name);
        let _ = writeln!(out, "pub trait {name}: Send + Sync + 'static {{");
        for op in &flat.ops {
            let _ = writeln!(out, "    {};", self.signature(op));
        }
        out.push_str("}\n\n");
        let ids: Vec<String> = flat.type_ids.iter().map(|t| format!("{t:?}")).collect();
        let consts = upper_snake(&def.name);
        let _ = writeln!(
            out,
            "pub const {consts}_TYPE_IDS: &[&str] = &[{}];\n",
            ids.join(", ")
        );
        let _ = writeln!(
            out,
            "pub struct {name}Dispatcher<T: {name}>(pub std::sync::Arc<T>);\n"
        );
        // The adapter holds servants as `Arc<dyn Dispatch>`, so `Dispatch` (unlike the
        // servant trait, reached only through this generic dispatcher) stays `async_trait`.
        let _ = writeln!(
            out,
            "#[crate::facade::async_trait]\nimpl<T: {name}> crate::facade::Dispatch for {name}Dispatcher<T> {{"
        );
        let _ = writeln!(
            out,
            "    fn type_ids(&self) -> &'static [&'static str] {{\n        {consts}_TYPE_IDS\n    }}\n"
        );
        let _ = writeln!(
            out,
            "    fn most_derived_type_id(&self) -> &'static str {{\n        {abs:?}\n    }}\n"
        );
        out.push_str("    async fn dispatch(\n        &self,\n        current: &crate::facade::Current,\n        params: &[u8],\n    ) -> Result<Vec<u8>, crate::facade::DispatchError> {\n");
        if flat.ops.is_empty() {
            out.push_str("        let _ = (current, params);\n        Err(crate::facade::DispatchError::OperationNotExist)\n    }\n}\n\n");
        } else {
            out.push_str("        match current.operation.as_str() {\n");
            for op in &flat.ops {
                self.dispatch_arm(op, flat.sliced.contains(&op.name), out);
            }
            out.push_str("            _ => Err(crate::facade::DispatchError::OperationNotExist),\n        }\n    }\n}\n\n");
        }
        if self.proxies.iter().any(|p| p == "*" || p == abs) {
            self.proxy(&name, &flat, out);
        }
    }

    /// A servant method: implementations write it as a plain `async fn`; the declaration
    /// spells out the future so it can promise `Send`, which the dispatcher needs and a
    /// bare `async fn` in a trait cannot say.
    pub(super) fn signature(&self, op: &Operation) -> String {
        let mut s = format!("fn {}(\n        &self,\n", field_name(&op.name));
        for p in op.params.iter().filter(|p| !p.out) {
            let _ = writeln!(
                s,
                "        {}: {},",
                param_name(&p.name),
                self.param_type(&p.ty, p.tag)
            );
        }
        let _ = write!(
            s,
            "        current: &crate::facade::Current,\n    ) -> impl std::future::Future<Output = Result<{}, crate::facade::DispatchError>> + Send",
            self.result_type(op)
        );
        s
    }

    pub(super) fn dispatch_arm(&self, op: &Operation, sliced: bool, out: &mut String) {
        let ins: Vec<&Param> = op.params.iter().filter(|p| !p.out).collect();
        let _ = writeln!(out, "            {:?} => {{", op.name);
        let ind = "                ";
        if self.check_modes {
            let mode = if op.idempotent {
                "Idempotent"
            } else {
                "Normal"
            };
            let _ = writeln!(
                out,
                "{ind}crate::facade::check_mode(crate::facade::OperationMode::{mode}, current.mode)?;"
            );
        }
        if ins.is_empty() {
            let _ = writeln!(
                out,
                "{ind}crate::facade::no_params(params, current.encoding)?;"
            );
        } else {
            let _ = writeln!(
                out,
                "{ind}let mut r = crate::facade::InputStream::new(params, current.encoding);\n{ind}r.set_factories({}FACTORIES);",
                self.root()
            );
            // Arc cycles in decoded graphs are never freed, and no servant needs one.
            let _ = writeln!(out, "{ind}r.refuse_cycles();");
            let mut seen = HashSet::new();
            let mut classes = false;
            for (i, p) in ins.iter().enumerate() {
                classes |= self.uses_classes(&p.ty, &mut seen);
                if p.tag.is_none() {
                    let _ = writeln!(
                        out,
                        "{ind}let a{i}: {} = crate::facade::Decode::decode(&mut r)?;",
                        self.rust_type(&p.ty)
                    );
                }
            }
            let mut tagged: Vec<(i64, usize)> = ins
                .iter()
                .enumerate()
                .filter_map(|(i, p)| p.tag.map(|t| (t, i)))
                .collect();
            tagged.sort();
            for (tag, i) in &tagged {
                let _ = writeln!(
                    out,
                    "{ind}let a{i}: Option<{}> = r.read_optional({tag})?;",
                    self.rust_type(&ins[*i].ty)
                );
            }
            if classes {
                let _ = writeln!(out, "{ind}r.read_pending_values()?;");
            }
            let _ = writeln!(out, "{ind}crate::facade::end_params(&r)?;");
        }
        let args: String = (0..ins.len()).map(|i| format!("a{i}, ")).collect();
        let throws: Vec<String> = op.throws.iter().map(|t| format!("{:?}", t.0)).collect();
        let _ = writeln!(
            out,
            "{ind}let result = self.0.{}({args}current).await;",
            field_name(&op.name)
        );
        let outs: Vec<&Param> = op.params.iter().filter(|p| p.out).collect();
        let n_results = outs.len() + usize::from(op.ret.is_some());
        let binding = match n_results {
            0 => "()".to_string(),
            1 => "v0".to_string(),
            n => format!(
                "({})",
                (0..n)
                    .map(|i| format!("v{i}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let _ = writeln!(
            out,
            "{ind}let {binding} = crate::facade::check_throws(result, &[{}])?;",
            throws.join(", ")
        );
        // (value variable, type, tag), return first as in the tuple.
        let mut values: Vec<(String, &TypeRef, Option<i64>)> = Vec::new();
        let mut idx = 0;
        if let Some(r) = &op.ret {
            values.push(("v0".into(), r, op.ret_tag));
            idx = 1;
        }
        for p in &outs {
            values.push((format!("v{idx}"), &p.ty, p.tag));
            idx += 1;
        }
        if values.is_empty() {
            let _ = writeln!(out, "{ind}Ok(crate::facade::empty_reply())\n            }}");
            return;
        }
        let _ = writeln!(
            out,
            "{ind}let mut w = crate::facade::OutputStream::new(current.encoding);"
        );
        if sliced {
            let _ = writeln!(out, "{ind}w.set_format(crate::facade::Format::Sliced);");
        }
        // Ice order: required outs, the required return, then optionals by tag.
        let mut order: Vec<&(String, &TypeRef, Option<i64>)> = values
            .iter()
            .skip(usize::from(op.ret.is_some()))
            .filter(|v| v.2.is_none())
            .collect();
        if op.ret.is_some() && op.ret_tag.is_none() {
            order.push(&values[0]);
        }
        let mut seen = HashSet::new();
        let mut classes = false;
        for (var, ty, _) in &order {
            classes |= self.uses_classes(ty, &mut seen);
            let _ = writeln!(out, "{ind}crate::facade::Encode::encode(&{var}, &mut w);");
        }
        let mut opts: Vec<&(String, &TypeRef, Option<i64>)> =
            values.iter().filter(|v| v.2.is_some()).collect();
        opts.sort_by_key(|v| v.2);
        for (var, ty, tag) in opts {
            classes |= self.uses_classes(ty, &mut seen);
            let _ = writeln!(
                out,
                "{ind}w.write_optional({}, {var}.as_ref());",
                tag.unwrap_or(0)
            );
        }
        if classes {
            let _ = writeln!(out, "{ind}w.write_pending_values();");
        }
        let _ = writeln!(out, "{ind}Ok(w.into_bytes())\n            }}");
    }
}
