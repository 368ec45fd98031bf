// This file exists so that `enforcer-ebpf` can be a build-dependency of `enforcer`: cargo then
// rebuilds `enforcer` (and its embedded object) whenever the eBPF crate changes.
#![no_std]
