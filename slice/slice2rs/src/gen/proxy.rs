//! Typed client proxies, for the interfaces the server calls rather than serves.

use std::collections::HashSet;
use std::fmt::Write;

use super::names::*;
use super::{has_meta, Flattened, Gen};
use crate::ast::*;

impl<'a> Gen<'a> {
    pub(super) fn proxy(&self, name: &str, flat: &Flattened<'_>, out: &mut String) {
        let _ = writeln!(
            out,
            "/// A typed client proxy: calls go out through `invoker`.\n#[derive(Clone)]\npub struct {name}Prx {{\n    pub proxy: crate::facade::Proxy,\n    pub invoker: std::sync::Arc<dyn crate::facade::Invoker>,\n}}\n"
        );
        let _ = writeln!(out, "impl {name}Prx {{");
        let methods: Vec<String> = flat.ops.iter().map(|op| self.proxy_method(op)).collect();
        out.push_str(&methods.join("\n"));
        out.push_str("}\n\n");
    }

    pub(super) fn proxy_method(&self, op: &Operation) -> String {
        let ind = "        ";
        let mut s = format!(
            "    pub async fn {}(\n        &self,\n",
            field_name(&op.name)
        );
        let ins: Vec<&Param> = op.params.iter().filter(|p| !p.out).collect();
        for p in &ins {
            let _ = writeln!(
                s,
                "{ind}{}: {},",
                proxy_param_name(&p.name),
                self.param_type(&p.ty, p.tag)
            );
        }
        let _ = writeln!(
            s,
            "{ind}ctx: &crate::facade::Context,\n    ) -> Result<{}, crate::facade::CallError> {{",
            self.result_type(op)
        );
        let _ = writeln!(s, "{ind}let ice_enc = self.proxy.encoding;");
        let mutable = if ins.is_empty() { "" } else { "mut " };
        let _ = writeln!(
            s,
            "{ind}let {mutable}ice_w = crate::facade::OutputStream::new(ice_enc);"
        );
        let mut seen = HashSet::new();
        let mut classes = false;
        for p in ins.iter().filter(|p| p.tag.is_none()) {
            classes |= self.uses_classes(&p.ty, &mut seen);
            let _ = writeln!(
                s,
                "{ind}crate::facade::Encode::encode(&{}, &mut ice_w);",
                proxy_param_name(&p.name)
            );
        }
        let mut tagged: Vec<&&Param> = ins.iter().filter(|p| p.tag.is_some()).collect();
        tagged.sort_by_key(|p| p.tag);
        for p in tagged {
            classes |= self.uses_classes(&p.ty, &mut seen);
            let _ = writeln!(
                s,
                "{ind}ice_w.write_optional({}, {}.as_ref());",
                p.tag.unwrap_or(0),
                proxy_param_name(&p.name)
            );
        }
        if classes {
            let _ = writeln!(s, "{ind}ice_w.write_pending_values();");
        }
        let mode = if op.idempotent {
            "Idempotent"
        } else if has_meta(&op.meta, "nonmutating") {
            "Nonmutating"
        } else {
            "Normal"
        };
        let outs: Vec<&Param> = op.params.iter().filter(|p| p.out).collect();
        let returns = op.ret.is_some() || !outs.is_empty();
        let oneway = if returns {
            "false"
        } else {
            "crate::facade::is_oneway(&self.proxy)"
        };
        let _ = writeln!(
            s,
            "{ind}let ice_reply = self\n{ind}    .invoker\n{ind}    .invoke(&self.proxy, {:?}, crate::facade::OperationMode::{mode}, ctx, ice_w.into_bytes(), ice_enc, {oneway})\n{ind}    .await?;",
            op.name
        );
        let _ = writeln!(
            s,
            "{ind}let ice_payload = crate::facade::reply_payload(ice_reply, ice_enc, {}FACTORIES)?;",
            self.root()
        );
        if !returns {
            let _ = writeln!(s, "{ind}let _ = ice_payload;\n{ind}Ok(())\n    }}");
            return s;
        }
        let _ = writeln!(
            s,
            "{ind}let mut ice_r = crate::facade::InputStream::new(&ice_payload, ice_enc);\n{ind}ice_r.set_factories({}FACTORIES);\n{ind}ice_r.refuse_cycles();",
            self.root()
        );
        // Values in tuple order: return first, then outs; decoded in Ice's wire order.
        let mut values: Vec<(String, &TypeRef, Option<i64>)> = Vec::new();
        if let Some(r) = &op.ret {
            values.push(("ice_v0".into(), r, op.ret_tag));
        }
        for p in &outs {
            values.push((format!("ice_v{}", values.len()), &p.ty, p.tag));
        }
        let skip = usize::from(op.ret.is_some());
        let mut order: Vec<&(String, &TypeRef, Option<i64>)> =
            values.iter().skip(skip).filter(|v| v.2.is_none()).collect();
        if op.ret.is_some() && op.ret_tag.is_none() {
            order.push(&values[0]);
        }
        let mut seen = HashSet::new();
        let mut classes = false;
        for (var, ty, _) in &order {
            classes |= self.uses_classes(ty, &mut seen);
            let _ = writeln!(
                s,
                "{ind}let {var}: {} = crate::facade::Decode::decode(&mut ice_r)?;",
                self.rust_type(ty)
            );
        }
        let mut opts: Vec<&(String, &TypeRef, Option<i64>)> =
            values.iter().filter(|v| v.2.is_some()).collect();
        opts.sort_by_key(|v| v.2);
        for (var, ty, tag) in opts {
            classes |= self.uses_classes(ty, &mut seen);
            let _ = writeln!(
                s,
                "{ind}let {var}: Option<{}> = ice_r.read_optional({})?;",
                self.rust_type(ty),
                tag.unwrap_or(0)
            );
        }
        if classes {
            let _ = writeln!(s, "{ind}ice_r.read_pending_values()?;");
        }
        let vars: Vec<&str> = values.iter().map(|v| v.0.as_str()).collect();
        let tuple = if vars.len() == 1 {
            vars[0].to_string()
        } else {
            format!("({})", vars.join(", "))
        };
        let _ = writeln!(s, "{ind}Ok({tuple})\n    }}");
        s
    }
}
