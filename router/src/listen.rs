//! Listening sockets: one per serving thread, all on one address.

use std::net::SocketAddr;

/// Pending connections the kernel queues per listener.
const LISTEN_BACKLOG: i32 = 1024;

/// `count` (at least one) listeners on one address with `SO_REUSEPORT`, so
/// that one runtime per thread accepts its own share of the connections
/// (the kernel spreads them): the first binds `addr` (port 0 picks one),
/// the rest bind the address it got. Fails if anyone listens on `addr`
/// already. The router, the worker's API and `bonus serve` all serve this
/// way.
pub fn reuseport_listeners(
    addr: SocketAddr,
    count: usize,
) -> std::io::Result<Vec<std::net::TcpListener>> {
    if addr.port() != 0 {
        // With SO_REUSEPORT a second server on the same port would bind
        // too and silently take a share of the connections: first make
        // sure nobody listens there (a plain bind fails if anyone does).
        drop(std::net::TcpListener::bind(addr)?);
    }
    let first = reuseport_listener(addr)?;
    let bound = first.local_addr()?;
    let mut listeners = vec![first];
    for _ in 1..count {
        listeners.push(reuseport_listener(bound)?);
    }
    Ok(listeners)
}

fn reuseport_listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}
