//! The request files themselves: their YAML form, reading them bounded, writing them atomically, and
//! naming them.

use std::{
    collections::BTreeMap,
    fs,
    io::{self, Read, Write},
    os::unix::fs::{MetadataExt, OpenOptionsExt},
    path::Path,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use dbward_crds::{
    API_VERSION, ApiSpec, ApprovalPhase, ApprovalRequestSpec, ApprovalRequestStatus, Document, Metadata,
    parse_rfc3339,
};
use serde::{Deserialize, Serialize};

use super::MAX_FILE_BYTES;
use crate::approval::{ApprovalError, USED_AT_ANNOTATION};

/// Random characters at the end of a request's name.
const NAME_SUFFIX_LEN: usize = 10;
/// Temporary files left by a crashed writer are removed when a store opens the directory after this.
const STALE_TEMP: Duration = Duration::from_secs(600);
/// An ApprovalRequest file as written: the [`Document`] form, plus `metadata.creationTimestamp`,
/// which [`Metadata`] does not carry (a `Document` reading the file ignores it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RequestFile {
    pub(super) api_version: String,
    pub(super) kind: String,
    pub(super) metadata: FileMetadata,
    pub(super) spec: ApprovalRequestSpec,
    /// A file without status is Pending.
    #[serde(default)]
    pub(super) status: ApprovalRequestStatus,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct FileMetadata {
    pub(super) name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) creation_timestamp: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(super) labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(super) annotations: BTreeMap<String, String>,
}

/// One request as read from the directory.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The request's name (the file is `<name>.yaml`).
    pub name: String,
    /// Its metadata (name, labels, annotations).
    pub metadata: Metadata,
    /// What is asked, and by whom.
    pub spec: ApprovalRequestSpec,
    /// The decision so far (Pending when the file has no status).
    pub status: ApprovalRequestStatus,
    /// `metadata.creationTimestamp`, when the file has one.
    pub created_at: Option<SystemTime>,
    /// `spec.expiresAt`.
    pub expires_at: SystemTime,
    /// When it was decided: `status.decidedAt`, or for a phase set by hand without it, when the file
    /// was last modified. None while Pending.
    pub decided_at: Option<SystemTime>,
    /// When the file was last modified.
    pub modified: SystemTime,
    /// `metadata.creationTimestamp` as written, kept as is when the file is rewritten.
    pub(super) creation_timestamp: Option<String>,
}

impl Entry {
    /// The phase.
    pub fn phase(&self) -> ApprovalPhase {
        self.status.phase
    }

    /// Pending and not past its expiresAt at `now`: a request a person can still decide.
    pub fn is_open(&self, now: SystemTime) -> bool {
        self.status.phase == ApprovalPhase::Pending && self.expires_at > now
    }

    /// Whether its grant was used ([`USED_AT_ANNOTATION`]).
    pub fn is_used(&self) -> bool {
        self.metadata.annotations.contains_key(USED_AT_ANNOTATION)
    }

    /// The request as a [`Document`] (with its status).
    pub fn document(&self) -> Document<ApprovalRequestSpec, ApprovalRequestStatus> {
        Document {
            api_version: API_VERSION.to_owned(),
            kind: ApprovalRequestSpec::KIND.to_owned(),
            metadata: self.metadata.clone(),
            spec: self.spec.clone(),
            status: Some(self.status.clone()),
        }
    }

    pub(super) fn to_file(&self) -> RequestFile {
        RequestFile {
            api_version: API_VERSION.to_owned(),
            kind: ApprovalRequestSpec::KIND.to_owned(),
            metadata: FileMetadata {
                name: self.name.clone(),
                namespace: self.metadata.namespace.clone(),
                creation_timestamp: self.creation_timestamp.clone(),
                labels: self.metadata.labels.clone(),
                annotations: self.metadata.annotations.clone(),
            },
            spec: self.spec.clone(),
            status: self.status.clone(),
        }
    }

