//! What counting costs on the chat path, per call, in nanoseconds:
//! `cargo run --release -p switchboard-metrics --example cost`.
//!
//! One chat message costs an edge about one frame received, four frames
//! written and one JetStream acknowledgement observed (docs/benchmarks.md).

use std::hint::black_box;
use std::time::Instant;

use switchboard_metrics::{bus, edge};

const CALLS: u32 = 10_000_000;

fn per_call(what: &str, mut f: impl FnMut()) -> f64 {
    let started = Instant::now();
    for _ in 0..CALLS {
        f();
    }
    let ns = started.elapsed().as_nanos() as f64 / f64::from(CALLS);
    println!("{what:<44} {ns:6.1} ns");
    ns
}

fn main() {
    edge::init();
    bus::init();
    let edge = edge::edge();
    let message = r#"{"type":"message","conversation_id":"c","seq":7,"id":"r","text":"hi"}"#;
    let delivered = r#"{"type":"delivered","conversation_id":"c","seq":7}"#;
    let received = per_call("frame received (by type)", || {
        edge.received(black_box("send"))
    });
    let sent = per_call("frame written (type read from its JSON)", || {
        edge.sent(black_box(message))
    });
    let late = per_call("frame written (a type late in the list)", || {
        edge.sent(black_box(delivered))
    });
    let ack = per_call("publish acknowledged (Instant::now + observe)", || {
        bus::bus().acknowledged(black_box(Instant::now()))
    });
    println!(
        "one chat message on an edge (1 received, 4 written, 1 ack): {:.0} ns",
        received + 2.0 * sent + 2.0 * late + ack
    );
}
