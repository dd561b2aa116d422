//! The shared engine: configuration, linker, compile cache and loaded functions.

use crate::cache::{CodeCache, Miss};
use crate::child::{ChildSettings, CompileChild};
use crate::fncache::FunctionCache;
use crate::host::InvocationCtx;
use crate::limits::{EPOCH_TICK, MEMORY_BYTES_MAX, TABLE_ELEMENTS_MAX};
use crate::{ArtifactId, Error, Result};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};
use wasmtime_wasi_http::p2::bindings::ProxyPre;

/// How to build a [`Runtime`].
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Where compiled code is cached; `None` compiles every load.
    pub cache_dir: Option<PathBuf>,
    /// Component instances that may exist at once (pool size).
    pub instances_max: u32,
    /// Count fuel (the billed unit). Off only to measure its cost.
    pub fuel: bool,
    /// Which compiler makes the code. [`Compiler::Tiered`] and
    /// [`Compiler::Winch`] need fuel (it bounds time on Winch's code, which
    /// has no epoch interruption) and an x86-64 host; elsewhere they fall
    /// back to Cranelift.
    pub compiler: Compiler,
    /// Run Cranelift in child processes under a budget (a node serving
    /// other people's code), or in this process without one (`None`:
    /// tests, benchmarks, tools on one's own code).
    pub compile_child: Option<CompileChild>,
}

/// Which compiler makes a component's code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compiler {
    /// Cranelift (optimizing) before the first request.
    Cranelift,
    /// Tiered: a component that is not in the cache is compiled by Winch (a
    /// baseline compiler, many times faster to compile, slower code) and
    /// serves at once, while Cranelift compiles it in the background;
    /// requests switch to Cranelift's code once it is ready (and cached).
    Tiered,
    /// Winch only, never optimized (to measure the baseline tier).
    Winch,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            cache_dir: None,
            instances_max: 1000,
            fuel: true,
            compiler: Compiler::Cranelift,
            compile_child: None,
        }
    }
}

/// Which compiler's code serves a function's requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tier {
    /// Winch: compiled fast, runs slower, bounded in time by fuel yields.
    Baseline,
    /// Cranelift: optimized, bounded in time by epochs.
    Optimized,
}

impl Tier {
    /// `baseline` or `optimized`.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Baseline => "baseline",
            Tier::Optimized => "optimized",
        }
    }
}

/// Counters for what the runtime did, for tests, metrics and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuntimeStats {
    /// Components compiled by Cranelift.
    pub compiles: u64,
    /// Components compiled by Winch (the baseline tier).
    pub baseline_compiles: u64,
    /// Loads served from the on-disk compiled-code cache.
    pub cache_hits: u64,
    /// Cache entries found corrupt, discarded and rebuilt.
    pub cache_rejected: u64,
    /// Functions whose Cranelift code is cached, shared by every component
    /// (see the `fncache` module).
    pub functions_cached: u64,
    /// Functions Cranelift found in that cache instead of compiling them.
    pub function_cache_hits: u64,
    /// Functions Cranelift looked up there and compiled.
    pub function_cache_misses: u64,
    /// Optimizing compiles stopped at their budget (see [`CompileChild`]).
    pub compiles_over_budget: u64,
}

#[derive(Default)]
struct Counters {
    compiles: AtomicU64,
    baseline_compiles: AtomicU64,
    cache_hits: AtomicU64,
    cache_rejected: AtomicU64,
    compiles_over_budget: AtomicU64,
    /// The per-function cache as the compile children used it.
    child_function_hits: AtomicU64,
    child_function_misses: AtomicU64,
    child_functions_cached: AtomicU64,
}

/// Compiles, caches and prepares components on one wasmtime [`Engine`].
///
/// Shared by every request on a node (cheap to clone); it lives as long as
/// the node. One epoch-ticker thread per runtime drives wall-clock deadlines
/// and stops when the last clone is dropped.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<RuntimeInner>,
}

