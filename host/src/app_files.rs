//! Where an app's files live, and the rule that they stay there.
//!
//! An app named `chat` is `<apps>/chat.wasm`, with optional settings in
//! `<apps>/chat.toml` and an optional folder `<apps>/chat/` holding
//! `public/` (static files), `templates/` and whatever its `data_dir`
//! names. Everything in that folder is the tenant's, and the tenant may be
//! hostile: the folder itself, and every file the host reads from it, must
//! resolve inside it. Files are opened through a capability-confined
//! directory handle ([`cap_std`]), so a symbolic link or `..` that leads
//! out of the folder is refused at the moment of opening, not only when
//! checked.

use std::path::{Component, Path, PathBuf};

use anyhow::Context;
use cap_std::ambient_authority;
use cap_std::fs::Dir;

/// Most public files listed per app.
pub(crate) const MAX_LISTED_FILES: usize = 10_000;
/// Deepest folder listed below the public folder.
pub(crate) const MAX_LISTED_DEPTH: usize = 16;

/// The files of one app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AppFiles {
    /// The component: `<apps>/<app>.wasm`.
    component: PathBuf,
}

impl AppFiles {
    /// Whether `path` is an app's component: a `.wasm` file whose name is
    /// not hidden. The one definition the loader and the watcher share, so
    /// a file is served exactly when changes to it are followed.
    pub(crate) fn is_component(path: &Path) -> bool {
        let visible = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| !n.starts_with('.'));
        visible && path.extension().is_some_and(|e| e == "wasm")
    }

    /// Whether `path` is an app's settings file (`<app>.toml`).
    pub(crate) fn is_settings(path: &Path) -> bool {
        path.extension().is_some_and(|e| e == "toml")
    }

    /// The component a changed file belongs to: itself, or the app whose
    /// settings it is; `None` for any other file.
    pub(crate) fn component_of(path: &Path) -> Option<PathBuf> {
        let component = if Self::is_settings(path) {
            path.with_extension("wasm")
        } else {
            path.to_path_buf()
        };
        Self::is_component(&component).then_some(component)
    }

    /// The layout of the app whose component is `component`.
    pub(crate) fn of(component: &Path) -> Self {
        Self {
            component: component.to_path_buf(),
        }
    }

    /// The app name of a component file: its file name without `.wasm`. Only
    /// ASCII letters, digits, `_`, `-` and `.`: the name labels metrics, names
    /// rooms and channels, and is written in log lines.
    pub(crate) fn name(&self) -> anyhow::Result<String> {
        let name = self
            .component
            .file_stem()
            .and_then(|s| s.to_str())
            .context("the file name is not valid UTF-8")?;
        let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
        anyhow::ensure!(
            !name.is_empty() && !name.starts_with('.') && name.chars().all(plain),
            "app names are ASCII letters, digits, '_', '-' and '.' (got {name:?})"
        );
        Ok(name.to_string())
    }

    /// Its settings file: `<apps>/<app>.toml`.
    pub(crate) fn settings(&self) -> PathBuf {
        self.component.with_extension("toml")
    }

    /// Its folder: `<apps>/<app>/`.
    pub(crate) fn folder(&self) -> PathBuf {
        self.component.with_extension("")
    }

    /// Its static files' folder, relative to [`folder`](Self::folder).
    pub(crate) const PUBLIC: &'static str = "public";

    /// Its templates' folder, relative to [`folder`](Self::folder).
    pub(crate) const TEMPLATES: &'static str = "templates";

    /// Opens the app's folder, or its `sub`-folder, confined: `None` if it
    /// does not exist. The folder must be a real folder of the apps folder
    /// (not a link to elsewhere), and `sub` must resolve inside it.
    pub(crate) fn open(&self, sub: &str) -> std::io::Result<Option<Dir>> {
        let Some(apps) = self.component.parent() else {
            return Ok(None);
        };
        let apps = Dir::open_ambient_dir(apps, ambient_authority())?;
        let Some(name) = self.folder().file_name().map(PathBuf::from) else {
            return Ok(None);
        };
        let folder = match apps.open_dir(&name) {
            Ok(folder) => folder,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(err),
        };
        if sub.is_empty() {
            return Ok(Some(folder));
        }
        match folder.open_dir(sub) {
            Ok(dir) => Ok(Some(dir)),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// The files of its public folder, as `/`-separated paths relative to
    /// it, sorted; hidden files and folders are left out, and the listing
    /// stops at [`MAX_LISTED_FILES`] (with a warning) or
    /// [`MAX_LISTED_DEPTH`] folders down.
    pub(crate) fn public_files(&self) -> Vec<String> {
        let Ok(Some(public)) = self.open(Self::PUBLIC) else {
            return Vec::new();
        };
        let mut files = Vec::new();
        let mut pending = vec![(public, String::new(), 0)];
        while let Some((dir, prefix, depth)) = pending.pop() {
            let Ok(entries) = dir.entries() else { continue };
            for entry in entries.flatten() {
                let Ok(name) = entry.file_name().into_string() else {
                    continue;
                };
                if name.starts_with('.') {
                    continue;
                }
                let Ok(kind) = entry.file_type() else {
                    continue;
                };
                let path = format!("{prefix}{name}");
                if kind.is_dir() && depth < MAX_LISTED_DEPTH {
                    if let Ok(sub) = entry.open_dir() {
                        pending.push((sub, format!("{path}/"), depth + 1));
                    }
                } else if kind.is_file() {
                    if files.len() == MAX_LISTED_FILES {
                        tracing::warn!(folder = %self.folder().display(), "more than {MAX_LISTED_FILES} public files; the rest are not listed");
                        files.sort();
                        return files;
                    }
                    files.push(path);
                }
            }
        }
        files.sort();
        files
    }

    /// Resolves `relative` (from `<app>.toml`) to a folder inside the
    /// app's folder; refuses absolute paths, `..`, and anything that
    /// resolves elsewhere (through links).
    pub(crate) fn inside(&self, relative: &Path) -> anyhow::Result<PathBuf> {
        let plain = relative
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
        anyhow::ensure!(
            plain && !relative.as_os_str().is_empty(),
            "{} must be a relative path inside the app's folder, without '..'",
            relative.display()
        );
        let folder = self.folder();
        let apps = self
            .component
            .parent()
            .map(Path::canonicalize)
            .transpose()?
            .unwrap_or_default();
        let root = folder
            .canonicalize()
            .map_err(|err| anyhow::anyhow!("the app's folder {}: {err}", folder.display()))?;
        anyhow::ensure!(
            root.parent() == Some(apps.as_path()),
            "the app's folder {} must be a folder of the apps folder, not a link elsewhere",
            folder.display()
        );
        let target = folder.join(relative);
        let resolved = target
            .canonicalize()
            .map_err(|err| anyhow::anyhow!("{}: {err}", target.display()))?;
        anyhow::ensure!(
            resolved.starts_with(&root) && resolved.is_dir(),
            "{} is not a folder inside the app's folder",
            target.display()
        );
        Ok(resolved)
    }
}

/// The components of a folder ([`AppFiles::is_component`]), sorted by
/// name, so load order is stable.
pub(crate) fn component_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)
        .with_context(|| format!("cannot read the apps folder {}", dir.display()))?
    {
        let path = entry?.path();
        if AppFiles::is_component(&path) && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_component_is_a_visible_wasm_file() {
        assert!(AppFiles::is_component(Path::new("/apps/chat.wasm")));
        assert!(!AppFiles::is_component(Path::new("/apps/.chat.wasm")));
        assert!(!AppFiles::is_component(Path::new("/apps/chat.toml")));
        assert!(!AppFiles::is_component(Path::new("/apps/chat")));
        assert!(AppFiles::is_settings(Path::new("/apps/chat.toml")));
    }

    fn app() -> (tempfile::TempDir, AppFiles) {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("chat/public/css")).unwrap();
        std::fs::create_dir_all(root.path().join("chat/data")).unwrap();
        std::fs::write(root.path().join("chat/public/css/a.css"), "a").unwrap();
        std::fs::write(root.path().join("secret.txt"), "secret").unwrap();
        let layout = AppFiles::of(&root.path().join("chat.wasm"));
        (root, layout)
    }

    #[test]
    fn components_are_visible_wasm_files_and_settings_belong_to_theirs() {
        assert!(AppFiles::is_component(Path::new("/a/chat.wasm")));
        assert!(!AppFiles::is_component(Path::new("/a/.chat.wasm")));
        assert!(!AppFiles::is_component(Path::new("/a/chat.txt")));
        let chat = Some(PathBuf::from("/a/chat.wasm"));
        assert_eq!(AppFiles::component_of(Path::new("/a/chat.toml")), chat);
        assert_eq!(AppFiles::component_of(Path::new("/a/chat.wasm")), chat);
        assert_eq!(AppFiles::component_of(Path::new("/a/.chat.toml")), None);
        assert_eq!(AppFiles::component_of(Path::new("/a/notes.md")), None);
    }

    #[test]
    fn names_follow_the_component() {
        let layout = AppFiles::of(Path::new("/srv/apps/chat.wasm"));
        assert_eq!(layout.settings(), Path::new("/srv/apps/chat.toml"));
        assert_eq!(layout.folder(), Path::new("/srv/apps/chat"));
    }

    #[test]
    fn files_open_inside_and_links_out_are_refused() {
        let (root, layout) = app();
        let public = layout.open(AppFiles::PUBLIC).unwrap().unwrap();
        assert_eq!(public.read_to_string("css/a.css").unwrap(), "a");
        std::os::unix::fs::symlink(
            root.path().join("secret.txt"),
            root.path().join("chat/public/s"),
        )
        .unwrap();
        std::os::unix::fs::symlink("/etc", root.path().join("chat/public/etc")).unwrap();
        assert!(public.read_to_string("s").is_err());
        assert!(public.read_to_string("etc/passwd").is_err());
        assert!(public.read_to_string("../../secret.txt").is_err());
        assert!(layout.open(AppFiles::TEMPLATES).unwrap().is_none());
        // A public folder that is itself a link out.
        std::os::unix::fs::symlink("/etc", root.path().join("chat/templates")).unwrap();
        assert!(layout.open(AppFiles::TEMPLATES).is_err());
    }

    #[test]
    fn an_app_folder_that_links_out_is_refused() {
        let root = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/etc", root.path().join("evil")).unwrap();
        let layout = AppFiles::of(&root.path().join("evil.wasm"));
        assert!(layout.open("").is_err());
        assert!(layout.inside(Path::new(".")).is_err());
    }

    #[test]
    fn data_dirs_stay_inside() {
        let (root, layout) = app();
        assert!(
            layout
                .inside(Path::new("data"))
                .unwrap()
                .ends_with("chat/data")
        );
        std::os::unix::fs::symlink("/etc", root.path().join("chat/out")).unwrap();
        for refused in ["/etc", "../chat/data", "data/..", "out", "", "missing"] {
            assert!(layout.inside(Path::new(refused)).is_err(), "{refused}");
        }
    }
}
