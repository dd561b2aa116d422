//! The router's one error type. Errors a client causes are HTTP answers,
//! never a [`RouterError`]: these are the operator's.

/// Why the router could not start, or a route table was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RouterError {
    /// The listen address is taken or not ours.
    #[error("cannot listen on {addr}: {source}; is another router or node already using it?")]
    Bind {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A serving thread or its runtime could not start.
    #[error("cannot start a router thread: {source}")]
    Start {
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A limit that cannot work (zero period or capacity).
    #[error("invalid router limits: {reason}")]
    InvalidLimits {
        /// Which one and why.
        reason: String,
    },
    /// A function name that is not a DNS label.
    #[error("invalid function name {name:?}: use 1 to 63 lowercase letters, digits or '-'")]
    InvalidName {
        /// The rejected name.
        name: String,
    },
    /// A name whose splits carry no weight.
    #[error("function {name:?} has no manifest with a weight above zero")]
    EmptyRoute {
        /// The name.
        name: String,
    },
    /// A worker endpoint that is not `http://host:port`.
    #[error("worker {worker} has endpoint {url:?}: expected http://host:port")]
    InvalidWorkerUrl {
        /// The worker's key.
        worker: bonus_ids::PublicKey,
        /// The rejected endpoint.
        url: String,
    },
}
