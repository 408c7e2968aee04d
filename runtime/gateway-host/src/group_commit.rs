//! Group commit for the gateway's key-value writes.
//!
//! Each request's writes reach the writer as one unit (the host collects a
//! request's `set`s and `delete`s and submits them when the component hands
//! over its response; see [`crate::host::RequestWrites`]). Every unit that
//! arrives while a transaction is being written joins the next one, so
//! concurrent webhooks share one SQLite commit instead of each paying for its
//! own. A unit is answered only once its transaction has committed, and the
//! response is held until then, so "2xx only after the inbox write" holds
//! exactly as with one commit per write; a request's writes land together or
//! not at all.
//!
//! Durability: the store runs SQLite in WAL mode with `synchronous = NORMAL`
//! (see `dripline_store::SqliteStore`): a commit is in the log in the OS's page
//! cache when it returns, so it survives the process being killed or crashing
//! (what at-least-once delivery has to survive), and only a power cut or a
//! kernel crash can lose the last commits. Providers retry anything not
//! acknowledged, and a 2xx for a write lost to a power cut is the one gap;
//! `FULL` would close it with one fsync per group commit, which on this kind
//! of disk costs milliseconds per batch.

use std::sync::Arc;
use std::sync::mpsc;

use dripline_store::Write;

use crate::GatewayStore;

/// Most writes one transaction takes; the units beyond wait for the next.
const MAX_BATCH: usize = 1024;

/// Tells a waiting request how its transaction ended.
enum Reply {
    Async(tokio::sync::oneshot::Sender<Result<(), String>>),
    Blocking(mpsc::SyncSender<Result<(), String>>),
}

struct Pending {
    writes: Vec<Write>,
    reply: Reply,
}

/// The writer: a thread that drains the queue into transactions.
#[derive(Clone)]
pub struct GroupCommit {
    queue: mpsc::Sender<Pending>,
}

impl GroupCommit {
    /// Starts the writer thread for `store`. It ends when every handle is dropped.
    pub fn start(store: Arc<dyn GatewayStore>) -> std::io::Result<Self> {
        let (queue, pending) = mpsc::channel::<Pending>();
        std::thread::Builder::new()
            .name("dripline-kv-commit".into())
            .spawn(move || {
                while let Ok(first) = pending.recv() {
                    let mut writes = first.writes;
                    let mut replies = vec![first.reply];
                    while writes.len() < MAX_BATCH {
                        match pending.try_recv() {
                            Ok(next) => {
                                writes.extend(next.writes);
                                replies.push(next.reply);
                            }
                            Err(_) => break,
                        }
                    }
                    let outcome = store.apply(&writes).map(drop).map_err(|e| e.to_string());
                    for reply in replies {
                        match reply {
                            Reply::Async(tx) => drop(tx.send(outcome.clone())),
                            Reply::Blocking(tx) => drop(tx.send(outcome.clone())),
                        }
                    }
                }
            })?;
        Ok(Self { queue })
    }

    /// Commits `writes` in one transaction (shared with other requests');
    /// resolves once it is committed.
    pub async fn commit(&self, writes: Vec<Write>) -> Result<(), String> {
        if writes.is_empty() {
            return Ok(());
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.submit(writes, Reply::Async(tx))?;
        rx.await
            .map_err(|_| "the key-value writer stopped".to_string())?
    }

    /// Commits `writes` in one transaction, blocking until it is committed.
    pub fn commit_blocking(&self, writes: Vec<Write>) -> Result<(), String> {
        if writes.is_empty() {
            return Ok(());
        }
        let (tx, rx) = mpsc::sync_channel(1);
        self.submit(writes, Reply::Blocking(tx))?;
        rx.recv()
            .map_err(|_| "the key-value writer stopped".to_string())?
    }

    fn submit(&self, writes: Vec<Write>, reply: Reply) -> Result<(), String> {
        self.queue
            .send(Pending { writes, reply })
            .map_err(|_| "the key-value writer stopped".to_string())
    }
}
