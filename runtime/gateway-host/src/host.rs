//! The imports a Spin gateway component gets under `dripline up`:
//! `fermyon:spin/key-value@2.0.0` on the embedded store (deny by default: only
//! the labels the manifest grants; a request's writes are one transaction,
//! committed before its response leaves: [`RequestWrites`]),
//! `fermyon:spin/variables@2.0.0` from the
//! component's resolved variables. A gateway's import of
//! `dripline:journey/trigger-handler` is satisfied by composing it with its
//! trigger (`crate::compose`); a gateway whose manifest names no trigger gets
//! a host import that refuses every call, so that it still loads and answers
//! 500 with the reason.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use dripline_store::Write;

use crate::GatewayStore;
use wasmtime::component::{Resource, ResourceTable};
use wasmtime_wasi_http::WasiHttpCtx;

/// Bindings for the gateway's imports; the WIT of the Spin interfaces is in
/// `runtime/gateway-host/wit-spin/`.
#[allow(missing_docs)] // generated; the WIT carries the docs
pub mod bindings {
    wasmtime::component::bindgen!({
        inline: "
            package dripline:gateway-host@0.1.0;

            world gateway-host {
                import fermyon:spin/key-value@2.0.0;
                import fermyon:spin/variables@2.0.0;
                import fermyon:spin/redis@2.0.0;
                import dripline:journey/trigger-handler@0.1.0;
            }
        ",
        path: ["wit-spin", "../../wit"],
        world: "dripline:gateway-host/gateway-host",
        with: {
            "dripline:journey/types": dripline_sandbox::bindings::step::dripline::journey::types,
            "fermyon:spin/key-value.store": super::KvStore,
            "fermyon:spin/redis.connection": super::RedisConnection,
        },
    });
}

use bindings::dripline::journey::trigger_handler as import;
use bindings::fermyon::spin::{key_value, redis, variables};

/// Most stores one instance may hold open at once.
const MAX_OPEN_STORES: usize = 16;

/// A connection of Spin's outbound Redis; none is ever opened here.
pub struct RedisConnection;

/// An open key-value store: its label.
pub struct KvStore {
    label: String,
}

/// What the requests to one component share, whichever of its routes they
/// came by: its grants, variables and store.
pub struct RouteGrants {
    /// The component's id, for errors.
    pub component: String,
    /// Labels the manifest lets it open.
    pub key_value_stores: Vec<String>,
    /// Its resolved variables.
    pub variables: BTreeMap<String, String>,
    /// The embedded store behind the `default` label.
    pub store: Arc<dyn GatewayStore>,
    /// Its writer, which commits concurrent `set`s together.
    pub commit: crate::group_commit::GroupCommit,
}

/// The key-value writes of one request, held back until the component hands
/// over its response and then committed in one transaction (shared with other
/// requests' by [`crate::group_commit::GroupCommit`]) before the response is sent.
///
/// Why not commit each `set` as it comes: the gateway writes the inbox record
/// and then the delivery's dedupe mark, and two commits in a row doubled the
/// time a webhook waits for the store. Held together they cost one commit,
/// and they land atomically: a crash leaves both or neither, and a provider's
/// retry of "neither" stores the events once. The component still reads its
/// own writes (`get`, `exists` and `get-keys` see them), and nothing it wrote
/// is acknowledged to the sender before it is committed. Writes a component
/// makes after handing over its response are committed when it returns.
#[derive(Default)]
pub struct RequestWrites {
    state: Mutex<WritesState>,
}

#[derive(Default)]
struct WritesState {
    writes: Vec<Write>,
    /// The response was handed over; later writes are the task's to commit.
    released: bool,
}

