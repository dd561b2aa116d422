//! A Byzantine voter for simulated networks, shared by the test crates:
//! commonware's conflicter on a validator's vote channel answers each
//! notarize with one for a random payload, so it signs conflicting votes
//! (an equivocation the ledger must turn into a `Slash`).

use bonus_ledger::chain;
use bonus_ledger::sim::{SimChannels, SimNetwork, key};
use commonware_consensus::simplex::mocks::conflicter::{Config, Conflicter};
use commonware_runtime::{Handle, Supervisor as _, deterministic};

/// Runs the conflicter as validator `index` of `net` on its channels.
pub fn start(
    context: &deterministic::Context,
    net: &SimNetwork,
    index: usize,
    channels: SimChannels,
) -> Handle<()> {
    let chain_id = *net.chains[0].state().chain_id();
    let scheme = chain::Scheme::signer(
        &chain::namespace(&chain_id),
        commonware_utils::ordered::Set::try_from(net.public.clone()).expect("distinct keys"),
        chain::consensus_key(&key(index)),
    )
    .expect("a member of the validator set");
    Conflicter::<_, _, commonware_cryptography::Sha256>::new(
        context.child("conflicter"),
        Config { scheme },
    )
    .start(channels.votes)
}
