//! A bounded, thread-safe cache of analyses by exact statement text, so a repeated statement costs a
//! hash lookup instead of a parse.

use std::{
    collections::HashMap,
    mem,
    sync::{Arc, Mutex},
};

use super::{Analysis, analyze};

/// Texts longer than this are analyzed but not cached.
pub const MAX_CACHED_TEXT: usize = 64 * 1024;

/// The default number of entries.
pub const DEFAULT_CAPACITY: usize = 4096;

/// Two generations: lookups hit `current`, or promote from `previous`; when `current` is full it
/// becomes `previous` and the old `previous` is dropped. At most `capacity` entries are kept, and
/// every entry used within the last `capacity / 2` insertions survives.
#[derive(Default)]
struct Generations {
    current: HashMap<Arc<str>, Arc<Analysis>>,
    previous: HashMap<Arc<str>, Arc<Analysis>>,
}

/// A bounded cache from statement text to its [`Analysis`].
pub struct AnalysisCache {
    half: usize,
    inner: Mutex<Generations>,
}

impl Default for AnalysisCache {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

impl AnalysisCache {
    /// A cache holding at most `capacity` entries (at least 2).
    pub fn new(capacity: usize) -> Self {
        Self {
            half: (capacity / 2).max(1),
            inner: Mutex::new(Generations::default()),
        }
    }

    /// The analysis of `sql`, from the cache when it is there.
    pub fn analyze(&self, sql: &str) -> Arc<Analysis> {
        if sql.len() > MAX_CACHED_TEXT {
            return Arc::new(analyze(sql));
        }
        if let Some(hit) = self.get(sql) {
            return hit;
        }
        // Parse outside the lock; a concurrent miss on the same text just parses twice.
        let fresh = Arc::new(analyze(sql));
        let mut g = self.lock();
        if let Some(hit) = g.current.get(sql) {
            return hit.clone();
        }
        self.insert(&mut g, Arc::from(sql), fresh.clone());
        fresh
    }

    /// How many entries the cache holds.
    pub fn len(&self) -> usize {
        let g = self.lock();
        g.current.len() + g.previous.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn get(&self, sql: &str) -> Option<Arc<Analysis>> {
        let mut g = self.lock();
        if let Some(hit) = g.current.get(sql) {
            return Some(hit.clone());
        }
        let (key, hit) = g.previous.remove_entry(sql)?;
        self.insert(&mut g, key, hit.clone());
        Some(hit)
    }

    fn insert(&self, g: &mut Generations, key: Arc<str>, value: Arc<Analysis>) {
        if g.current.len() >= self.half {
            g.previous = mem::take(&mut g.current);
        }
        g.current.insert(key, value);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Generations> {
        // A panic while holding the lock leaves only a cache behind; keep using it.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hit_returns_the_same_analysis() {
        let cache = AnalysisCache::default();
        let a = cache.analyze("select * from t");
        let b = cache.analyze("select * from t");
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn eviction_bounds_the_size_and_keeps_recent_entries() {
        let cache = AnalysisCache::new(8);
        let hot = cache.analyze("select 0");
        for i in 1..100 {
            cache.analyze(&format!("select {i} from t"));
            // Used on every round, the hot entry is never evicted.
            assert!(Arc::ptr_eq(&hot, &cache.analyze("select 0")));
            assert!(cache.len() <= 8, "len {}", cache.len());
        }
    }

    #[test]
    fn long_texts_are_not_cached() {
        let cache = AnalysisCache::default();
        let long = format!("select 1 {}", " ".repeat(MAX_CACHED_TEXT));
        let a = cache.analyze(&long);
        assert_eq!(a.statements.len(), 1);
        assert!(cache.is_empty());
    }
}
