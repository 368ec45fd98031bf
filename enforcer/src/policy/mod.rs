//! The policy language: parse TOML, validate, compile to kernel map entries, evaluate.
//!
//! Pure: nothing here touches the kernel, so unit tests drive all of it. The language is
//! documented in docs/policy.md; the entries and the matching algorithm in docs/kernel-maps.md.
//!
//! Flow: [`load_paths`] (files/directories -> [`PolicySet`], includes flattened, every error
//! positioned) -> [`compile`] (with the host names resolved by the caller) -> [`CompiledPolicy`]
//! -> loaded by `crate::kernel`, or decided in user space by [`eval::evaluate`].

pub mod compile;
mod compiler;
pub mod diag;
pub mod envelope;
pub mod eval;
pub mod grant;
pub mod hosts;
pub mod limits;
mod load;
mod merge;
pub mod model;
pub mod net;
pub mod pattern;
pub mod protect;
mod schema;
mod validate;
pub mod when;

#[cfg(test)]
mod tests;

pub use compile::CompiledPolicy;
pub use compiler::compile;
pub use diag::{Diagnostic, Diagnostics};
pub use hosts::ResolvedHosts;
pub use load::{load_paths, load_sources, MAX_POLICY_FILE_BYTES};
pub use model::PolicySet;
pub use protect::ProtectedPath;
