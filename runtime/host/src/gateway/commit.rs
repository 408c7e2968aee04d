//! Group commit for the gateway's key-value writes: every `set` that arrives
//! while a transaction is being written joins the next one, so concurrent
//! webhooks share one SQLite commit instead of each paying for its own. A
//! `set` still returns only once its transaction has committed, so "2xx only
//! after the inbox write" holds exactly as with one commit per write.

use std::sync::Arc;
use std::sync::mpsc;

use dripline_store::{Store, Write};

/// Most writes one transaction takes; the rest wait for the next.
const MAX_BATCH: usize = 512;

/// Tells a waiting `set` how its transaction ended.
enum Reply {
    Async(tokio::sync::oneshot::Sender<Result<(), String>>),
    Blocking(mpsc::SyncSender<Result<(), String>>),
}

struct Pending {
    write: Write,
    reply: Reply,
}

/// The writer: a thread that drains the queue into transactions.
#[derive(Clone)]
pub struct GroupCommit {
    queue: mpsc::Sender<Pending>,
}

impl GroupCommit {
    /// Starts the writer thread for `store`. It ends when every handle is dropped.
    pub fn start(store: Arc<dyn Store>) -> std::io::Result<Self> {
        let (queue, pending) = mpsc::channel::<Pending>();
        std::thread::Builder::new()
            .name("dripline-kv-commit".into())
            .spawn(move || {
                while let Ok(first) = pending.recv() {
                    let mut batch = vec![first];
                    while batch.len() < MAX_BATCH {
                        match pending.try_recv() {
                            Ok(next) => batch.push(next),
                            Err(_) => break,
                        }
                    }
                    let writes: Vec<Write> = batch.iter().map(|p| p.write.clone()).collect();
                    let outcome = store.apply(&writes).map(drop).map_err(|e| e.to_string());
                    for pending in batch {
                        match pending.reply {
                            Reply::Async(tx) => drop(tx.send(outcome.clone())),
                            Reply::Blocking(tx) => drop(tx.send(outcome.clone())),
                        }
                    }
                }
            })?;
        Ok(Self { queue })
    }

    /// Sets `key` in store `label`; resolves once the write is committed.
    pub async fn set(&self, label: &str, key: String, value: Vec<u8>) -> Result<(), String> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.submit(label, key, value, Reply::Async(tx))?;
        rx.await
            .map_err(|_| "the key-value writer stopped".to_string())?
    }

    /// Sets `key` in store `label`, blocking until the write is committed.
    pub fn set_blocking(&self, label: &str, key: String, value: Vec<u8>) -> Result<(), String> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.submit(label, key, value, Reply::Blocking(tx))?;
        rx.recv()
            .map_err(|_| "the key-value writer stopped".to_string())?
    }

    fn submit(&self, label: &str, key: String, value: Vec<u8>, reply: Reply) -> Result<(), String> {
        let write = Write::KvSet {
            store: label.to_string(),
            key,
            value,
        };
        self.queue
            .send(Pending { write, reply })
            .map_err(|_| "the key-value writer stopped".to_string())
    }
}
