//! Microseconds per invocation (fresh store + instance + `handle` call +
//! response collection) of a component, with fuel counting on and off.
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
                let request = http::Request::get(format!("http://localhost{path}"))
                    .body(http_body_util::Empty::<bytes::Bytes>::new())
                    .expect("valid request");
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
        samples_us.sort_by(f64::total_cmp);
        let pick = |q: f64| samples_us[((samples_us.len() - 1) as f64 * q) as usize];
        println!(
            "fuel={:<5} invocations={iterations} p50={:.1}us p99={:.1}us",
            if fuel { "on" } else { "off" },
            pick(0.5),
            pick(0.99)
        );
    }
    Ok(())
}
