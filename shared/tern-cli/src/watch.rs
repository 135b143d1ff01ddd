//! `tern dev --watch`: saving a source file rebuilds what depends on it and swaps each function
//! whose binary changed the way a revision swap does: the new build's pod started and ready,
//! the router switched to it, the old pod drained (queue-proxy's preStop drain, then SIGTERM) in
//! the background.
//!
//! The build is the one `scripts/dev` ran first ([`BUILD_ARGS`]): Cargo recompiles only the
//! crates whose sources changed and relinks only the binaries that depend on them, so a change
//! under `functions/NAME/` rebuilds that function alone, and one under `shared/` the functions
//! that use that crate. What to swap is read from the binaries themselves: a function whose
//! binary the build rewrote.

use notify::{EventKind, RecursiveMode, Watcher};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// What `scripts/dev` builds before `tern dev`, and what the watch rebuilds after a change:
/// every binary of the workspace but the bench.
pub const BUILD_ARGS: [&str; 5] = ["build", "--workspace", "--bins", "--exclude", "tern-bench"];

/// The trees whose files make the functions' binaries.
const WATCHED: [&str; 3] = ["functions", "shared", "migrations"];
/// The file at the top of the repository that is watched too.
const ROUTES: &str = "routes.toml";

/// How long the tree must stay quiet after a change before the build starts: an editor's save
/// is often several writes (a temporary file, a rename, a metadata change).
const QUIET: Duration = Duration::from_millis(200);

/// One batch of changes.
#[derive(Debug)]
pub struct Changes {
    /// When the first of them was seen.
    pub first: Instant,
    /// The files, relative to the repository.
    pub paths: BTreeSet<PathBuf>,
}

impl Changes {
    /// `a, b and 3 more`.
    pub fn summary(&self) -> String {
        let shown: Vec<String> = self
            .paths
            .iter()
            .take(3)
            .map(|p| p.display().to_string())
            .collect();
        let more = self.paths.len().saturating_sub(shown.len());
        if more == 0 {
            shown.join(", ")
        } else {
            format!("{} and {more} more", shown.join(", "))
        }
    }
}

/// Watches the source trees (inotify on Linux) until dropped.
pub struct SourceWatch {
    root: PathBuf,
    rx: mpsc::UnboundedReceiver<(Instant, PathBuf)>,
    _watcher: notify::RecommendedWatcher,
}

impl SourceWatch {
    /// Watches `functions/`, `shared/`, `migrations/` and `routes.toml` under `root`.
    pub fn start(root: &Path) -> Result<Self, String> {
        let (tx, rx) = mpsc::unbounded_channel();
        // A full event queue (inotify's overflow) loses which files changed: it counts as a
        // change to every tree, so a build runs and Cargo finds what changed.
        let everything = root.join(WATCHED[0]);
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let Ok(event) = event else { return };
                // Timed as it happens: a save during a build is queued until the build ends.
                let at = Instant::now();
                if event.need_rescan() {
                    let _ = tx.send((at, everything.clone()));
                } else if matches!(
                    event.kind,
                    EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_)
                ) {
                    for p in event.paths {
                        let _ = tx.send((at, p));
                    }
                }
            })
            .map_err(|e| format!("cannot watch the sources: {e}"))?;
        for dir in WATCHED {
            watcher
                .watch(&root.join(dir), RecursiveMode::Recursive)
                .map_err(|e| format!("cannot watch {dir}/: {e}"))?;
        }
        // The directory, not the file: an editor that saves by renaming a new file over it
        // would end a watch on the file itself.
        watcher
            .watch(root, RecursiveMode::NonRecursive)
            .map_err(|e| format!("cannot watch {ROUTES}: {e}"))?;
        Ok(Self {
            root: root.to_owned(),
            rx,
            _watcher: watcher,
        })
    }

    /// The next batch: waits for a change to a source file, then until the tree has been quiet
    /// for [`QUIET`].
    pub async fn next(&mut self) -> Option<Changes> {
        let mut paths = BTreeSet::new();
        let mut first = loop {
            let (at, p) = self.rx.recv().await?;
            if let Some(p) = source_file(&self.root, &p) {
                paths.insert(p);
                break at;
            }
        };
        loop {
            match tokio::time::timeout(QUIET, self.rx.recv()).await {
                Ok(Some((at, p))) => {
                    if let Some(p) = source_file(&self.root, &p) {
                        paths.insert(p);
                        first = first.min(at);
                    }
                }
                Ok(None) => return None,
                Err(_) => return Some(Changes { first, paths }),
            }
        }
    }
}

/// `path` relative to `root` when it is a file that may go into a build: `routes.toml`, or one
/// under the watched trees that is not under `target/`, not hidden, and not an editor's backup,
/// swap or probe file.
fn source_file(root: &Path, path: &Path) -> Option<PathBuf> {
    let rel = path.strip_prefix(root).ok()?;
    let top = rel.components().next()?.as_os_str().to_str()?;
    if rel.components().count() == 1 {
        return (top == ROUTES).then(|| rel.to_owned());
    }
    if !WATCHED.contains(&top) {
        return None;
    }
    let hidden_or_built = rel.components().any(|c| {
        let c = c.as_os_str().to_string_lossy();
        c == "target" || c.starts_with('.')
    });
    let name = rel.file_name()?.to_string_lossy();
    let scratch = name.ends_with('~')
        || name.ends_with(".swp")
        || name.ends_with(".swx")
        || name.ends_with(".tmp")
        || name.starts_with('#')
        || name == "4913";
    (!hidden_or_built && !scratch).then(|| rel.to_owned())
}

