//! A read cache of a service's hot resources (GetTerritory…), kept coherent across replicas:
//! every write of a resource notifies, in its own transaction, a PostgreSQL channel
//! (`NOTIFY` is delivered on commit); every replica listens and evicts. While a replica is not
//! listening (start-up, lost connection) its cache is off, and it is emptied when listening
//! resumes, since notifications may have been missed. SQLite has one process: the writer's
//! own eviction after commit is enough.
//!
//! A read that started before an eviction does not fill the cache with what it read (a
//! generation counter), so a stale value cannot outlive the notification that condemned it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement};
use tokio_util::sync::CancellationToken;

struct Entries<V> {
    map: HashMap<String, Arc<V>>,
    generation: u64,
}

/// A cache of values by resource id; clones share it.
pub struct ReadCache<V> {
    entries: Arc<RwLock<Entries<V>>>,
    enabled: Arc<AtomicBool>,
    capacity: usize,
}

impl<V> Clone for ReadCache<V> {
    fn clone(&self) -> Self {
        Self {
            entries: self.entries.clone(),
            enabled: self.enabled.clone(),
            capacity: self.capacity,
        }
    }
}

/// Where a read started, for `insert`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Generation(u64);

impl<V> ReadCache<V> {
    /// A cache of at most `capacity` entries, off until `enable`.
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: Arc::new(RwLock::new(Entries {
                map: HashMap::new(),
                generation: 0,
            })),
            enabled: Arc::new(AtomicBool::new(false)),
            capacity,
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Entries<V>> {
        self.entries.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Entries<V>> {
        self.entries.write().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, key: &str) -> Option<Arc<V>> {
        if !self.enabled.load(Ordering::Acquire) {
            return None;
        }
        self.read().map.get(key).cloned()
    }

    /// Call before reading the database.
    pub fn generation(&self) -> Generation {
        Generation(self.read().generation)
    }

    /// Keeps what a read found, unless something was evicted since it started.
    pub fn insert(&self, key: &str, value: Arc<V>, read_started: Generation) {
        if !self.enabled.load(Ordering::Acquire) {
            return;
        }
        let mut entries = self.write();
        if entries.generation == read_started.0 && entries.map.len() < self.capacity {
            entries.map.insert(key.to_string(), value);
        }
    }

    pub fn evict(&self, key: &str) {
        let mut entries = self.write();
        entries.generation += 1;
        entries.map.remove(key);
    }

    pub fn clear(&self) {
        let mut entries = self.write();
        entries.generation += 1;
        entries.map.clear();
    }

    /// Evicts `key` when the returned guard is dropped: arm it before committing a write, so
    /// that the eviction happens even if the request is cancelled during the commit.
    pub fn evict_on_drop(&self, key: &str) -> EvictOnDrop<V> {
        EvictOnDrop {
            cache: self.clone(),
            key: Some(key.to_string()),
        }
    }

    /// Empties the cache when the returned guard is dropped.
    pub fn clear_on_drop(&self) -> EvictOnDrop<V> {
        EvictOnDrop {
            cache: self.clone(),
            key: None,
        }
    }

    pub fn enable(&self) {
        self.clear();
        self.enabled.store(true, Ordering::Release);
    }

    pub fn disable(&self) {
        self.enabled.store(false, Ordering::Release);
        self.clear();
    }

    pub fn len(&self) -> usize {
        self.read().map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// See `ReadCache::evict_on_drop`.
pub struct EvictOnDrop<V> {
    cache: ReadCache<V>,
    /// None: the whole cache.
    key: Option<String>,
}

impl<V> Drop for EvictOnDrop<V> {
    fn drop(&mut self) {
        match &self.key {
            Some(key) => self.cache.evict(key),
            None => self.cache.clear(),
        }
    }
}

/// Tells every replica that `key` changed: call it in the writing transaction. A no-op on
/// SQLite.
pub async fn notify(db: &impl ConnectionTrait, channel: &str, key: &str) -> Result<(), DbErr> {
    if db.get_database_backend() != DbBackend::Postgres {
        return Ok(());
    }
    db.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT pg_notify($1, $2)",
        [channel.into(), key.into()],
    ))
    .await?;
    Ok(())
}

/// Keeps `cache` coherent until `shutdown`: on PostgreSQL, listens to `channel` and evicts
/// what it names; on SQLite, simply turns the cache on.
pub async fn keep_coherent<V: Send + Sync + 'static>(
    db: DatabaseConnection,
    channel: String,
    cache: ReadCache<V>,
    shutdown: CancellationToken,
) {
    // However this ends (a panic included), the cache goes off: without invalidations it
    // could serve stale reads.
    struct OffWhenDone<V: Send + Sync + 'static>(ReadCache<V>);
    impl<V: Send + Sync + 'static> Drop for OffWhenDone<V> {
        fn drop(&mut self) {
            self.0.disable();
        }
    }
    let _off = OffWhenDone(cache.clone());
    if db.get_database_backend() != DbBackend::Postgres {
        // One process per SQLite file: its own writes evict; nothing to listen to.
        cache.enable();
        shutdown.cancelled().await;
        return;
    }
    let pool = db.get_postgres_connection_pool().clone();
    let mut backoff = Duration::from_millis(100);
    while !shutdown.is_cancelled() {
        let listening = async {
            let mut listener = sea_orm::sqlx::postgres::PgListener::connect_with(&pool).await?;
            listener.listen(&channel).await?;
            Ok::<_, sea_orm::sqlx::Error>(listener)
        };
        let mut listener = match listening.await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(channel, error = %e, retry_in = ?backoff, "cache invalidation unavailable; cache off");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        cache.enable();
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => break,
                next = listener.try_recv() => next,
            };
            match next {
                Ok(Some(notification)) => cache.evict(notification.payload()),
                Ok(None) => {
                    // Connection lost: notifications may be missed until it is back.
                    cache.disable();
                    tracing::warn!(
                        channel,
                        "cache invalidation connection lost; cache off until it is back"
                    );
                    break;
                }
                Err(e) => {
                    cache.disable();
                    tracing::warn!(channel, error = %e, "cache invalidation failed; cache off");
                    break;
                }
            }
        }
    }
    cache.disable();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_that_raced_an_eviction_is_not_kept() {
        let cache = ReadCache::new(10);
        cache.enable();
        let before = cache.generation();
        cache.evict("a");
        cache.insert("a", Arc::new(1), before);
        assert!(cache.get("a").is_none());
        let now = cache.generation();
        cache.insert("a", Arc::new(2), now);
        assert_eq!(cache.get("a").as_deref(), Some(&2));
    }

    #[test]
    fn guards_evict_when_dropped() {
        let cache = ReadCache::new(10);
        cache.enable();
        cache.insert("a", Arc::new(1), cache.generation());
        cache.insert("b", Arc::new(2), cache.generation());
        drop(cache.evict_on_drop("a"));
        assert!(cache.get("a").is_none());
        assert!(cache.get("b").is_some());
        drop(cache.clear_on_drop());
        assert!(cache.is_empty());
    }

    #[test]
    fn off_means_empty_and_bounded_means_bounded() {
        let cache = ReadCache::new(1);
        let g = cache.generation();
        cache.insert("a", Arc::new(1), g);
        assert!(cache.get("a").is_none(), "off until enabled");
        cache.enable();
        let g = cache.generation();
        cache.insert("a", Arc::new(1), g);
        cache.insert("b", Arc::new(2), g);
        assert_eq!(cache.len(), 1);
        cache.disable();
        assert!(cache.get("a").is_none());
    }
}