struct RuntimeInner {
    engine: Engine,
    linker: Linker<InvocationCtx>,
    /// Winch's engine and linker (tiered, or Winch only).
    baseline: Option<(Engine, Linker<InvocationCtx>)>,
    /// Whether Winch's code is replaced by Cranelift's in the background.
    optimize: bool,
    cache: Option<CodeCache>,
    /// Cranelift's per-function code, shared by every component.
    functions: Arc<FunctionCache>,
    counters: Counters,
    loaded: Mutex<HashMap<ArtifactId, Weak<LoadedComponent>>>,
    ticker_stop: Arc<AtomicBool>,
    fuel: bool,
    compile_child: Option<CompileChild>,
    cache_dir: Option<PathBuf>,
    /// Components whose optimizing compile ran past its budget: never tried
    /// again by this process (they stay on Winch's code), nor by a later
    /// one on the same cache (a marker file there).
    over_budget: Mutex<HashSet<ArtifactId>>,
}

impl Drop for RuntimeInner {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

/// A component's code on one tier, ready to instantiate: compiled,
/// linked, exports checked.
pub(crate) struct Prepared {
    pub(crate) engine: Engine,
    pub(crate) pre: ProxyPre<InvocationCtx>,
    pub(crate) tier: Tier,
}

/// A loaded component: its baseline code (tiered, until Cranelift's is
/// ready) and its optimized code (set once, then used by every request).
pub(crate) struct LoadedComponent {
    pub(crate) artifact_id: ArtifactId,
    baseline: Option<Prepared>,
    optimized: std::sync::OnceLock<Prepared>,
    /// Requests served on the baseline tier: which tier-up to run first.
    pub(crate) baseline_calls: AtomicU64,
}

impl LoadedComponent {
    /// The best code ready now.
    pub(crate) fn current(&self) -> &Prepared {
        match (self.optimized.get(), &self.baseline) {
            (Some(optimized), _) => optimized,
            (None, Some(baseline)) => baseline,
            // Built with one or the other; never neither.
            (None, None) => unreachable!("a loaded component has code on some tier"),
        }
    }
}

impl Runtime {
    /// Builds the engine (cranelift, pooling allocator, copy-on-write memory
    /// images, fuel, epoch interruption) and starts its epoch ticker.
    pub fn new(config: RuntimeConfig) -> Result<Self> {
        let functions = Arc::new(match &config.cache_dir {
            Some(dir) => FunctionCache::open(dir).map_err(|source| Error::Cache {
                path: dir.join("functions.log"),
                source,
            })?,
            None => FunctionCache::in_memory(),
        });
        let mut engine_config = optimizing_config(config.fuel, &functions)?;
        engine_config
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool_config(&config)));
        let engine = Engine::new(&engine_config).map_err(|e| Error::Engine {
            reason: format!("{e:#}"),
        })?;
        let linker = linker(&engine).map_err(|e| Error::Engine {
            reason: format!("{e:#}"),
        })?;
        let cache = match &config.cache_dir {
            Some(dir) => Some(CodeCache::open(dir, &engine)?),
            None => None,
        };
        let winch = config.compiler != Compiler::Cranelift;
        let baseline = match winch && config.fuel && cfg!(target_arch = "x86_64") {
            true => Some(baseline_engine(&config)?),
            false => None,
        };
        let ticker_stop = Arc::new(AtomicBool::new(false));
        spawn_epoch_ticker(engine.weak(), ticker_stop.clone());
        Ok(Runtime {
            inner: Arc::new(RuntimeInner {
                engine,
                linker,
                baseline,
                optimize: config.compiler != Compiler::Winch,
                cache,
                functions,
                counters: Counters::default(),
                loaded: Mutex::new(HashMap::new()),
                ticker_stop,
                fuel: config.fuel,
                compile_child: config.compile_child,
                cache_dir: config.cache_dir,
                over_budget: Mutex::new(HashSet::new()),
            }),
        })
    }

    /// Loads a component from its bytes: from memory if already loaded,
    /// else from the compiled-code cache, else by compiling it.
    ///
    /// Compiling is CPU-heavy (up to seconds for large components); call
    /// this from a blocking-friendly context.
    pub fn load(&self, wasm: &[u8]) -> Result<crate::Function> {
        check_header(wasm)?;
        let artifact_id = ArtifactId::of(wasm);
        if let Some(loaded) = self.loaded_component(&artifact_id) {
            return Ok(crate::Function::new(self.clone(), loaded));
        }
        let cached = self.cached_component(&artifact_id);
        let loaded = match (cached, &self.inner.baseline) {
            (Some(component), _) => {
                let optimized = self.prepare(&artifact_id, component, Tier::Optimized)?;
                Arc::new(LoadedComponent {
                    artifact_id,
                    baseline: None,
                    optimized: optimized.into(),
                    baseline_calls: AtomicU64::new(0),
                })
            }
            (None, Some((engine, _))) => {
                let component =
                    Component::new(engine, wasm).map_err(|e| Error::InvalidComponent {
                        artifact_id,
                        reason: format!("{e:#}"),
                    })?;
                let counters = &self.inner.counters;
                counters.baseline_compiles.fetch_add(1, Ordering::Relaxed);
                let baseline = self.prepare(&artifact_id, component, Tier::Baseline)?;
                let loaded = Arc::new(LoadedComponent {
                    artifact_id,
                    baseline: Some(baseline),
                    optimized: std::sync::OnceLock::new(),
                    baseline_calls: AtomicU64::new(0),
                });
                if self.inner.optimize {
                    self.optimize_in_background(&loaded, wasm.to_vec());
                }
                loaded
            }
            (None, None) => {
                let component = self.compile(&artifact_id, wasm)?;
                let optimized = self.prepare(&artifact_id, component, Tier::Optimized)?;
                Arc::new(LoadedComponent {
                    artifact_id,
                    baseline: None,
                    optimized: optimized.into(),
                    baseline_calls: AtomicU64::new(0),
                })
            }
        };
        let mut map = self.inner.loaded.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, weak| weak.strong_count() > 0);
        map.insert(artifact_id, Arc::downgrade(&loaded));
        Ok(crate::Function::new(self.clone(), loaded))
    }

    /// Links a compiled component for the proxy world.
    fn prepare(
        &self,
        artifact_id: &ArtifactId,
        component: Component,
        tier: Tier,
    ) -> Result<Prepared> {
        let not_http = |e: wasmtime::Error| Error::NotHttpComponent {
            artifact_id: *artifact_id,
            reason: format!("{e:#}"),
        };
        let (engine, linker) = match (tier, &self.inner.baseline) {
            (Tier::Baseline, Some((engine, linker))) => (engine, linker),
            _ => (&self.inner.engine, &self.inner.linker),
        };
        // Imports resolve by semver across all of WASI 0.2, so a component
        // built against any 0.2.x links. (`define_unknown_imports_as_traps`
        // is not used: it shadows semver matches with fresh resource types.)
        let instance_pre = linker.instantiate_pre(&component).map_err(not_http)?;
        let pre = ProxyPre::new(instance_pre).map_err(not_http)?;
        Ok(Prepared {
            engine: engine.clone(),
            pre,
            tier,
        })
    }

    /// Queues `wasm` for Cranelift on the background pool; once compiled,
    /// the code is cached and `loaded` switches to it (if it is still
    /// loaded; the cache serves the next load otherwise). Requests never
    /// wait for it.
    fn optimize_in_background(&self, loaded: &Arc<LoadedComponent>, wasm: Vec<u8>) {
        let Some(pool) = background_pool() else {
            tracing::warn!("no background compile threads; staying on the baseline tier");
            return;
        };
        lock(&TIER_UPS).push(TierUp {
            runtime: self.clone(),
            loaded: Arc::downgrade(loaded),
            wasm,
        });
        // One turn per queued compile; each turn runs whichever is hottest
        // when a thread is free, so the pool's threads go first to the
        // functions serving the most requests on Winch's code, and an
        // artifact nobody calls (a compile bomb among them, even under its
        // budget) waits behind every one that is called.
        // On a pool thread, wasmtime's parallel compile runs on this pool
        // too, so all of it has the pool's low priority.
        pool.spawn(|| {
            let next = hottest(&mut lock(&TIER_UPS), |up| {
                let loaded = up.loaded.upgrade()?;
                Some(loaded.baseline_calls.load(Ordering::Relaxed))
            });
            if let Some(up) = next {
                up.run();
            }
        });
    }

    /// What the runtime has done so far.
    pub fn stats(&self) -> RuntimeStats {
        let c = &self.inner.counters;
        let (function_cache_hits, function_cache_misses) = self.inner.functions.lookups();
        RuntimeStats {
            compiles: c.compiles.load(Ordering::Relaxed),
            baseline_compiles: c.baseline_compiles.load(Ordering::Relaxed),
            cache_hits: c.cache_hits.load(Ordering::Relaxed),
            cache_rejected: c.cache_rejected.load(Ordering::Relaxed),
            functions_cached: (self.inner.functions.len() as u64)
                .max(c.child_functions_cached.load(Ordering::Relaxed)),
            function_cache_hits: function_cache_hits
                + c.child_function_hits.load(Ordering::Relaxed),
            function_cache_misses: function_cache_misses
                + c.child_function_misses.load(Ordering::Relaxed),
            compiles_over_budget: c.compiles_over_budget.load(Ordering::Relaxed),
        }
    }

    /// Path of the cache entry for an artifact, if a cache is configured.
    pub fn cache_path(&self, artifact_id: &ArtifactId) -> Option<PathBuf> {
        self.inner
            .cache
            .as_ref()
            .map(|cache| cache.path(artifact_id))
    }

    pub(crate) fn fuel_enabled(&self) -> bool {
        self.inner.fuel
    }

    fn loaded_component(&self, artifact_id: &ArtifactId) -> Option<Arc<LoadedComponent>> {
        let map = self.inner.loaded.lock().unwrap_or_else(|e| e.into_inner());
        map.get(artifact_id).and_then(Weak::upgrade)
    }

    /// The optimized code from the on-disk cache, if it holds a valid entry.
    fn cached_component(&self, artifact_id: &ArtifactId) -> Option<Component> {
        let cache = self.inner.cache.as_ref()?;
        let counters = &self.inner.counters;
        match cache.read(artifact_id) {
            Ok(serialized) => {
                // SAFETY: the bytes were produced by `Component::serialize`
                // on an engine with the same compatibility hash (it is in
                // the file name) and their BLAKE3 digest was verified just
                // now, so they are exactly what this process family wrote.
                match unsafe { Component::deserialize(&self.inner.engine, &serialized) } {
                    Ok(component) => {
                        counters.cache_hits.fetch_add(1, Ordering::Relaxed);
                        return Some(component);
                    }
                    Err(e) => {
                        tracing::warn!(%artifact_id, error = %e, "cache entry rejected by wasmtime");
                        counters.cache_rejected.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Err(Miss::Corrupt) => {
                tracing::warn!(%artifact_id, "corrupt cache entry; recompiling");
                counters.cache_rejected.fetch_add(1, Ordering::Relaxed);
            }
            Err(Miss::Absent) => {}
        }
        None
    }

    /// Compiles with Cranelift (in a child process under a budget, if the
    /// runtime has one) and writes the code to the cache.
    fn compile(&self, artifact_id: &ArtifactId, wasm: &[u8]) -> Result<Component> {
        let Some(child) = &self.inner.compile_child else {
            let component =
                Component::new(&self.inner.engine, wasm).map_err(|e| Error::InvalidComponent {
                    artifact_id: *artifact_id,
                    reason: format!("{e:#}"),
                })?;
            self.inner.counters.compiles.fetch_add(1, Ordering::Relaxed);
            self.inner.functions.flush();
            if self.inner.cache.is_some() {
                match component.serialize() {
                    Ok(serialized) => self.cache_write(artifact_id, &serialized),
                    Err(e) => {
                        tracing::warn!(%artifact_id, error = %e, "cannot serialize component")
                    }
                }
            }
            return Ok(component);
        };
        let cpu_seconds = child.budget.cpu_seconds(wasm.len());
        let budget_error = || Error::CompileBudget {
            artifact_id: *artifact_id,
            cpu_seconds,
            memory_mib: child.budget.memory_bytes >> 20,
        };
        let over_budget = || {
            self.inner
                .over_budget
                .lock()
                .unwrap_or_else(|e| e.into_inner())
        };
        // Stopped before, here or (on the same cache) before a restart, at
        // a budget no smaller than this one's.
        let stopped_before = (self.inner.cache.as_ref()).and_then(|c| c.over_budget(artifact_id));
        if over_budget().contains(artifact_id) || stopped_before >= Some(cpu_seconds) {
            return Err(budget_error());
        }
        let settings = ChildSettings {
            fuel: self.inner.fuel,
            cache_dir: self.inner.cache_dir.as_deref(),
        };
        let compiled = match crate::child::compile(child, &settings, artifact_id, wasm) {
            Ok(compiled) => compiled,
            Err(e @ Error::CompileBudget { .. }) => {
                let counters = &self.inner.counters;
                counters
                    .compiles_over_budget
                    .fetch_add(1, Ordering::Relaxed);
                over_budget().insert(*artifact_id);
                if let Some(cache) = &self.inner.cache {
                    cache.mark_over_budget(artifact_id, cpu_seconds);
                }
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        // SAFETY: the bytes are `Component::serialize` of a compile by this
        // same program, in a child it started, on an engine built from the
        // same settings (wasmtime checks that they match), read whole from
        // the child's pipe.
        let component = unsafe { Component::deserialize(&self.inner.engine, &compiled.code) }
            .map_err(|e| Error::CompileChild {
                artifact_id: *artifact_id,
                reason: format!("its code does not load here: {e:#}"),
            })?;
        let counters = &self.inner.counters;
        counters.compiles.fetch_add(1, Ordering::Relaxed);
        (counters.child_function_hits).fetch_add(compiled.function_hits, Ordering::Relaxed);
        (counters.child_function_misses).fetch_add(compiled.function_misses, Ordering::Relaxed);
        (counters.child_functions_cached).fetch_max(compiled.functions_cached, Ordering::Relaxed);
        self.cache_write(artifact_id, &compiled.code);
        Ok(component)
    }

    fn cache_write(&self, artifact_id: &ArtifactId, serialized: &[u8]) {
        if let Some(cache) = &self.inner.cache
            && let Err(e) = cache.write(artifact_id, serialized)
        {
            tracing::warn!(%artifact_id, error = %e, "cannot write cache entry");
        }
    }
}

/// A queued optimizing compile.
struct TierUp {
    runtime: Runtime,
    loaded: Weak<LoadedComponent>,
    wasm: Vec<u8>,
}

impl TierUp {
    fn run(self) {
        let (runtime, wasm) = (&self.runtime, &self.wasm);
        let Some(artifact_id) = self.loaded.upgrade().map(|l| l.artifact_id) else {
            return;
        };
        let optimized = runtime
            .compile(&artifact_id, wasm)
            .and_then(|component| runtime.prepare(&artifact_id, component, Tier::Optimized));
        match (optimized, self.loaded.upgrade()) {
            (Ok(optimized), Some(loaded)) => {
                let _ = loaded.optimized.set(optimized);
                tracing::debug!(%artifact_id, "optimized code ready");
            }
            (Ok(_), None) => {}
            (Err(e), _) => {
                tracing::warn!(%artifact_id, error = %e, "Cranelift could not compile what Winch did; staying on the baseline tier");
            }
        }
    }
}

/// The process's queued optimizing compiles (every runtime's).
static TIER_UPS: Mutex<Vec<TierUp>> = Mutex::new(Vec::new());

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A queue is whole between statements: a panic elsewhere while it was
    // held does not break it.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Takes the entry of highest `heat` from `queue`, the earliest queued of
/// equals; drops the entries whose heat is `None` (nobody holds them).
fn hottest<T>(queue: &mut Vec<T>, heat: impl Fn(&T) -> Option<u64>) -> Option<T> {
    let mut best: Option<(usize, u64)> = None;
    let mut i = 0;
    while i < queue.len() {
        let Some(h) = heat(&queue[i]) else {
            queue.remove(i);
            continue;
        };
        if best.is_none_or(|(_, b)| h > b) {
            best = Some((i, h));
        }
        i += 1;
    }
    best.map(|(i, _)| queue.remove(i))
}

/// Nice value of the background compile threads. The optimized code only
/// makes later requests faster, so it must not slow the requests being
/// served now (on Winch's code, which is what it replaces): at nice 0 its
/// threads took half the cores from them. Not the idle class: under
/// steady load the compile must still finish (here it gets about a tenth
/// of a busy core, and every idle one).
const BACKGROUND_NICE: i32 = 10;

/// The process's pool for background (optimizing) compiles, one thread per
/// core at [`BACKGROUND_NICE`]; `None` if its threads cannot start.
fn background_pool() -> Option<&'static rayon::ThreadPool> {
    static POOL: std::sync::OnceLock<Option<rayon::ThreadPool>> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .thread_name(|i| format!("bonus-optimize-{i}"))
            .start_handler(|_| lower_this_threads_priority())
            // Rayon aborts the process on a job's panic unless handled: a
            // compiler bug on one hostile component must not end the node
            // (the component stays on the baseline tier).
            .panic_handler(|_| {
                tracing::error!("a background compile panicked; staying on the baseline tier")
            })
            .build()
            .map_err(|e| tracing::warn!(error = %e, "cannot start the background compile pool"))
            .ok()
    })
    .as_ref()
}

fn lower_this_threads_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid and setpriority take and return plain integers;
        // on Linux a nice value belongs to one thread, this one.
        let done = unsafe {
            let tid = libc::gettid() as libc::id_t;
            libc::setpriority(libc::PRIO_PROCESS, tid, BACKGROUND_NICE)
        };
        if done != 0 {
            tracing::debug!(error = %std::io::Error::last_os_error(), "background compile thread keeps its priority");
        }
    }
}

