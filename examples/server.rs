//! A discovery server, for trying the library across terminals.
//!
//! ```text
//! RUST_LOG=info cargo run --example server -- tcp://127.0.0.1:40007 tcp://127.0.0.1:40008
//! ```
//!
//! Arguments: SURVEY_URL PUBLISH_URL. It prints each new list and runs until
//! killed (Ctrl-C). The `nng-discovery server` daemon is the production form.

use nng_discovery::{Options, Server};

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [survey, publish] = args.as_slice() else {
        eprintln!("usage: server SURVEY_URL PUBLISH_URL   (e.g. tcp://127.0.0.1:40007 tcp://127.0.0.1:40008)");
        std::process::exit(2);
    };
    let server = match Server::new(survey, publish, Options::default()) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("server: {e}");
            std::process::exit(1);
        }
    };
    println!(
        "surveying on {}, publishing on {}",
        server.survey_url(),
        server.publish_url()
    );
    for list in server.changes() {
        println!("peers: {list:?}");
    }
}
