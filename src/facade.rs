//! Everything code generated from `slice/` may use, and nothing else: generated code imports
//! only this module, so the runtime can change behind it. See `docs/slice-mapping.md`.

pub use std::collections::HashMap;
pub use std::sync::Arc;

pub use async_trait::async_trait;

pub use crate::encoding::*;
pub use crate::runtime::codegen::{
    check_mode, check_throws, empty_reply, end_params, exception_of, is_oneway, no_params,
    reply_payload, struct_format, value_of, CallError,
};
pub use crate::runtime::dispatch::{
    ConnectionInfo, Current, Dispatch, DispatchError, OperationMode,
};
pub use crate::runtime::{InvokeError, InvokeReply, Invoker};
pub use crate::{slice_class, slice_enum, slice_exception, slice_struct};