/// Rejects what is not a component before spending time in the compiler,
/// with an error that says what the bytes are. Also for clients, which
/// check a file before they upload it.
pub fn check_header(wasm: &[u8]) -> Result<()> {
    if wasm.len() < 8 || &wasm[..4] != b"\0asm" {
        return Err(Error::NotWasm {
            len: wasm.len() as u64,
        });
    }
    // Bytes 4..8 are the version and layer: 1.0 for a core module, 0xd.1
    // for a component.
    if wasm[4..8] == [1, 0, 0, 0] {
        return Err(Error::CoreModuleNotComponent);
    }
    Ok(())
}

/// Cranelift's engine settings, without the instance allocator (which
/// compiled code does not depend on): the same in a node and in its
/// compile children, so that the code one makes the other loads.
fn optimizing_config(fuel: bool, functions: &Arc<FunctionCache>) -> Result<Config> {
    let mut engine = Config::new();
    engine
        .enable_incremental_compilation(functions.clone())
        .map_err(|e| Error::Engine {
            reason: format!("{e:#}"),
        })?
        .strategy(wasmtime::Strategy::Cranelift)
        .wasm_component_model(true)
        .concurrency_support(false)
        .consume_fuel(fuel)
        .epoch_interruption(true)
        .memory_init_cow(true);
    Ok(engine)
}

