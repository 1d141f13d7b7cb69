//! Reading the whole directory: every request file, re-reading only those that changed since the last
//! scan. Files may appear, change or vanish while it reads (another process deleting requests past
//! their retention, a person saving): a file gone before it is read is skipped, never an error.

use std::{collections::HashSet, fs, io, sync::Arc};

use super::{Entry, Inner, file::FileState, file::Stamp, file::io_error, file::read_file, lock, warn_broken};
use crate::approval::{ApprovalError, is_valid_name};

/// The directory's readable requests and the names of its broken files.
pub(super) struct Scan {
    pub(super) entries: Vec<Arc<Entry>>,
    pub(super) broken: Vec<(String, String)>,
}

impl Inner {
    /// Reads every request file, re-reading only those that changed since the last scan.
    pub(super) fn scan(&self) -> Result<Scan, ApprovalError> {
        let what = "list the approvals directory";
        let dir = fs::read_dir(&self.dir).map_err(io_error(what, &self.dir))?;
        let mut cache = lock(&self.cache);
        let mut seen = HashSet::new();
        let mut scan = Scan {
            entries: Vec::new(),
            broken: Vec::new(),
        };
        for item in dir {
            let item = item.map_err(io_error(what, &self.dir))?;
            let file_name = item.file_name();
            let Some(name) = file_name.to_str().and_then(|f| f.strip_suffix(".yaml")) else {
                continue;
            };
            if !is_valid_name(name) {
                continue;
            }
            let path = item.path();
            let meta = match fs::symlink_metadata(&path) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => {
                    scan.broken.push((name.to_owned(), e.to_string()));
                    continue;
                }
            };
            seen.insert(name.to_owned());
            let stamp = Stamp::of(&meta);
            if let Some((cached_stamp, cached)) = cache.get(name)
                && *cached_stamp == stamp
            {
                match cached {
                    Ok(entry) => scan.entries.push(entry.clone()),
                    Err(why) => scan.broken.push((name.to_owned(), why.clone())),
                }
                continue;
            }
            match read_file(&path, name) {
                Ok(FileState::Missing) => {
                    seen.remove(name);
                }
                Ok(FileState::Ok(stamp, entry)) => {
                    let entry: Arc<Entry> = Arc::from(entry);
                    scan.entries.push(entry.clone());
                    cache.insert(name.to_owned(), (stamp, Ok(entry)));
                }
                Ok(FileState::Broken(stamp, e)) => {
                    warn_broken(name, &e);
                    scan.broken.push((name.to_owned(), e.to_string()));
                    cache.insert(name.to_owned(), (stamp, Err(e.to_string())));
                }
                Err(e) => scan.broken.push((name.to_owned(), e.to_string())),
            }
        }
        cache.retain(|name, _| seen.contains(name));
        Ok(scan)
    }
}
