//! The anchors for artifact distribution: plain TCP copies of a file's
//! bytes over loopback, in milliseconds (median of runs). With one
//! receiver this is the anchor; with N it is N copies at once from
//! one sender process (a thread per connection), the least time this
//! machine needs to put the bytes in N places with no verification and no
//! store at all.
//!
//! Usage: `tcp-copy FILE [RUNS] [RECEIVERS]`

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = || anyhow::anyhow!("usage: tcp-copy FILE [RUNS] [RECEIVERS]");
    let path = args.next().ok_or_else(usage)?;
    let runs: usize = args.next().map(|n| n.parse()).transpose()?.unwrap_or(5);
    let receivers: usize = args.next().map(|n| n.parse()).transpose()?.unwrap_or(1);
    anyhow::ensure!(runs > 0 && receivers > 0, usage());
    let bytes = Arc::new(std::fs::read(&path)?);
    let mut samples_ms = Vec::new();
    for _ in 0..runs {
        let mut received = Vec::with_capacity(receivers);
        let mut addrs = Vec::with_capacity(receivers);
        for _ in 0..receivers {
            let (addr, receiver) = receive(bytes.len())?;
            addrs.push(addr);
            received.push(receiver);
        }
        let started = Instant::now();
        let sent: Vec<JoinHandle<std::io::Result<()>>> = addrs
            .into_iter()
            .map(|addr| {
                let bytes = bytes.clone();
                std::thread::spawn(move || TcpStream::connect(addr)?.write_all(&bytes))
            })
            .collect();
        for sender in sent {
            sender
                .join()
                .map_err(|_| anyhow::anyhow!("sender panicked"))??;
        }
        for receiver in received {
            let copy = receiver
                .join()
                .map_err(|_| anyhow::anyhow!("receiver panicked"))??;
            anyhow::ensure!(copy.len() == bytes.len(), "short copy");
        }
        samples_ms.push(started.elapsed().as_secs_f64() * 1e3);
    }
    samples_ms.sort_by(f64::total_cmp);
    println!("{:.2}", samples_ms[samples_ms.len() / 2]);
    Ok(())
}

/// A listener on loopback and the thread that reads one connection's bytes
/// into fresh memory, as a fetcher must.
fn receive(expected: usize) -> std::io::Result<(SocketAddr, JoinHandle<std::io::Result<Vec<u8>>>)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let receiver = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept()?;
        let mut received = Vec::with_capacity(expected);
        stream.read_to_end(&mut received)?;
        Ok(received)
    });
    Ok((addr, receiver))
}
