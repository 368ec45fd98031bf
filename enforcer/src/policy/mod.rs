//! The policy language: parse TOML, validate, compile to kernel map entries, evaluate.
//!
//! Pure: nothing here touches the kernel, so unit tests drive all of it.

pub mod compile;
