//! An app's templates and public files packed into its component, so one
//! file is one version: deploying, swapping and rolling back are one
//! rename, and a version's templates and statics change with its code.
//!
//! `tina4-wasm build` packs the app's `templates/` and `public/` folders
//! (`src/templates/` and `src/public/` in a Tina4 project) into a custom
//! section named `tina4-files` at the end of the component; wasmtime
//! ignores it. Its payload is `T4F1`, then for each file: the length of
//! its path (u16, little-endian), the path (UTF-8, `/`-separated, starting
//! `templates/` or `public/`), the length of its content (u32,
//! little-endian) and the content. A component with the section serves
//! its packed files only; one without serves the folder beside it
//! (`<apps>/<app>/templates`, `public`), as in development.
//!
//! The component is the tenant's, so the section is read as hostile input:
//! every path must be a plain relative path into one of the two folders,
//! each once, and the files are bounded in count and in bytes.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use wasm_encoder::Encode;

/// The custom section's name.
pub(crate) const SECTION: &str = "tina4-files";

/// The payload's first bytes: the format and its version.
const MAGIC: &[u8; 4] = b"T4F1";

/// Most files one component may pack.
pub(crate) const MAX_FILES: usize = 10_000;

/// Most bytes of files one component may pack: they are held in memory
/// while the version is loaded.
pub(crate) const MAX_BYTES: usize = 64 << 20;

/// The folders a component may pack, as its paths start.
pub(crate) const FOLDERS: [&str; 2] = ["templates", "public"];

/// The files a component packs, by path (`templates/room.html`).
#[derive(Debug, Default)]
pub(crate) struct Bundle {
    /// Each file's content, by its path in the bundle.
    files: BTreeMap<String, Bytes>,
}

impl Bundle {
    /// The bundle packed into `component`, if it has one.
    pub(crate) fn read(component: &[u8]) -> anyhow::Result<Option<Self>> {
        let mut found = None;
        for payload in wasmparser::Parser::new(0).parse_all(component) {
            // A component that does not parse is the compiler's to report,
            // in its words.
            let Ok(payload) = payload else { break };
            let wasmparser::Payload::CustomSection(section) = payload else {
                continue;
            };
            if section.name() != SECTION {
                continue;
            }
            ensure!(found.is_none(), "more than one {SECTION} section");
            found = Some(Self::decode(section.data())?);
        }
        Ok(found)
    }

    /// Parses a payload, refusing anything but plain paths into the two
    /// folders, each once, within the bounds.
    fn decode(mut data: &[u8]) -> anyhow::Result<Self> {
        ensure!(
            data.starts_with(MAGIC),
            "{SECTION}: not a format this host reads"
        );
        data = &data[MAGIC.len()..];
        let mut bundle = Self::default();
        let mut total = 0usize;
        while !data.is_empty() {
            let path_len = u16::from_le_bytes(take(&mut data, 2)?.try_into()?) as usize;
            let path = std::str::from_utf8(take(&mut data, path_len)?)
                .context("a packed path is not UTF-8")?;
            check_path(path)?;
            let len = u32::from_le_bytes(take(&mut data, 4)?.try_into()?) as usize;
            total = total.saturating_add(len);
            ensure!(total <= MAX_BYTES, "packed files over {MAX_BYTES} bytes");
            ensure!(
                bundle.files.len() < MAX_FILES,
                "more than {MAX_FILES} packed files"
            );
            let content = Bytes::copy_from_slice(take(&mut data, len)?);
            ensure!(
                bundle.files.insert(path.to_string(), content).is_none(),
                "{path} is packed twice"
            );
        }
        Ok(bundle)
    }

    /// The content of `relative` in `folder` (`"templates"`, `"room.html"`).
    pub(crate) fn file(&self, folder: &str, relative: &str) -> Option<&Bytes> {
        self.files.get(&format!("{folder}/{relative}"))
    }

    /// Whether anything is packed in `folder`.
    pub(crate) fn has(&self, folder: &str) -> bool {
        self.list(folder).next().is_some()
    }

    /// The paths packed in `folder`, relative to it, sorted.
    pub(crate) fn list<'a>(&'a self, folder: &str) -> impl Iterator<Item = &'a str> + 'a {
        let prefix = format!("{folder}/");
        self.files
            .keys()
            .filter_map(move |path| path.strip_prefix(&prefix))
    }
}

/// Takes `n` bytes off the front of `data`.
fn take<'a>(data: &mut &'a [u8], n: usize) -> anyhow::Result<&'a [u8]> {
    ensure!(data.len() >= n, "{SECTION}: truncated");
    let (head, rest) = data.split_at(n);
    *data = rest;
    Ok(head)
}

/// A packed path: `<folder>/<segments>`, each segment a plain name.
fn check_path(path: &str) -> anyhow::Result<()> {
    let (folder, rest) = path.split_once('/').unwrap_or((path, ""));
    let plain = |s: &str| !(s.is_empty() || s == "." || s == ".." || s.contains(['\\', '\0']));
    ensure!(
        FOLDERS.contains(&folder) && rest.split('/').all(plain),
        "{SECTION}: {path:?} is not a path in templates/ or public/"
    );
    Ok(())
}