/// An engine that only compiles, with a node's Cranelift settings (for a
/// compile child).
pub(crate) fn optimizing_engine(fuel: bool, functions: &Arc<FunctionCache>) -> Result<Engine> {
    Engine::new(&optimizing_config(fuel, functions)?).map_err(|e| Error::Engine {
        reason: format!("{e:#}"),
    })
}

/// Winch's engine: the same pool and fuel, no epochs (Winch has none; a
/// baseline invocation yields every [`crate::limits::BASELINE_YIELD_FUEL`]
/// instead, and the host's deadline timer ends it).
fn baseline_engine(config: &RuntimeConfig) -> Result<(Engine, Linker<InvocationCtx>)> {
    let mut baseline = Config::new();
    baseline
        .strategy(wasmtime::Strategy::Winch)
        .wasm_component_model(true)
        .concurrency_support(false)
        .consume_fuel(true)
        .memory_init_cow(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool_config(config)));
    // Baseline code lives for seconds and exists to answer soon: skip the
    // native-address → wasm-offset tables (a trap's backtrace still names
    // the functions) and the `.eh_frame` only native unwinders read
    // (wasmtime walks wasm frames by frame pointer). Measured on hello-js:
    // Winch's compile ~6 % faster (medians of 6 alternating runs each).
    baseline
        .generate_address_map(false)
        .native_unwind_info(false)
        // Winch compiles the functions; Cranelift still compiles the
        // component's trampolines, which need no optimizing either.
        .cranelift_opt_level(wasmtime::OptLevel::None);
    let engine_error = |e: wasmtime::Error| Error::Engine {
        reason: format!("the baseline (Winch) engine: {e:#}"),
    };
    let engine = Engine::new(&baseline).map_err(engine_error)?;
    let linker = linker(&engine).map_err(engine_error)?;
    Ok((engine, linker))
}

