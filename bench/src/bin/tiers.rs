//! Tiered compilation, per component: compile time with Winch (the
//! baseline tier) and with Cranelift, the time to a cold first response on
//! each, and steady-state microseconds per invocation on each tier, all in
//! this one run, with Cranelift as the anchor.
//!
//! With `--warm-with OTHER.wasm`, also Cranelift's compile time on a node
//! that compiled OTHER before (a runtime reopened on the cache directory
//! OTHER was compiled into, so only Cranelift's per-function cache, not
//! the whole-component cache, can serve): what a new JS function costs a
//! node that has compiled any JS function before.
//!
//! With `--baseline-only`, only Winch's figures (compile and cold first
//! response), for quick A/B runs of the baseline tier.
//!
//! Usage: `tiers [ITERATIONS] [--baseline-only] [--warm-with OTHER.wasm] COMPONENT.wasm[=PATH]...`
//! (PATH is the request path, `/` by default; `fib.wasm=/?n=20`).

use bonus_runtime::{
    Compiler, Function, InvokeParams, Limits, RequestId, Runtime, RuntimeConfig, Tier,
};
use std::time::{Duration, Instant};

fn main() -> anyhow::Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let iterations = match args.first().map(|a| a.parse::<usize>()) {
        Some(Ok(n)) => {
            args.remove(0);
            n
        }
        _ => 2_000,
    };
    let baseline_only = match args.iter().position(|a| a == "--baseline-only") {
        Some(at) => {
            args.remove(at);
            true
        }
        None => false,
    };
    let warm_dir = match args.iter().position(|a| a == "--warm-with") {
        Some(at) if at + 1 < args.len() => {
            let other = args.remove(at + 1);
            args.remove(at);
            let dir = tempfile::tempdir()?;
            let warming = Runtime::new(RuntimeConfig {
                cache_dir: Some(dir.path().to_owned()),
                ..RuntimeConfig::default()
            })?;
            let started = Instant::now();
            warming.load(&std::fs::read(&other)?)?;
            let took = started.elapsed();
            let log_bytes = std::fs::metadata(dir.path().join("functions.log"))?.len();
            println!(
                "warmed with {other}: {:.1} ms, {} functions cached, log {:.1} MiB",
                ms(took),
                warming.stats().functions_cached,
                log_bytes as f64 / (1 << 20) as f64
            );
            Some(dir)
        }
        Some(_) => anyhow::bail!("--warm-with needs a component"),
        None => None,
    };
    if args.is_empty() {
        anyhow::bail!(
            "usage: tiers [ITERATIONS] [--baseline-only] [--warm-with OTHER.wasm] COMPONENT.wasm[=PATH]..."
        );
    }
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    println!(
        "{:<14} {:>11} {:>11} {:>11} {:>9} {:>12} {:>12} {:>12} {:>9}",
        "component",
        "winch ms",
        "crane ms",
        "warm ms",
        "compile×",
        "cold 1st ms",
        "winch us/op",
        "crane us/op",
        "speed×"
    );
    for arg in &args {
        let (file, path) = arg.split_once('=').unwrap_or((arg, "/"));
        let wasm = std::fs::read(file)?;
        let name = std::path::Path::new(file)
            .file_stem()
            .map_or("?".into(), |s| s.to_string_lossy().into_owned());
        // Baseline: Winch only, so no background compile competes with
        // the measurement (a tiered node starts on exactly this code).
        let tiered = Runtime::new(RuntimeConfig {
            compiler: Compiler::Winch,
            ..RuntimeConfig::default()
        })?;
        let started = Instant::now();
        let baseline = tiered.load(&wasm)?;
        let winch = started.elapsed();
        anyhow::ensure!(
            baseline.tier() == Tier::Baseline,
            "not on the baseline tier"
        );
        let first = tokio.block_on(invoke(&baseline, path, 0))?;
        let cold_first = winch + first;
        let winch_us = tokio.block_on(median_us(&baseline, path, iterations))?;
        drop((baseline, tiered));
        if baseline_only {
            println!(
                "{:<14} {:>11.1} {:>11} {:>11} {:>9} {:>12.1} {:>12.1}",
                name,
                ms(winch),
                "-",
                "-",
                "-",
                ms(cold_first),
                winch_us
            );
            continue;
        }
        let optimizing = Runtime::new(RuntimeConfig::default())?;
        let started = Instant::now();
        let optimized = optimizing.load(&wasm)?;
        let cranelift = started.elapsed();
        let cranelift_us = tokio.block_on(median_us(&optimized, path, iterations))?;
        drop((optimized, optimizing));
        let warm = match &warm_dir {
            Some(dir) => {
                // A copy, so that this component's own functions do not
                // warm the next one's measurement.
                let copy = tempfile::tempdir()?;
                std::fs::copy(
                    dir.path().join("functions.log"),
                    copy.path().join("functions.log"),
                )?;
                let started = Instant::now();
                let warmed = Runtime::new(RuntimeConfig {
                    cache_dir: Some(copy.path().to_owned()),
                    ..RuntimeConfig::default()
                })?;
                let function = warmed.load(&wasm)?;
                let took = started.elapsed();
                tokio.block_on(invoke(&function, path, 0))?;
                format!("{:.1}", ms(took))
            }
            None => "-".into(),
        };
        println!(
            "{:<14} {:>11.1} {:>11.1} {:>11} {:>9.1} {:>12.1} {:>12.1} {:>12.1} {:>9.2}",
            name,
            ms(winch),
            ms(cranelift),
            warm,
            ms(cranelift) / ms(winch),
            ms(cold_first),
            winch_us,
            cranelift_us,
            cranelift_us / winch_us
        );
    }
    println!(
        "compile× = Cranelift's compile time / Winch's; warm = Cranelift with \
         the per-function cache of --warm-with (log load included); speed× = \
         Winch's throughput relative to Cranelift's (1 = same)."
    );
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

async fn invoke(function: &Function, path: &str, n: usize) -> anyhow::Result<Duration> {
    let request = http::Request::get(format!("http://localhost{path}"))
        .body(http_body_util::Empty::<bytes::Bytes>::new())?;
    let params = InvokeParams {
        request_id: RequestId::from_u128(n as u128),
        random_seed: [0; 32],
        limits: Limits::DEFAULT,
        caps: Default::default(),
    };
    let started = Instant::now();
    let invocation = function.invoke(request, &params).await;
    let took = started.elapsed();
    anyhow::ensure!(
        invocation.response.is_some(),
        "{path}: {:?}",
        invocation.outcome
    );
    Ok(took)
}

async fn median_us(function: &Function, path: &str, iterations: usize) -> anyhow::Result<f64> {
    let mut samples = Vec::with_capacity(iterations);
    for n in 0..iterations {
        samples.push(invoke(function, path, n).await?.as_secs_f64() * 1e6);
    }
    samples.sort_by(f64::total_cmp);
    Ok(samples[samples.len() / 2])
}