/// A file's identity: the build writes a new binary as a new file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    inode: u64,
    modified: std::time::SystemTime,
    len: u64,
}

/// The [`Stamp`] of `path`, `None` when it is missing.
pub fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        inode: m.ino(),
        modified: m.modified().ok()?,
        len: m.len(),
    })
}

/// Where [`BUILD_ARGS`] puts the binaries: the dev profile's directory of Cargo's target
/// directory (`CARGO_TARGET_DIR`, else `target/` in `root`).
pub fn build_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .filter(|d| !d.is_empty())
        .map_or_else(|| root.join("target"), |d| root.join(d))
        .join("debug")
}

/// Runs [`BUILD_ARGS`] in `root`, its output shown as Cargo prints it; whether it succeeded.
/// Cargo stops when the returned future is dropped (Ctrl-C) and dies with `tern`.
pub async fn build(root: &Path) -> Result<(), String> {
    /// Kills the build when dropped before it ended.
    struct Build(std::process::Child);
    impl Drop for Build {
        fn drop(&mut self) {
            if matches!(self.0.try_wait(), Ok(None)) {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = std::process::Command::new(cargo);
    cmd.args(BUILD_ARGS)
        .current_dir(root)
        .stdin(std::process::Stdio::null());
    tern_local::die_with_parent(&mut cmd, libc::SIGTERM);
    let mut build = Build(cmd.spawn().map_err(|e| format!("cannot run cargo: {e}"))?);
    let status = loop {
        match build.0.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => return Err(format!("cargo: {e}")),
        }
    };
    if status.success() {
        Ok(())
    } else {
        Err(format!("cargo {} {status}", BUILD_ARGS.join(" ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_told_from_scratch_files() {
        let root = Path::new("/r");
        let f = |p: &str| source_file(root, Path::new(p));
        assert_eq!(
            f("/r/functions/orders-get/src/app.rs"),
            Some(PathBuf::from("functions/orders-get/src/app.rs"))
        );
        assert!(f("/r/shared/tern/Cargo.toml").is_some());
        assert!(f("/r/migrations/0007_x.sql").is_some());
        assert_eq!(f("/r/routes.toml"), Some(PathBuf::from("routes.toml")));
        for scratch in [
            "/r/functions/web/src/.app.rs.swp",
            "/r/functions/web/src/app.rs~",
            "/r/functions/web/src/4913",
            "/r/functions/web/target/debug/x",
            "/r/shared/.git/HEAD",
            "/r/Cargo.lock",
            "/r/target/debug/orders-get",
            "/r/tests/tests/watch.rs",
            "/elsewhere/app.rs",
        ] {
            assert_eq!(f(scratch), None, "{scratch}");
        }
    }

    #[test]
    fn scripts_dev_builds_what_the_watch_rebuilds() {
        let script = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/dev"),
        )
        .expect("scripts/dev");
        let line = format!("cargo {}", BUILD_ARGS.join(" "));
        assert!(
            script.lines().any(|l| l.trim() == line),
            "scripts/dev does not run `{line}`"
        );
    }

    #[tokio::test]
    async fn a_save_is_one_batch() {
        let root = std::env::temp_dir().join(format!("tern-watch-{}", std::process::id()));
        for d in WATCHED {
            std::fs::create_dir_all(root.join(d).join("x/src")).unwrap();
        }
        std::fs::write(root.join("routes.toml"), "").unwrap();
        let mut w = SourceWatch::start(&root).unwrap();
        // What an editor does on save: a swap file, a temporary copy renamed over the file.
        let src = root.join("functions/x/src");
        std::fs::write(src.join(".app.rs.swp"), "swap").unwrap();
        std::fs::write(src.join("app.rs.tmp"), "fn a() {}").unwrap();
        std::fs::rename(src.join("app.rs.tmp"), src.join("app.rs")).unwrap();
        std::fs::write(root.join("shared/x/src/lib.rs"), "").unwrap();
        // routes.toml saved by renaming a new file over it (vim, many IDEs).
        std::fs::write(root.join("routes.toml.new"), "[project]").unwrap();
        std::fs::rename(root.join("routes.toml.new"), root.join("routes.toml")).unwrap();
        std::fs::write(root.join("Cargo.lock"), "").unwrap();
        let batch = tokio::time::timeout(Duration::from_secs(10), w.next())
            .await
            .expect("a batch")
            .expect("the watch is open");
        assert_eq!(
            batch.paths,
            BTreeSet::from([
                PathBuf::from("functions/x/src/app.rs"),
                PathBuf::from("routes.toml"),
                PathBuf::from("shared/x/src/lib.rs"),
            ])
        );
        assert!(
            tokio::time::timeout(QUIET * 3, w.next()).await.is_err(),
            "nothing more"
        );
        // A second save of routes.toml after the rename is still seen.
        std::fs::write(root.join("routes.toml"), "[project]\n").unwrap();
        let batch = tokio::time::timeout(Duration::from_secs(10), w.next())
            .await
            .expect("a batch")
            .expect("the watch is open");
        assert_eq!(batch.paths, BTreeSet::from([PathBuf::from("routes.toml")]));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