/// All of WASI 0.2 and `wasi:http`, so that real components (Rust std,
/// componentize-js) instantiate; nothing is granted through it.
fn linker(engine: &Engine) -> wasmtime::Result<Linker<InvocationCtx>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    Ok(linker)
}

fn pool_config(config: &RuntimeConfig) -> PoolingAllocationConfig {
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(config.instances_max)
        .total_core_instances(config.instances_max.saturating_mul(4))
        .total_memories(config.instances_max.saturating_mul(2))
        .total_tables(config.instances_max.saturating_mul(4))
        .total_stacks(config.instances_max)
        .max_memories_per_component(16)
        .max_tables_per_component(32)
        .max_core_instances_per_component(64)
        .max_component_instance_size(1 << 20)
        .max_core_instance_size(1 << 20)
        .max_memory_size(MEMORY_BYTES_MAX as usize)
        .table_elements(TABLE_ELEMENTS_MAX as usize)
        // Resetting a few resident pages with memset is far cheaper than
        // madvise + page faults on the next request.
        .linear_memory_keep_resident(2 << 20)
        .table_keep_resident(64 << 10)
        .pagemap_scan(Enabled::Auto);
    pool
}

fn spawn_epoch_ticker(engine: wasmtime::EngineWeak, stop: Arc<AtomicBool>) {
    let spawned = std::thread::Builder::new()
        .name("bonus-epoch".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(EPOCH_TICK);
                match engine.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => return,
                }
            }
        });
    if let Err(e) = spawned {
        // Without a ticker deadlines fall back to the host-side timeout.
        tracing::error!(error = %e, "cannot start the epoch ticker thread");
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn the_hottest_tier_up_goes_first_and_one_nobody_holds_is_dropped() {
        // (name, requests on Winch's code; None: no longer loaded)
        let mut queue = vec![
            ("bomb", Some(0)),
            ("gone", None),
            ("busy", Some(40)),
            ("quiet", Some(3)),
            ("also busy", Some(40)),
        ];
        let mut order = Vec::new();
        while let Some((name, _)) = hottest(&mut queue, |(_, heat)| *heat) {
            order.push(name);
        }
        assert_eq!(order, ["busy", "also busy", "quiet", "bomb"]);
        assert!(queue.is_empty());
        // Heat is read when a thread is free, not when the compile queued.
        let calls = [AtomicU64::new(0), AtomicU64::new(0)];
        let mut queue = vec![0usize, 1];
        calls[1].fetch_add(5, Ordering::Relaxed);
        let first = hottest(&mut queue, |i| Some(calls[*i].load(Ordering::Relaxed)));
        assert_eq!(first, Some(1));
    }

    fn this_threads_nice() -> i32 {
        // SAFETY: plain integers in and out.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
    }

    #[test]
    fn background_compiles_run_below_the_priority_of_requests() {
        let ours = this_threads_nice();
        let pool = background_pool().expect("the background pool starts");
        let theirs = pool.install(this_threads_nice);
        // Nice 10, or the process's own if it already runs nicer than that
        // (lowering a nice value needs privileges).
        assert!(
            theirs >= BACKGROUND_NICE && theirs >= ours,
            "background compiles at nice {theirs}, requests at {ours}"
        );
        assert_eq!(this_threads_nice(), ours, "the caller's priority changed");
    }
}
