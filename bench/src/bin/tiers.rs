//! Tiered compilation, per component: compile time with Winch (the
//! baseline tier) and with Cranelift, the time to a cold first response on
//! each, and steady-state microseconds per invocation on each tier, all in
//! this one run, with Cranelift as the anchor.
//!
//! Usage: `tiers [ITERATIONS] COMPONENT.wasm[=PATH]...`
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
    if args.is_empty() {
        anyhow::bail!("usage: tiers [ITERATIONS] COMPONENT.wasm[=PATH]...");
    }
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    println!(
        "{:<14} {:>11} {:>11} {:>9} {:>12} {:>12} {:>12} {:>9}",
        "component",
        "winch ms",
        "crane ms",
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
        let optimizing = Runtime::new(RuntimeConfig::default())?;
        let started = Instant::now();
        let optimized = optimizing.load(&wasm)?;
        let cranelift = started.elapsed();
        let cranelift_us = tokio.block_on(median_us(&optimized, path, iterations))?;
        println!(
            "{:<14} {:>11.1} {:>11.1} {:>9.1} {:>12.1} {:>12.1} {:>12.1} {:>9.2}",
            name,
            ms(winch),
            ms(cranelift),
            ms(cranelift) / ms(winch),
            ms(cold_first),
            winch_us,
            cranelift_us,
            cranelift_us / winch_us
        );
    }
    println!(
        "compile× = Cranelift's compile time / Winch's; speed× = Winch's \
         throughput relative to Cranelift's (1 = same)."
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