impl RequestWrites {
    fn lock(&self) -> MutexGuard<'_, WritesState> {
        // The state is a list; a panic elsewhere cannot leave it half-changed.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn push(&self, write: Write) {
        self.lock().writes.push(write);
    }

    /// What this request last wrote to `key`: `Some(Some(value))` set,
    /// `Some(None)` deleted, `None` not written.
    fn written(&self, label: &str, key: &str) -> Option<Option<Vec<u8>>> {
        self.lock().writes.iter().rev().find_map(|w| match w {
            Write::KvSet {
                store,
                key: k,
                value,
            } if store == label && k == key => Some(Some(value.clone())),
            Write::KvDelete { store, key: k } if store == label && k == key => Some(None),
            _ => None,
        })
    }

    /// The writes to commit before the response is sent; from now on, writes
    /// are left to [`Self::take_after_response`].
    pub(super) fn take_for_response(&self) -> Vec<Write> {
        let mut state = self.lock();
        state.released = true;
        std::mem::take(&mut state.writes)
    }

    /// The writes made after the response was handed over (none if it never was:
    /// a request without a response stores nothing).
    pub(super) fn take_after_response(&self) -> Vec<Write> {
        let mut state = self.lock();
        if state.released {
            std::mem::take(&mut state.writes)
        } else {
            Vec::new()
        }
    }
}

/// The state of one gateway request.
pub struct GatewayCall {
    pub(super) http: WasiHttpCtx,
    pub(super) hooks: DenyOutgoing,
    pub(super) grants: Arc<RouteGrants>,
    pub(super) writes: Arc<RequestWrites>,
    stores: ResourceTable,
    open_stores: usize,
}

impl GatewayCall {
    /// Fresh state for a request to a route.
    pub fn new(grants: Arc<RouteGrants>) -> Self {
        Self {
            http: WasiHttpCtx::new(),
            hooks: DenyOutgoing,
            grants,
            writes: Arc::new(RequestWrites::default()),
            stores: ResourceTable::new(),
            open_stores: 0,
        }
    }

    /// Starts a request on this instance: fresh held-back writes, which the
    /// caller commits (see [`RequestWrites`]).
    pub(super) fn begin_request(&mut self) -> Arc<RequestWrites> {
        self.writes = Arc::new(RequestWrites::default());
        self.writes.clone()
    }

    fn label(&self, store: &Resource<KvStore>) -> Result<String, key_value::Error> {
        self.stores
            .get(store)
            .map(|s| s.label.clone())
            .map_err(|e| key_value::Error::Other(format!("bad store handle: {e}")))
    }
}

fn store_error(error: dripline_store::StoreError) -> key_value::Error {
    key_value::Error::Other(error.to_string())
}

/// Whether an instance may serve another request.
pub(crate) trait Reusable {
    /// Whether the instance ended its request cleanly enough to serve another:
    /// it stayed within its memory and holds at most one open key-value store
    /// per label it may open. A component may keep a store's handle from one
    /// request to the next (the gateway does: opening and closing it are two
    /// host calls per webhook); holding more means it opens stores without
    /// closing them, and such an instance is replaced rather than left to run
    /// into [`MAX_OPEN_STORES`] after enough requests, as a fresh instance per
    /// request (Spin's way) never would.
    fn reusable(&self) -> bool;
}

impl Reusable for dripline_sandbox::Sandboxed<GatewayCall> {
    fn reusable(&self) -> bool {
        self.data.open_stores <= self.data.grants.key_value_stores.len() && !self.memory_limit_hit()
    }
}

impl key_value::Host for GatewayCall {}

impl key_value::HostStore for GatewayCall {
    fn open(&mut self, label: String) -> Result<Resource<KvStore>, key_value::Error> {
        if !self.grants.key_value_stores.contains(&label) {
            return Err(key_value::Error::AccessDenied);
        }
        if label != dripline_store::DEFAULT_KV_STORE {
            return Err(key_value::Error::NoSuchStore);
        }
        if self.open_stores >= MAX_OPEN_STORES {
            return Err(key_value::Error::StoreTableFull);
        }
        let store = self
            .stores
            .push(KvStore { label })
            .map_err(|_| key_value::Error::StoreTableFull)?;
        self.open_stores += 1;
        Ok(store)
    }

