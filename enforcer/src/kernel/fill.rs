//! How full the kernel maps are (metrics, `enforcer status`). The rule maps hold exactly the
//! running policy's compiled entries (in one slot between reloads), so their counts come from
//! the policy, against the per-slot limits the compiler enforces. The process tables change with
//! every fork and exit: they are counted in the kernel, against their real `max_entries` (an
//! adopted table keeps the capacity it was created with).

use std::{
    io,
    os::fd::{AsFd as _, AsRawFd as _, BorrowedFd},
};

use aya::{
    maps::{Map, MapData},
    Ebpf,
};
use aya_obj::generated::{bpf_attr, bpf_cmd};
use enforcer_common::*;

use super::KernelError;
use crate::policy::{compile::CompiledPolicy, limits};

/// One map's fill level.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct MapFill {
    /// The map's name in the object (`PROCS`, `NET_RULES`...).
    pub map: String,
    pub entries: u64,
    /// Entries it can take: for rule maps the per-slot limit (half of `max_entries`: a reload
    /// fills the other slot while this one enforces).
    pub capacity: u64,
}

/// Fill levels of every map whose capacity limits enforcement: the agent process table
/// (`PROCS`; when full, new agent children are denied everything), the table of those
/// unrecordable children (`DOOMED`), and the rule maps.
pub fn map_fill(ebpf: &Ebpf, policy: Option<&CompiledPolicy>) -> Result<Vec<MapFill>, KernelError> {
    let mut out = Vec::new();
    for name in [MAP_PROCS, MAP_DOOMED] {
        let (entries, capacity) = count_hash(ebpf, name)?;
        out.push(MapFill {
            map: name.into(),
            entries,
            capacity,
        });
    }
    let count = |f: fn(&CompiledPolicy) -> usize| policy.map_or(0, f) as u64;
    let rules: [(&str, u64, usize); 6] = [
        (
            MAP_AGENTS,
            count(|p| p.agents.len()),
            limits::MAX_POLICY_AGENTS,
        ),
        (
            MAP_PATH_RULES,
            count(|p| p.path_entries.len()),
            limits::MAX_PATH_ENTRIES,
        ),
        (
            MAP_NAME_RULES,
            count(|p| p.name_entries.len()),
            limits::MAX_NAME_ENTRIES,
        ),
        (
            MAP_NET_RULES,
            count(|p| p.net_entries.len()),
            limits::MAX_NET_ENTRIES,
        ),
        (
            MAP_EXE_MATCH,
            count(|p| p.exe_matches.len()),
            limits::MAX_EXE_MATCH_ENTRIES,
        ),
        (
            MAP_CGROUP_MATCH,
            count(|p| p.cgroup_matches.len()),
            limits::MAX_CGROUP_MATCH_ENTRIES,
        ),
    ];
    out.extend(rules.into_iter().map(|(map, entries, capacity)| MapFill {
        map: map.into(),
        entries,
        capacity: capacity as u64,
    }));
    Ok(out)
}

fn map_err(map: &str, reason: impl std::fmt::Display) -> KernelError {
    KernelError::Map {
        map: map.into(),
        reason: reason.to_string(),
    }
}

/// (entries, max_entries) of the hash map `name`.
fn count_hash(ebpf: &Ebpf, name: &str) -> Result<(u64, u64), KernelError> {
    let data: &MapData = match ebpf.map(name) {
        Some(Map::HashMap(data)) => data,
        Some(_) => return Err(map_err(name, "not a hash map")),
        None => return Err(map_err(name, "missing")),
    };
    let info = data.info().map_err(|e| map_err(name, e))?;
    let fd = data.fd().as_fd();
    let mut buffers = Buffers::new(info.key_size(), info.value_size());
    let entries =
        count_in_batches(|token, count| buffers.lookup(fd, token, count)).map_err(|e| {
            map_err(
                name,
                format!("counting entries (BPF_MAP_LOOKUP_BATCH): {e}"),
            )
        })?;
    Ok((entries, u64::from(info.max_entries())))
}

/// Entries per BPF_MAP_LOOKUP_BATCH call at first (grown if one hash bucket holds more).
const BATCH: u32 = 1024;

/// What one batch call did: entries copied, the token to continue from, and whether the map
/// has more.
#[derive(Debug, PartialEq, Eq)]
enum Batch {
    More {
        filled: u32,
        next: u64,
    },
    Done {
        filled: u32,
    },
    /// One bucket holds more entries than asked for: ask again with room for more.
    TooSmall,
}

