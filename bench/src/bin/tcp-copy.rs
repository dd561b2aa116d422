//! The anchor for artifact distribution: one plain TCP copy of a file's
//! bytes to one receiver over loopback, in milliseconds (median of runs).
//!
//! Usage: `tcp-copy FILE [RUNS]`

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .ok_or_else(|| anyhow::anyhow!("usage: tcp-copy FILE [RUNS]"))?;
    let runs: usize = args.next().map(|n| n.parse()).transpose()?.unwrap_or(5);
    let bytes = std::fs::read(&path)?;
    let mut samples_ms = Vec::new();
    for _ in 0..runs {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let expected = bytes.len();
        let receiver = std::thread::spawn(move || -> std::io::Result<Vec<u8>> {
            let (mut stream, _) = listener.accept()?;
            let mut received = Vec::with_capacity(expected);
            stream.read_to_end(&mut received)?;
            Ok(received)
        });
        let started = Instant::now();
        let mut stream = TcpStream::connect(addr)?;
        stream.write_all(&bytes)?;
        drop(stream);
        let received = receiver
            .join()
            .map_err(|_| anyhow::anyhow!("receiver panicked"))??;
        samples_ms.push(started.elapsed().as_secs_f64() * 1e3);
        anyhow::ensure!(received.len() == bytes.len(), "short copy");
    }
    samples_ms.sort_by(f64::total_cmp);
    println!("{:.2}", samples_ms[samples_ms.len() / 2]);
    Ok(())
}