/// Packs the files under each `(folder, name)` (links not followed,
/// hidden entries left out) as `name/...`, and appends them to `component`
/// as its `tina4-files` section. Nothing is appended if there are no files.
pub(crate) fn pack_into(component: &mut Vec<u8>, folders: &[(&Path, &str)]) -> anyhow::Result<()> {
    let mut payload = MAGIC.to_vec();
    let (mut count, mut total) = (0usize, 0usize);
    for (dir, name) in folders {
        ensure!(
            FOLDERS.contains(name),
            "only templates and public are packed"
        );
        for (relative, file) in files_below(dir)? {
            let path = format!("{name}/{relative}");
            check_path(&path)?;
            let content =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            count += 1;
            total += content.len();
            ensure!(count <= MAX_FILES, "more than {MAX_FILES} files to pack");
            ensure!(
                total <= MAX_BYTES,
                "more than {MAX_BYTES} bytes of files to pack"
            );
            payload.extend_from_slice(&u16::try_from(path.len())?.to_le_bytes());
            payload.extend_from_slice(path.as_bytes());
            payload.extend_from_slice(&u32::try_from(content.len())?.to_le_bytes());
            payload.extend_from_slice(&content);
        }
    }
    if count == 0 {
        return Ok(());
    }
    let mut section = Vec::new();
    SECTION.encode(&mut section);
    section.extend_from_slice(&payload);
    // A custom section: id 0, then its size and contents.
    component.push(0);
    section.as_slice().encode(component);
    Ok(())
}

/// The regular files below `dir`, as (`/`-separated path relative to it,
/// file), sorted; links are not followed and hidden entries are left out.
fn files_below(dir: &Path) -> anyhow::Result<Vec<(String, std::path::PathBuf)>> {
    let mut files = Vec::new();
    let mut pending = vec![(dir.to_path_buf(), String::new())];
    while let Some((folder, prefix)) = pending.pop() {
        let entries = std::fs::read_dir(&folder)
            .with_context(|| format!("cannot read {}", folder.display()))?;
        for entry in entries {
            let entry = entry?;
            let Ok(name) = entry.file_name().into_string() else {
                bail!("{}: a file name that is not UTF-8", folder.display());
            };
            if name.starts_with('.') {
                continue;
            }
            let kind = entry.file_type()?;
            if kind.is_dir() {
                pending.push((entry.path(), format!("{prefix}{name}/")));
            } else if kind.is_file() {
                files.push((format!("{prefix}{name}"), entry.path()));
            }
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smallest valid component: the header alone.
    const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";

    /// A component with a `tina4-files` section of `payload`.
    fn with_section(payload: &[u8]) -> Vec<u8> {
        let mut section = Vec::new();
        SECTION.encode(&mut section);
        section.extend_from_slice(payload);
        let mut component = EMPTY_COMPONENT.to_vec();
        component.push(0);
        section.as_slice().encode(&mut component);
        component
    }

    /// One packed entry.
    fn entry(path: &str, content: &[u8]) -> Vec<u8> {
        let mut bytes = (path.len() as u16).to_le_bytes().to_vec();
        bytes.extend_from_slice(path.as_bytes());
        bytes.extend_from_slice(&(content.len() as u32).to_le_bytes());
        bytes.extend_from_slice(content);
        bytes
    }

    #[test]
    fn folders_pack_into_a_section_that_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let templates = dir.path().join("templates");
        std::fs::create_dir_all(templates.join("partials")).unwrap();
        std::fs::write(templates.join("room.html"), "Room {{ room }}").unwrap();
        std::fs::write(templates.join("partials/nav.html"), "nav").unwrap();
        std::fs::write(templates.join(".swap.html"), "hidden").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", templates.join("passwd")).unwrap();
        let mut component = EMPTY_COMPONENT.to_vec();
        pack_into(&mut component, &[(&templates, "templates")]).unwrap();
        let bundle = Bundle::read(&component).unwrap().unwrap();
        assert_eq!(
            bundle.list("templates").collect::<Vec<_>>(),
            ["partials/nav.html", "room.html"]
        );
        assert_eq!(
            &bundle.file("templates", "room.html").unwrap()[..],
            b"Room {{ room }}"
        );
        assert!(!bundle.has("public"));
        assert!(
            wasmparser::Validator::new()
                .validate_all(&component)
                .is_ok()
        );
        // Nothing to pack: the component is left as it was.
        let public = dir.path().join("public");
        std::fs::create_dir(&public).unwrap();
        let mut plain = EMPTY_COMPONENT.to_vec();
        pack_into(&mut plain, &[(&public, "public")]).unwrap();
        assert_eq!(plain, EMPTY_COMPONENT);
        assert!(Bundle::read(EMPTY_COMPONENT).unwrap().is_none());
        // Bytes that do not parse are the compiler's to report.
        assert!(Bundle::read(b"\0asm\x0d\0\x01\0broken").unwrap().is_none());
    }

    #[test]
    fn hostile_sections_are_refused_with_a_reason() {
        let refused = |payload: Vec<u8>| {
            let err = Bundle::read(&with_section(&payload)).unwrap_err();
            format!("{err:#}")
        };
        let packed = |entries: &[Vec<u8>]| [MAGIC.to_vec(), entries.concat()].concat();
        assert!(refused(b"XXXX".to_vec()).contains("not a format"));
        for path in [
            "templates/../../etc/passwd",
            "/etc/passwd",
            "data/secret",
            "templates/",
            "public/a\\b",
            "templates//x",
        ] {
            let why = refused(packed(&[entry(path, b"x")]));
            assert!(why.contains("is not a path"), "{path}: {why}");
        }
        let twice = refused(packed(&[entry("public/a", b"1"), entry("public/a", b"2")]));
        assert!(twice.contains("packed twice"), "{twice}");
        let mut truncated = packed(&[entry("public/a", b"12345")]);
        truncated.truncate(truncated.len() - 2);
        assert!(refused(truncated).contains("truncated"));
        let mut huge = MAGIC.to_vec();
        huge.extend_from_slice(&8u16.to_le_bytes());
        huge.extend_from_slice(b"public/a");
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(refused(huge).contains("over"));
    }
}
