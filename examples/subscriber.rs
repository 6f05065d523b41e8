//! A subscriber that prints every list a discovery server publishes, for
//! trying the library across terminals.
//!
//! ```text
//! RUST_LOG=debug cargo run --example subscriber -- tcp://127.0.0.1:40008
//! ```
//!
//! Argument: PUBLISH_URL. It runs until killed (Ctrl-C).

use nng_discovery::Subscriber;

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [publish] = args.as_slice() else {
        eprintln!("usage: subscriber PUBLISH_URL   (e.g. tcp://127.0.0.1:40008)");
        std::process::exit(2);
    };
    let subscriber = match Subscriber::new(publish) {
        Ok(subscriber) => subscriber,
        Err(e) => {
            eprintln!("subscriber: {e}");
            std::process::exit(1);
        }
    };
    for list in subscriber.changes() {
        println!("peers: {list:?}");
    }
}
