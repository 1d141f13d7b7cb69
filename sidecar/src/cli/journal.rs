//! The session journal on the command line: `run`'s journal options and `dbward-sidecar replay`.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::{Context, Result};
use clap::Args;
use tracing::{info, warn};

use crate::journal::{
    Journal, JournalConfig,
    replay::{self, ReplayOptions},
};

/// Where the injected sidecar keeps its journal: the `dbward-journal` volume.
pub const OPERATOR_JOURNAL_DIR: &str = "/var/lib/dbward/journal";

/// `run`'s journal options.
#[derive(Debug, Clone, Args)]
pub struct JournalArgs {
    /// Directory of the session journal [default: `journal` next to --config; with --operator
    /// /var/lib/dbward/journal]. `none` keeps no files (then only --journal-stdout records sessions).
    #[arg(long, env = "DBWARD_JOURNAL", value_name = "DIR")]
    pub journal: Option<PathBuf>,
    /// Also write every journal line to stdout, for log collectors.
    #[arg(long, env = "DBWARD_JOURNAL_STDOUT")]
    pub journal_stdout: bool,
    /// Keep at most this much journal on disk; the oldest segments are deleted first. Bytes, or with
    /// a suffix Ki, Mi, Gi.
    #[arg(long, env = "DBWARD_JOURNAL_MAX", default_value = "1Gi", value_parser = parse_size)]
    pub journal_max: u64,
}

/// Bytes: `1048576`, `512Ki`, `64Mi`, `1Gi`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (digits, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, ""),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a size: write e.g. 1Gi, 500Mi or 1048576"))?;
    let shift = match unit {
        "" => 0,
        "Ki" => 10,
        "Mi" => 20,
        "Gi" => 30,
        "Ti" => 40,
        _ => return Err(format!("{s:?}: the unit must be Ki, Mi, Gi or Ti")),
    };
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{s:?} is too large"))
}

impl JournalArgs {
    /// Opens the journal `run` keeps: in `default_dir` unless --journal says otherwise. `None` when
    /// neither files nor stdout are wanted.
    pub fn open(&self, default_dir: &Path) -> Result<Option<Arc<Journal>>> {
        let dir = match self.journal.as_deref() {
            Some(p) if p == Path::new("none") => None,
            Some(p) => Some(p.to_owned()),
            None => Some(default_dir.to_owned()),
        };
        if dir.is_none() && !self.journal_stdout {
            warn!("--journal none without --journal-stdout: sessions are not recorded");
            return Ok(None);
        }
        let segment_bytes = (self.journal_max / 8).clamp(64 << 10, 64 << 20);
        let config = JournalConfig {
            dir: dir.clone(),
            stdout: self.journal_stdout,
            segment_bytes,
            max_bytes: self.journal_max.max(segment_bytes),
            ..JournalConfig::default()
        };
        let journal = Journal::open(config).context("opening the session journal")?;
        if let Some(dir) = &dir {
            info!(dir = %dir.display(), stdout = self.journal_stdout, "sessions are recorded in the journal");
        }
        Ok(Some(journal))
    }
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Journal directories or segment files [default: $DBWARD_JOURNAL, else ./journal].
    pub paths: Vec<PathBuf>,
    /// Show this session (its id or a unique prefix) as a transcript, instead of listing the sessions.
    #[arg(long, short)]
    pub session: Option<String>,
    /// With --session: print the session's journal lines (JSON) instead of a transcript.
    #[arg(long, requires = "session")]
    pub json: bool,
}

/// `dbward-sidecar replay`.
pub fn replay(args: &ReplayArgs) -> Result<()> {
    let paths = if args.paths.is_empty() {
        vec![
            std::env::var_os("DBWARD_JOURNAL")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("journal")),
        ]
    } else {
        args.paths.clone()
    };
    let options = ReplayOptions {
        session: args.session.clone(),
        json: args.json,
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let stats = replay::replay(&paths, &options, &mut out)?;
    std::io::Write::flush(&mut out).context("writing the output")?;
    if stats.skipped > 0 {
        eprintln!(
            "dbward-sidecar replay: {} line(s) that are not journal events were skipped (a write cut short, e.g. by a full disk)",
            stats.skipped
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("512Ki"), Ok(512 << 10));
        assert_eq!(parse_size("1Gi"), Ok(1 << 30));
        assert!(parse_size("1GB").unwrap_err().contains("unit"));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("99999999999Ti").unwrap_err().contains("too large"));
    }
}
