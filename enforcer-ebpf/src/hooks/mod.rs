//! One module per hook. Each entry is thin: it calls a `try_*` returning `Result<i32, i32>`.

pub mod exec;
pub mod file_open;
pub mod net;
pub mod proc;

/// LSM programs see the previous LSM's return value as their last argument: a denial by
/// someone else stands.
#[inline(always)]
pub fn prior(ctx: &aya_ebpf::programs::LsmContext, nargs: usize) -> i32 {
    ctx.arg::<i32>(nargs)
}
