//! Reads over shared connections ([`crate::Db::read`]).
//!
//! A connection taken with [`crate::Db::get`] belongs to its caller until dropped: a
//! transaction needs that. A read outside a transaction does not. tokio-postgres pipelines
//! the queries of every caller of one connection (each query is its own Bind, Execute, Sync,
//! answered in order), so several requests' reads can travel together on one connection, and
//! PostgreSQL's replies to them come back in one segment. That is what the bare baseline of
//! `scripts/bench` does, and it serves about a fifth more than the same program with one
//! request per connection at a time (decision 0033).
//!
//! The rules, in order, for each read:
//! 1. **A connection of its own when one is free**: a read takes an idle connection from the
//!    pool (or opens one, while the pool is below `DB_POOL_SIZE`) without waiting. Under light
//!    load every read has a connection to itself, as with [`crate::Db::get`].
//! 2. **Otherwise it joins a connection already lent to reads**: the one with the fewest reads
//!    in flight, if it carries fewer than `DB_READS_PER_CONNECTION`, is not closed, and nobody
//!    is waiting for the pool with [`crate::Db::get`]. That last condition keeps transactions
//!    from starving: once one waits, new reads stop joining, the lent connections drain and go
//!    back to the pool, and the queue is served in its order.
//! 3. **Otherwise it waits** for whichever comes first: a pool slot (its place in the pool's
//!    queue, as [`crate::Db::get`] waits: the same `DB_WAIT_TIMEOUT`, the same 503 with
//!    `Retry-After`, the same wait metrics), or room on a lent connection. Only transactions
//!    waiting stop reads from joining: a read that waits does not, so sharing never locks
//!    itself off under load.
//!
//! A read that cannot open a new connection (the database refusing more) still joins a lent
//! one with room before it answers 503.
//!
//! A lent connection goes back to the pool when its last read ends. `DB_POOL_SIZE` still
//! bounds the connections an instance opens; `DB_READS_PER_CONNECTION=1` turns sharing off.
//!
//! What sharing costs: a read queued behind a slow one on the same connection waits for it
//! (PostgreSQL answers a connection's queries in order), and a connection that breaks fails
//! every read on it (each gets a 503; none had changed anything).

use deadpool_postgres::Client;
use std::ops::Deref;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// The connections lent to reads, and how many reads each carries.
#[derive(Debug)]
pub(crate) struct Sharing {
    /// `DB_READS_PER_CONNECTION`.
    pub(crate) per_connection: usize,
    lent: Mutex<Vec<Arc<Lent>>>,
    /// Callers of [`crate::Db::get`] (transactions) that may be waiting for the pool: while
    /// there are any, no read joins a lent connection.
    waiting: AtomicUsize,
    /// Signalled when a read ends on a connection that stays lent: there is room on it for a
    /// read queued for the pool (rule 3).
    room: tokio::sync::Notify,
    /// Marked as each read ends: the pool is making progress even while every connection is
    /// lent to reads that overlap (readiness reads it).
    progress: Arc<crate::Progress>,
}

/// A pooled connection lent to reads; back to the pool when the last [`Read`] drops it.
struct Lent {
    client: Client,
    /// Reads in flight on it; changed only with [`Sharing::lent`] locked.
    reads: AtomicUsize,
}

impl std::fmt::Debug for Lent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lent")
            .field("reads", &self.reads.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Sharing {
    pub(crate) fn new(per_connection: usize, progress: Arc<crate::Progress>) -> Self {
        Self {
            per_connection,
            lent: Mutex::new(Vec::new()),
            waiting: AtomicUsize::new(0),
            room: tokio::sync::Notify::new(),
            progress,
        }
    }

    fn locked(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Lent>>> {
        // Nothing panics with the lock held; a poisoned list is still consistent.
        self.lent.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts a caller as waiting for the pool until the returned guard drops.
    pub(crate) fn waiting(&self) -> Waiting<'_> {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        Waiting(&self.waiting)
    }

    /// Resolves when a read ended on a connection that is still lent (room for one more).
    pub(crate) fn room(&self) -> tokio::sync::futures::Notified<'_> {
        self.room.notified()
    }

    /// Rule 2: a place on the least busy lent connection, if one has room and nobody waits
    /// for the pool (joining then would keep the queue from ever being served).
    pub(crate) fn join(self: &Arc<Self>) -> Option<Read> {
        if self.waiting.load(Ordering::SeqCst) > 0 {
            return None;
        }
        let lent = self.locked();
        let best = lent
            .iter()
            .filter(|l| !l.client.is_closed())
            .min_by_key(|l| l.reads.load(Ordering::Relaxed))?;
        if best.reads.load(Ordering::Relaxed) >= self.per_connection {
            return None;
        }
        best.reads.fetch_add(1, Ordering::Relaxed);
        Some(Read {
            lent: best.clone(),
            sharing: self.clone(),
        })
    }

    /// Rules 1 and 3: lends a connection just taken from the pool, with this read on it.
    pub(crate) fn lend(self: &Arc<Self>, client: Client) -> Read {
        let lent = Arc::new(Lent {
            client,
            reads: AtomicUsize::new(1),
        });
        if self.per_connection > 1 {
            self.locked().push(lent.clone());
        }
        Read {
            lent,
            sharing: self.clone(),
        }
    }

    /// Connections lent to reads now, and the reads on them (for tests and metrics).
    pub(crate) fn status(&self) -> (usize, usize) {
        let lent = self.locked();
        let reads = lent.iter().map(|l| l.reads.load(Ordering::Relaxed)).sum();
        (lent.len(), reads)
    }
}

/// A caller that may be waiting for the pool; see [`Sharing::waiting`].
pub(crate) struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A connection for reads outside a transaction, possibly shared with other reads
/// ([`crate::Db::read`]). It dereferences to the pool's [`Client`], so everything that takes a
/// [`crate::GenericClient`] takes `&*read`. The typed API starts no transaction on it (that
/// needs `&mut`); statements that change the session (`BEGIN` as text, `SET`, session advisory
/// locks) must not be sent on it either, since other reads share the session.
pub struct Read {
    lent: Arc<Lent>,
    sharing: Arc<Sharing>,
}

impl std::fmt::Debug for Read {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Read").field("lent", &self.lent).finish()
    }
}

impl Deref for Read {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.lent.client
    }
}

impl Drop for Read {
    fn drop(&mut self) {
        self.sharing.progress.mark();
        if self.sharing.per_connection > 1 {
            let mut list = self.sharing.locked();
            if self.lent.reads.fetch_sub(1, Ordering::Relaxed) == 1 {
                list.retain(|l| !Arc::ptr_eq(l, &self.lent));
            } else {
                // Still lent, with room now: a read queued for the pool may take it.
                self.sharing.room.notify_one();
            }
        }
        // With the last read gone and the list no longer holding it, `self.lent` is the last
        // reference: the connection goes back to the pool as the field drops, after the lock.
    }
}
