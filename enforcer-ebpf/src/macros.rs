//! `vget!` / `vset!`: volatile reads and writes of per-CPU scratch fields. Values parked in map
//! memory this way are opaque to LLVM (it cannot fold away the masks the verifier needs) and
//! to the verifier (paths that differ only in those values merge into one state).

macro_rules! vget {
    ($place:expr) => {{
        #[allow(unused_unsafe)]
        let value = unsafe { core::ptr::read_volatile(&$place) };
        value
    }};
}

macro_rules! vset {
    ($place:expr, $value:expr) => {{
        let value = $value;
        #[allow(unused_unsafe)]
        unsafe {
            core::ptr::write_volatile(&mut $place, value)
        }
    }};
}
