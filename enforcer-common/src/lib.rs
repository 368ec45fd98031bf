//! Types shared by the eBPF programs and user space.
//!
//! Every type that crosses the kernel boundary is `#[repr(C)]`, has no implicit padding (explicit
//! `_pad` fields instead) and uses only fixed-width integers: no `bool`, no enums. Constants that
//! give meaning to those integers live next to the types.
//!
//! The matching algorithm these maps serve is specified in `docs/kernel-maps.md`; the user-space
//! reference evaluator (`enforcer::policy::eval`) implements exactly the same algorithm.
#![no_std]

pub mod abi;
pub mod event;
pub mod maps;
pub mod programs;

pub use abi::*;
pub use event::*;
pub use maps::*;
pub use programs::*;
