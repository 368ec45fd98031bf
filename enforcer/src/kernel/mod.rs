//! Everything that talks to the kernel: the embedded eBPF object, loading and attaching, maps.
