//! X25519 as the Double Ratchet does it: `KeyPair::agree` (on the Edwards form when the peer's
//! key is on the curve, see `pacerelle_core::e2ee::keys`) against x25519-dalek's Montgomery
//! ladder (what `agree` used before), and a key generation (fixed-base). See BENCHMARKS.md,
//! "X25519".
//!
//! `cargo bench -p pacerelle-conformance --bench x25519`.

use criterion::{Criterion, criterion_group};
use pacerelle_core::e2ee::keys::KeyPair;
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::hint::black_box;
use std::time::Duration;

fn x25519(c: &mut Criterion) {
    let rng = &mut StdRng::seed_from_u64(1);
    let (ours, theirs) = (KeyPair::generate(rng), KeyPair::generate(rng));
    let (scalar, u) = (*ours.private_bytes(), *theirs.public().u_bytes());
    let mut group = c.benchmark_group("x25519");
    group.bench_function("agree", |b| b.iter(|| black_box(ours.agree(black_box(&theirs.public())))));
    group.bench_function("ladder", |b| b.iter(|| black_box(x25519_dalek::x25519(black_box(scalar), black_box(u)))));
    group.bench_function("generate", |b| b.iter(|| black_box(KeyPair::generate(rng).public())));
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = x25519
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
