//! Debian cloud kernels for the VM matrix: resolve the newest package of a series from the
//! archive, download it once into the cache and unpack it.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use crate::{
    bootstrap,
    process::{self, ProcessError},
};

/// A kernel series the matrix covers. The label is what tests see as `ENFORCER_KERNEL` and what
/// the summary's column is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Series {
    #[value(name = "6.1")]
    V6_1,
    #[value(name = "6.12")]
    V6_12,
}

impl Series {
    pub const ALL: [Series; 2] = [Series::V6_1, Series::V6_12];

    pub fn label(self) -> &'static str {
        match self {
            Series::V6_1 => "6.1",
            Series::V6_12 => "6.12",
        }
    }

    /// The ordering key of a package name of this series, or None if it is not one.
    /// 6.1: `linux-image-6.1.0-<N>-cloud-amd64`; 6.12: `linux-image-6.12.<N>+deb<D>-cloud-amd64`.
    fn package_rank(self, package: &str) -> Option<u64> {
        let flavour = package
            .strip_prefix("linux-image-")?
            .strip_suffix("-cloud-amd64")?;
        match self {
            Series::V6_1 => flavour.strip_prefix("6.1.0-")?.parse().ok(),
            Series::V6_12 => {
                let (patch, debian) = flavour.strip_prefix("6.12.")?.split_once("+deb")?;
                debian.parse::<u32>().ok()?;
                patch.parse().ok()
            }
        }
    }

    pub fn newest_package<'a>(
        self,
        packages: impl IntoIterator<Item = &'a str>,
    ) -> Option<&'a str> {
        packages
            .into_iter()
            .filter_map(|p| Some((self.package_rank(p)?, p)))
            .max()
            .map(|(_, p)| p)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error("the Debian archive offers no {series} cloud kernel (looked for linux-image-*-cloud-amd64 with `apt-cache search`) and none is cached in {cache}")]
    NotFound {
        series: &'static str,
        cache: PathBuf,
    },
    #[error("{package} unpacked to {dir} but has no boot/vmlinuz-*")]
    NoVmlinuz { package: String, dir: PathBuf },
    #[error("apt-get download {package} produced no .deb in {dir}")]
    NoDeb { package: String, dir: PathBuf },
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> KernelError {
    let path = path.to_path_buf();
    move |source| KernelError::Io {
        action,
        path,
        source,
    }
}

#[derive(Debug, Clone)]
pub struct Kernel {
    pub series: Series,
    pub package: String,
    pub vmlinuz: PathBuf,
}

/// The newest kernel of `series`, downloaded and unpacked under `<cache>/kernels/<package>/`.
pub fn resolve(series: Series, cache: &Path) -> Result<Kernel, KernelError> {
    let kernels_dir = cache.join("kernels");
    let package = match newest_in_archive(series)? {
        Some(package) => package,
        // Offline or no apt lists: the newest kernel already cached still does the job.
        None => newest_cached(series, &kernels_dir).ok_or_else(|| KernelError::NotFound {
            series: series.label(),
            cache: kernels_dir.clone(),
        })?,
    };
    let unpacked = kernels_dir.join(&package);
    if let Some(vmlinuz) = find_vmlinuz(&unpacked) {
        return Ok(Kernel {
            series,
            package,
            vmlinuz,
        });
    }
    download_and_unpack(&package, &kernels_dir, &unpacked)?;
    let vmlinuz = find_vmlinuz(&unpacked).ok_or_else(|| KernelError::NoVmlinuz {
        package: package.clone(),
        dir: unpacked.clone(),
    })?;
    Ok(Kernel {
        series,
        package,
        vmlinuz,
    })
}

