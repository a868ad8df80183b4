//! The C ABI. Everything `unsafe` and `extern "C"` in brokk lives in this module; each file is
//! one C noun (broker, subscription, message, listener, stats, version) or one piece of
//! plumbing (boundary, status, last_error, strings, callbacks). Functions here convert and
//! validate what C passes, make one call into the safe core, and map the result.

#![allow(non_camel_case_types, clippy::missing_safety_doc)]
#![deny(unsafe_op_in_unsafe_fn)]

pub(crate) mod boundary;
pub mod broker;
pub mod callbacks;
pub mod cancel;
pub mod consumer;
mod fork;
pub mod last_error;
pub mod listener;
pub mod log;
pub mod message;
pub mod names;
pub mod peek;
pub mod publish;
pub mod ready;
pub mod stats;
pub mod status;
pub mod store_view;
pub mod strings;
pub mod subscription;
pub mod version;
