//! Microseconds per invocation (fresh store + instance + `handle` call +
//! response collection) of a component, with fuel counting on and off, and
//! beside it the plain wasmtime host ([`bonus_bench::plain`]) in the same
//! run: what Bonus's own per-invocation work costs.
//!
//! Usage: `instantiate COMPONENT.wasm [PATH] [ITERATIONS]`

use bonus_runtime::{InvokeParams, Limits, RequestId, Runtime, RuntimeConfig};
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let wasm_path = args
        .next()
        .ok_or_else(|| anyhow::anyhow!("usage: instantiate COMPONENT.wasm [PATH] [ITERATIONS]"))?;
    let path = args.next().unwrap_or_else(|| "/".into());
    let iterations: usize = args
        .next()
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(20_000);
    let wasm = std::fs::read(&wasm_path)?;
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    for fuel in [true, false] {
        let runtime = Runtime::new(RuntimeConfig {
            fuel,
            ..RuntimeConfig::default()
        })?;
        let function = runtime.load(&wasm)?;
        let mut samples_us = Vec::with_capacity(iterations);
        tokio.block_on(async {
            for idx in 0..iterations {
                let request = get(&path);
                let params = InvokeParams {
                    request_id: RequestId::from_u128(idx as u128),
                    random_seed: [0; 32],
                    limits: Limits::DEFAULT,
                    caps: Default::default(),
                };
                let started = Instant::now();
                let invocation = function.invoke(request, &params).await;
                samples_us.push(started.elapsed().as_secs_f64() * 1e6);
                assert!(invocation.response.is_some(), "{:?}", invocation.outcome);
            }
        });
        report(
            &format!("bonus fuel={}", if fuel { "on" } else { "off" }),
            iterations,
            &mut samples_us,
        );
    }
    for fuel in [true, false] {
        let host = bonus_bench::plain::PlainHost::new(&wasm, fuel)
            .map_err(|e| anyhow::anyhow!("{e:#}"))?;
        let mut samples_us = Vec::with_capacity(iterations);
        tokio.block_on(async {
            for _ in 0..iterations {
                let request = get(&path);
                let started = Instant::now();
                let response = host.handle(request).await.expect("the anchor answers");
                let body = http_body_util::BodyExt::collect(response.into_body()).await;
                samples_us.push(started.elapsed().as_secs_f64() * 1e6);
                assert!(body.is_ok());
            }
        });
        report(
            &format!("plain fuel={}", if fuel { "on" } else { "off" }),
            iterations,
            &mut samples_us,
        );
    }
    // Where the plain host's time goes, phase by phase (medians).
    let host =
        bonus_bench::plain::PlainHost::new(&wasm, true).map_err(|e| anyhow::anyhow!("{e:#}"))?;
    let uri = format!("http://localhost{path}");
    let mut phases = Vec::with_capacity(iterations);
    tokio.block_on(async {
        for _ in 0..iterations {
            phases.push(
                host.phases(&uri)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e:#}"))?,
            );
        }
        Ok::<_, anyhow::Error>(())
    })?;
    let median = |pick: fn(&bonus_bench::plain::Phases) -> u64| {
        let mut values: Vec<u64> = phases.iter().map(pick).collect();
        values.sort_unstable();
        values[values.len() / 2] as f64 / 1000.0
    };
    println!(
        "plain fuel=on phases (medians, us): store {:.1}, resources {:.1}, instantiate {:.1}, call {:.1}, drop {:.1}, response {:.1}",
        median(|p| p.store_ns),
        median(|p| p.resources_ns),
        median(|p| p.instantiate_ns),
        median(|p| p.call_ns),
        median(|p| p.drop_ns),
        median(|p| p.response_ns),
    );
    // Throughput with 16 invocations in flight on the one thread, as under
    // a load generator with 16 connections.
    let tasks = 16;
    let runtime = Runtime::new(RuntimeConfig::default())?;
    let function = runtime.load(&wasm)?;
    let host =
        bonus_bench::plain::PlainHost::new(&wasm, true).map_err(|e| anyhow::anyhow!("{e:#}"))?;
    for round in 0..3 {
        let started = Instant::now();
        tokio.block_on(async {
            let mut handles = Vec::new();
            for task in 0..tasks {
                let (function, path) = (function.clone(), path.clone());
                handles.push(tokio::spawn(async move {
                    for idx in 0..iterations / tasks {
                        let request = get(&path);
                        let params = InvokeParams {
                            request_id: RequestId::from_u128((task * iterations + idx) as u128),
                            random_seed: [0; 32],
                            limits: Limits::DEFAULT,
                            caps: Default::default(),
                        };
                        let invocation = function.invoke(request, &params).await;
                        assert!(invocation.response.is_some(), "{:?}", invocation.outcome);
                    }
                }));
            }
            for handle in handles {
                handle.await.expect("a task finished");
            }
        });
        let bonus_us = started.elapsed().as_secs_f64() * 1e6 / iterations as f64;
        let started = Instant::now();
        tokio.block_on(async {
            let mut handles = Vec::new();
            for _ in 0..tasks {
                let (host, path) = (host.clone(), path.clone());
                handles.push(tokio::spawn(async move {
                    for _ in 0..iterations / tasks {
                        let request = get(&path);
                        let response = host.handle(request).await.expect("the anchor answers");
                        let body = http_body_util::BodyExt::collect(response.into_body()).await;
                        assert!(body.is_ok());
                    }
                }));
            }
            for handle in handles {
                handle.await.expect("a task finished");
            }
        });
        let plain_us = started.elapsed().as_secs_f64() * 1e6 / iterations as f64;
        println!(
            "{tasks} in flight, round {round}: bonus {bonus_us:.1}us/invocation, plain {plain_us:.1}us ({:.2}x)",
            plain_us / bonus_us
        );
    }
    Ok(())
}

fn get(path: &str) -> http::Request<http_body_util::Empty<bytes::Bytes>> {
    http::Request::get(format!("http://localhost{path}"))
        .body(http_body_util::Empty::new())
        .expect("valid request")
}

fn report(name: &str, iterations: usize, samples_us: &mut [f64]) {
    samples_us.sort_by(f64::total_cmp);
    let pick = |q: f64| samples_us[((samples_us.len() - 1) as f64 * q) as usize];
    println!(
        "{name:<15} invocations={iterations} p50={:.1}us p99={:.1}us",
        pick(0.5),
        pick(0.99)
    );
}