    fn get(
        &mut self,
        store: Resource<KvStore>,
        key: String,
    ) -> Result<Option<Vec<u8>>, key_value::Error> {
        let label = self.label(&store)?;
        if let Some(written) = self.writes.written(&label, &key) {
            return Ok(written);
        }
        self.grants.store.kv_get(&label, &key).map_err(store_error)
    }

    fn set(
        &mut self,
        store: Resource<KvStore>,
        key: String,
        value: Vec<u8>,
    ) -> Result<(), key_value::Error> {
        let label = self.label(&store)?;
        self.writes.push(Write::KvSet {
            store: label,
            key,
            value,
        });
        Ok(())
    }

    fn delete(&mut self, store: Resource<KvStore>, key: String) -> Result<(), key_value::Error> {
        let label = self.label(&store)?;
        self.writes.push(Write::KvDelete { store: label, key });
        Ok(())
    }

    fn exists(&mut self, store: Resource<KvStore>, key: String) -> Result<bool, key_value::Error> {
        let label = self.label(&store)?;
        if let Some(written) = self.writes.written(&label, &key) {
            return Ok(written.is_some());
        }
        self.grants
            .store
            .kv_exists(&label, &key)
            .map_err(store_error)
    }

    fn get_keys(&mut self, store: Resource<KvStore>) -> Result<Vec<String>, key_value::Error> {
        let label = self.label(&store)?;
        let mut keys: BTreeSet<String> = self
            .grants
            .store
            .kv_keys(&label)
            .map_err(store_error)?
            .into_iter()
            .collect();
        for write in &self.writes.lock().writes {
            match write {
                Write::KvSet { store, key, .. } if *store == label => {
                    keys.insert(key.clone());
                }
                Write::KvDelete { store, key } if *store == label => {
                    keys.remove(key);
                }
                _ => {}
            }
        }
        Ok(keys.into_iter().collect())
    }

    fn drop(&mut self, store: Resource<KvStore>) -> wasmtime::Result<()> {
        self.stores.delete(store)?;
        self.open_stores = self.open_stores.saturating_sub(1);
        Ok(())
    }
}

impl redis::Host for GatewayCall {}

/// `dripline up` writes a gateway's inbox to its own store; a route whose
/// `inbox_redis` variable is set is refused with the reason, never half served.
impl redis::HostConnection for GatewayCall {
    fn open(&mut self, _address: String) -> Result<Resource<RedisConnection>, redis::Error> {
        Err(redis::Error::Other(
            "dripline up writes the inbox to its own store (--store); leave inbox_redis_url empty"
                .into(),
        ))
    }

    fn publish(
        &mut self,
        _: Resource<RedisConnection>,
        _: String,
        _: Vec<u8>,
    ) -> Result<(), redis::Error> {
        Err(no_redis())
    }

    fn get(
        &mut self,
        _: Resource<RedisConnection>,
        _: String,
    ) -> Result<Option<Vec<u8>>, redis::Error> {
        Err(no_redis())
    }

    fn set(
        &mut self,
        _: Resource<RedisConnection>,
        _: String,
        _: Vec<u8>,
    ) -> Result<(), redis::Error> {
        Err(no_redis())
    }

    fn incr(&mut self, _: Resource<RedisConnection>, _: String) -> Result<i64, redis::Error> {
        Err(no_redis())
    }

    fn del(&mut self, _: Resource<RedisConnection>, _: Vec<String>) -> Result<u32, redis::Error> {
        Err(no_redis())
    }

    fn sadd(
        &mut self,
        _: Resource<RedisConnection>,
        _: String,
        _: Vec<String>,
    ) -> Result<u32, redis::Error> {
        Err(no_redis())
    }

    fn smembers(
        &mut self,
        _: Resource<RedisConnection>,
        _: String,
    ) -> Result<Vec<String>, redis::Error> {
        Err(no_redis())
    }