    /// Checks a parsed file and makes it an entry; `name` is the file's stem.
    pub(super) fn from_file(
        name: &str,
        file: RequestFile,
        modified: SystemTime,
        path: &Path,
    ) -> Result<Self, ApprovalError> {
        let invalid = |message: String| ApprovalError::Invalid {
            path: path.to_owned(),
            message,
        };
        if file.api_version != API_VERSION {
            return Err(invalid(format!(
                "apiVersion is {:?}, expected {API_VERSION:?}",
                file.api_version
            )));
        }
        if file.kind != ApprovalRequestSpec::KIND {
            return Err(invalid(format!(
                "kind is {:?}, expected \"ApprovalRequest\"",
                file.kind
            )));
        }
        if file.metadata.name != name {
            return Err(invalid(format!(
                "metadata.name is {:?} but the file is named {name}.yaml",
                file.metadata.name
            )));
        }
        if let Err(errors) = file.spec.validate() {
            let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
            return Err(invalid(list.join("; ")));
        }
        let time =
            |field: &str, value: &str| parse_rfc3339(value).map_err(|e| invalid(format!("{field}: {e}")));
        let expires_at = time("spec.expiresAt", &file.spec.expires_at)?;
        let created_at = match &file.metadata.creation_timestamp {
            Some(t) => Some(time("metadata.creationTimestamp", t)?),
            None => None,
        };
        let decided_at = match (&file.status.decided_at, file.status.phase.is_final()) {
            (Some(t), _) => Some(time("status.decidedAt", t)?),
            (None, true) => Some(modified),
            (None, false) => None,
        };
        if let Some(used) = file.metadata.annotations.get(USED_AT_ANNOTATION) {
            time(&format!("metadata.annotations[{USED_AT_ANNOTATION}]"), used)?;
        }
        Ok(Self {
            name: name.to_owned(),
            metadata: Metadata {
                name: file.metadata.name,
                namespace: file.metadata.namespace,
                labels: file.metadata.labels,
                annotations: file.metadata.annotations,
            },
            spec: file.spec,
            status: file.status,
            created_at,
            expires_at,
            decided_at,
            modified,
            creation_timestamp: file.metadata.creation_timestamp,
        })
    }
}

/// What identifies a version of a file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: i64,
    mtime_nsec: i64,
}

impl Stamp {
    pub(super) fn of(m: &fs::Metadata) -> Self {
        Self {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime: m.mtime(),
            mtime_nsec: m.mtime_nsec(),
        }
    }
}

/// One look at a file.
pub(super) enum FileState {
    Missing,
    /// It exists but is not a readable, valid request.
    Broken(Stamp, ApprovalError),
    Ok(Stamp, Box<Entry>),
}

pub(super) fn io_error(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> ApprovalError {
    let path = path.to_owned();
    move |error| ApprovalError::Io { what, path, error }
}

/// Reads and checks one request file: bounded, a regular file, valid YAML, a valid ApprovalRequest
/// named like the file. I/O errors other than "not found" are errors.
pub(super) fn read_file(path: &Path, name: &str) -> Result<FileState, ApprovalError> {
    let what = "read the approval request file";
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(FileState::Missing),
        Err(e) => return Err(io_error(what, path)(e)),
    };
    if let Some(e) = not_readable(&meta, path) {
        return Ok(FileState::Broken(Stamp::of(&meta), e));
    }
    let mut file = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(FileState::Missing),
        Err(e) => return Err(io_error(what, path)(e)),
    };
    read_opened(&mut file, path, name)
}

/// Reads and checks an opened request file. Its own metadata decides (the name may point elsewhere by
/// now than when it was looked at): a regular file, at most [`MAX_FILE_BYTES`].
pub(super) fn read_opened(file: &mut fs::File, path: &Path, name: &str) -> Result<FileState, ApprovalError> {
    let what = "read the approval request file";
    let meta = file.metadata().map_err(io_error(what, path))?;
    let stamp = Stamp::of(&meta);
    if let Some(e) = not_readable(&meta, path) {
        return Ok(FileState::Broken(stamp, e));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io_error(what, path))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        // It grew while being read.
        return Ok(FileState::Broken(stamp, too_large(path)));
    }
    let modified = meta.modified().unwrap_or(UNIX_EPOCH);
    let parsed = std::str::from_utf8(&bytes)
        .map_err(|_| "not UTF-8 text".to_owned())
        .and_then(|text| {
            // No source snippet in the message: it would quote the file, SQL included.
            let options = serde_saphyr::options! { with_snippet: false };
            serde_saphyr::from_str_with_options::<RequestFile>(text, options).map_err(|e| e.to_string())
        });
    let entry = parsed
        .map_err(|message| ApprovalError::Parse {
            path: path.to_owned(),
            message,
        })
        .and_then(|file| Entry::from_file(name, file, modified, path));
    Ok(match entry {
        Ok(entry) => FileState::Ok(stamp, Box::new(entry)),
        Err(e) => FileState::Broken(stamp, e),
    })
}