/// Count a hash map's entries batch by batch (kernel 5.6+). Not with `keys()`:
/// BPF_MAP_GET_NEXT_KEY starts again at the first bucket when the key it continues from was
/// deleted meanwhile, so a walk of a process table that processes leave while it is read can
/// count entries twice, or not end. A batch walk goes bucket by bucket: an entry added or
/// removed during the walk is counted at most once.
fn count_in_batches(
    mut lookup: impl FnMut(Option<u64>, u32) -> io::Result<Batch>,
) -> io::Result<u64> {
    let (mut total, mut token, mut count) = (0u64, None, BATCH);
    loop {
        match lookup(token, count)? {
            Batch::More { filled, next } => {
                total += u64::from(filled);
                token = Some(next);
            }
            Batch::Done { filled } => return Ok(total + u64::from(filled)),
            Batch::TooSmall if count < 1 << 20 => count *= 2,
            Batch::TooSmall => {
                return Err(io::Error::other(
                    "a hash bucket holds over a million entries",
                ))
            }
        }
    }
}

/// Room for the keys and values one batch copies out (only the count is used).
struct Buffers {
    key_size: usize,
    value_size: usize,
    keys: Vec<u8>,
    values: Vec<u8>,
}

impl Buffers {
    fn new(key_size: u32, value_size: u32) -> Self {
        Buffers {
            key_size: key_size as usize,
            value_size: value_size as usize,
            keys: Vec::new(),
            values: Vec::new(),
        }
    }

    fn lookup(&mut self, fd: BorrowedFd<'_>, token: Option<u64>, count: u32) -> io::Result<Batch> {
        self.keys.resize(self.key_size * count as usize, 0);
        self.values.resize(self.value_size * count as usize, 0);
        let (mut token_in, mut token_out) = (token.unwrap_or(0), 0u64);
        // SAFETY: all-zero is a valid bpf_attr; the batch fields are plain integers.
        let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
        attr.batch.in_batch = if token.is_some() {
            &mut token_in as *mut u64 as u64
        } else {
            0
        };
        attr.batch.out_batch = &mut token_out as *mut u64 as u64;
        attr.batch.keys = self.keys.as_mut_ptr() as u64;
        attr.batch.values = self.values.as_mut_ptr() as u64;
        attr.batch.count = count;
        attr.batch.map_fd = fd.as_raw_fd() as u32;
        // SAFETY: the kernel writes at most `count` keys and values into buffers sized for
        // them, and a token (a u32 bucket index for hash maps) into `token_out`; all outlive
        // the call.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                bpf_cmd::BPF_MAP_LOOKUP_BATCH as libc::c_long,
                &mut attr as *mut bpf_attr,
                size_of::<bpf_attr>(),
            )
        };
        let error = (ret < 0).then(io::Error::last_os_error);
        // SAFETY: reading the count the kernel wrote back (also on ENOENT).
        let filled = unsafe { attr.batch.count };
        match error.as_ref().and_then(io::Error::raw_os_error) {
            None => Ok(Batch::More {
                filled,
                next: token_out,
            }),
            Some(libc::ENOENT) => Ok(Batch::Done { filled }),
            Some(libc::ENOSPC) if filled == 0 => Ok(Batch::TooSmall),
            _ => Err(error.unwrap_or_else(|| io::Error::other("unexpected result"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake kernel: buckets of entries, served `count` at a time without splitting a bucket.
    fn fake(buckets: &[u32]) -> impl FnMut(Option<u64>, u32) -> io::Result<Batch> + '_ {
        move |token, count| {
            let mut bucket = token.unwrap_or(0) as usize;
            let mut filled = 0;
            while bucket < buckets.len() {
                if filled + buckets[bucket] > count {
                    return Ok(if filled == 0 {
                        Batch::TooSmall
                    } else {
                        Batch::More {
                            filled,
                            next: bucket as u64,
                        }
                    });
                }
                filled += buckets[bucket];
                bucket += 1;
            }
            Ok(Batch::Done { filled })
        }
    }

    #[test]
    fn batches_add_up_and_a_big_bucket_grows_the_batch() {
        assert_eq!(count_in_batches(fake(&[])).unwrap(), 0);
        assert_eq!(count_in_batches(fake(&[1, 0, 2, 0, 0, 3])).unwrap(), 6);
        let many = vec![3u32; 2000];
        assert_eq!(
            count_in_batches(fake(&many)).unwrap(),
            6000,
            "several batches"
        );
        assert_eq!(
            count_in_batches(fake(&[5, 3000, 1])).unwrap(),
            3006,
            "a bucket over BATCH"
        );
        let mut calls = 0;
        let failing = |_: Option<u64>, _: u32| {
            calls += 1;
            Err::<Batch, _>(io::Error::from_raw_os_error(libc::EINVAL))
        };
        assert!(count_in_batches(failing).is_err());
        assert_eq!(calls, 1, "an error ends the walk");
    }
}