    fn srem(
        &mut self,
        _: Resource<RedisConnection>,
        _: String,
        _: Vec<String>,
    ) -> Result<u32, redis::Error> {
        Err(no_redis())
    }

    fn execute(
        &mut self,
        _: Resource<RedisConnection>,
        _: String,
        _: Vec<redis::RedisParameter>,
    ) -> Result<Vec<redis::RedisResult>, redis::Error> {
        Err(no_redis())
    }

    fn drop(&mut self, _: Resource<RedisConnection>) -> wasmtime::Result<()> {
        Ok(())
    }
}

fn no_redis() -> redis::Error {
    redis::Error::Other("no Redis connection is open under dripline up".into())
}

impl variables::Host for GatewayCall {
    fn get(&mut self, name: String) -> Result<String, variables::Error> {
        let valid = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !valid {
            return Err(variables::Error::InvalidName(name));
        }
        self.grants
            .variables
            .get(&name)
            .cloned()
            .ok_or(variables::Error::Undefined(name))
    }
}

impl import::Host for GatewayCall {
    fn handle(
        &mut self,
        _request: import::InboundRequest,
    ) -> Result<Vec<dripline_sandbox::bindings::Event>, import::TriggerError> {
        // Reached only by a gateway that was not composed with a trigger.
        Err(import::TriggerError::Other(format!(
            "component `{}` has no trigger dependency",
            self.grants.component
        )))
    }
}

impl dripline_sandbox::bindings::step::dripline::journey::types::Host for GatewayCall {}

/// The gateway makes no outgoing HTTP requests; any attempt is denied.
pub struct DenyOutgoing;

impl dripline_sandbox::HttpCall for GatewayCall {
    fn http_parts(&mut self) -> (&mut WasiHttpCtx, &mut dyn wasmtime_wasi_http::WasiHttpHooks) {
        (&mut self.http, &mut self.hooks)
    }
}

impl wasmtime_wasi_http::WasiHttpHooks for DenyOutgoing {
    fn send_request(
        &mut self,
        _request: hyper::Request<wasmtime_wasi_http::WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> Box<
        dyn Future<
                Output = wasmtime_wasi_http::Result<(
                    hyper::Response<wasmtime_wasi_http::WasiBody>,
                    Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
                )>,
            > + Send,
    > {
        Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use dripline_sandbox::{Sandbox, SandboxConfig};

    #[test]
    fn an_instance_keeping_one_store_open_is_reused_and_one_leaking_stores_is_not() {
        let store: Arc<dyn GatewayStore> = Arc::new(dripline_store::MemoryStore::new());
        let grants = Arc::new(RouteGrants {
            component: "gateway".into(),
            key_value_stores: vec![dripline_store::DEFAULT_KV_STORE.to_string()],
            variables: BTreeMap::new(),
            store: store.clone(),
            commit: crate::group_commit::GroupCommit::start(store).unwrap(),
        });
        let sandbox = Sandbox::new(SandboxConfig::default()).unwrap();
        let mut instance = sandbox.store(GatewayCall::new(grants));
        let open = |instance: &mut wasmtime::Store<dripline_sandbox::Sandboxed<GatewayCall>>| {
            key_value::HostStore::open(
                &mut instance.data_mut().data,
                dripline_store::DEFAULT_KV_STORE.to_string(),
            )
            .unwrap()
        };

        let kept = open(&mut instance);
        assert!(instance.data().reusable(), "one cached handle is fine");
        let leaked = open(&mut instance);
        assert!(!instance.data().reusable(), "a second handle is a leak");
        key_value::HostStore::drop(&mut instance.data_mut().data, leaked).unwrap();
        assert!(instance.data().reusable());
        key_value::HostStore::drop(&mut instance.data_mut().data, kept).unwrap();
        assert!(instance.data().reusable());
    }
}