/// Why a file with metadata `meta` is not read as a request: not a regular file, or too large.
fn not_readable(meta: &fs::Metadata, path: &Path) -> Option<ApprovalError> {
    if !meta.is_file() {
        Some(ApprovalError::Invalid {
            path: path.to_owned(),
            message: "not a regular file".to_owned(),
        })
    } else if meta.len() > MAX_FILE_BYTES {
        Some(too_large(path))
    } else {
        None
    }
}

fn too_large(path: &Path) -> ApprovalError {
    ApprovalError::TooLarge {
        path: path.to_owned(),
        max: MAX_FILE_BYTES,
    }
}

/// Writes `bytes` to a new file at `tmp` (mode 0600) and fsyncs it.
pub(super) fn write_temp(tmp: &Path, bytes: &[u8]) -> Result<(), ApprovalError> {
    let what = "write a temporary approval request file";
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(tmp)
        .map_err(io_error(what, tmp))?;
    file.write_all(bytes).map_err(io_error(what, tmp))?;
    file.sync_all().map_err(io_error(what, tmp))
}

/// Puts `tmp` at `path` unless `path` exists (a hard link is atomic and never overwrites; where the
/// file system has no hard links, a check then a rename). False when `path` exists.
pub(super) fn create_from(tmp: &Path, path: &Path) -> Result<bool, ApprovalError> {
    let what = "create the approval request file";
    match fs::hard_link(tmp, path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(_) => {
            if fs::symlink_metadata(path).is_ok() {
                return Ok(false);
            }
            fs::rename(tmp, path).map_err(io_error(what, path))?;
            Ok(true)
        }
    }
}

/// Removes temporary files a crashed writer left (`.<name>.yaml.<random>.tmp`, older than
/// [`STALE_TEMP`]). Best effort.
pub(super) fn remove_stale_temp_files(dir: &Path) {
    let Ok(items) = fs::read_dir(dir) else {
        return;
    };
    let now = SystemTime::now();
    for item in items.flatten() {
        let file_name = item.file_name();
        let Some(f) = file_name.to_str() else {
            continue;
        };
        if !(f.starts_with('.') && f.ends_with(".tmp") && f.contains(".yaml.")) {
            continue;
        }
        let stale = item
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| now.duration_since(t).is_ok_and(|age| age > STALE_TEMP));
        if stale {
            let _ = fs::remove_file(item.path());
        }
    }
}

/// A new request name: `<connection>-<10 random lower-case letters and digits>`, the connection part
/// made a DNS label and cut so that the whole is at most 63 characters.
pub(super) fn new_name(connection: &str) -> Result<String, ApprovalError> {
    let mut prefix: String = connection
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .collect();
    prefix.truncate(63 - 1 - NAME_SUFFIX_LEN);
    let prefix = prefix.trim_matches('-');
    let prefix = if prefix.is_empty() { "approval" } else { prefix };
    Ok(format!("{prefix}-{}", random_suffix()?))
}

/// [`NAME_SUFFIX_LEN`] random characters from `[a-z0-9]`, uniformly (bytes ≥ 252 are drawn again).
pub(super) fn random_suffix() -> Result<String, ApprovalError> {
    const ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = String::with_capacity(NAME_SUFFIX_LEN);
    while out.len() < NAME_SUFFIX_LEN {
        let mut bytes = [0u8; 16];
        aws_lc_rs::rand::fill(&mut bytes).map_err(|_| ApprovalError::Random)?;
        for b in bytes {
            if b < 252 && out.len() < NAME_SUFFIX_LEN {
                out.push(char::from(ALPHABET[usize::from(b % 36)]));
            }
        }
    }
    Ok(out)
}

/// `t` rounded up to a whole second (the files hold whole seconds; a request never closes early).
pub(super) fn round_up_to_second(t: SystemTime) -> SystemTime {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) if d.subsec_nanos() > 0 => UNIX_EPOCH + Duration::from_secs(d.as_secs().saturating_add(1)),
        _ => t,
    }
}

/// `s` as one shell word: as is when it is plain, else in single quotes.
pub(crate) fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+:@%,=".contains(&b));
    if plain {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}