fn newest_in_archive(series: Series) -> Result<Option<String>, KernelError> {
    let search = || {
        process::stdout(Command::new("apt-cache").args([
            "search",
            "--names-only",
            "^linux-image-.*-cloud-amd64$",
        ]))
    };
    let mut listing = search()?;
    if series.newest_package(package_names(&listing)).is_none() {
        // A fresh machine may have no package lists yet.
        bootstrap::apt_get_update()?;
        listing = search()?;
    }
    Ok(series
        .newest_package(package_names(&listing))
        .map(str::to_string))
}

/// `apt-cache search` prints `name - description` per line.
fn package_names(listing: &str) -> impl Iterator<Item = &str> {
    listing
        .lines()
        .filter_map(|line| line.split_whitespace().next())
}

fn newest_cached(series: Series, kernels_dir: &Path) -> Option<String> {
    let names: Vec<String> = fs::read_dir(kernels_dir)
        .ok()?
        .filter_map(Result::ok)
        .filter(|entry| find_vmlinuz(&entry.path()).is_some())
        .filter_map(|entry| entry.file_name().into_string().ok())
        .collect();
    series
        .newest_package(names.iter().map(String::as_str))
        .map(str::to_string)
}

fn find_vmlinuz(unpacked: &Path) -> Option<PathBuf> {
    fs::read_dir(unpacked.join("boot"))
        .ok()?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .find(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("vmlinuz-"))
        })
}

fn download_and_unpack(
    package: &str,
    kernels_dir: &Path,
    unpacked: &Path,
) -> Result<(), KernelError> {
    println!(
        "kernels: downloading {package} into {} (once)",
        kernels_dir.display()
    );
    let download_dir = kernels_dir.join(format!(".download-{package}"));
    let _ = fs::remove_dir_all(&download_dir);
    fs::create_dir_all(&download_dir).map_err(io_error("creating", &download_dir))?;
    process::stdout(
        Command::new("apt-get")
            .args(["download", "-q", package])
            .current_dir(&download_dir),
    )?;
    let deb = fs::read_dir(&download_dir)
        .map_err(io_error("reading", &download_dir))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .find(|path| path.extension().is_some_and(|ext| ext == "deb"))
        .ok_or_else(|| KernelError::NoDeb {
            package: package.to_string(),
            dir: download_dir.clone(),
        })?;
    // Unpack beside the final directory and rename, so an interrupted run never leaves a
    // half-unpacked kernel that looks complete.
    let staging = download_dir.join("root");
    process::stdout(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&staging))?;
    let _ = fs::remove_dir_all(unpacked);
    fs::rename(&staging, unpacked).map_err(io_error("moving unpacked kernel to", unpacked))?;
    let _ = fs::remove_dir_all(&download_dir);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LISTING: &[&str] = &[
        "linux-image-6.1.0-9-cloud-amd64",
        "linux-image-6.1.0-56-cloud-amd64",
        "linux-image-6.1.0-56-cloud-amd64-dbg",
        "linux-image-6.1.0-56-cloud-amd64-unsigned",
        "linux-image-6.12-cloud-amd64",
        "linux-image-6.12.9+deb12-cloud-amd64",
        "linux-image-6.12.117+deb12-cloud-amd64",
        "linux-image-6.12.117+deb12-cloud-amd64-unsigned",
        "linux-image-6.12.101+deb12-cloud-amd64",
        "linux-image-cloud-amd64",
    ];

    #[test]
    fn picks_newest_6_1_numerically() {
        assert_eq!(
            Series::V6_1.newest_package(LISTING.iter().copied()),
            Some("linux-image-6.1.0-56-cloud-amd64")
        );
    }

    #[test]
    fn picks_newest_6_12_numerically_and_skips_meta_and_variants() {
        assert_eq!(
            Series::V6_12.newest_package(LISTING.iter().copied()),
            Some("linux-image-6.12.117+deb12-cloud-amd64")
        );
    }

    #[test]
    fn no_match_is_none() {
        assert_eq!(
            Series::V6_12.newest_package(["linux-image-cloud-amd64"]),
            None
        );
    }
}
