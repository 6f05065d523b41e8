//! A client that registers a service name, for trying the library across
//! terminals.
//!
//! ```text
//! RUST_LOG=debug cargo run --example client -- tcp://127.0.0.1:40007 http://10.0.0.1:8080
//! cargo run --example client -- tcp://127.0.0.1:40007 http://10.0.0.1:8080 tcp://127.0.0.1:40008
//! ```
//!
//! Arguments: SURVEY_URL NAME [PUBLISH_URL]. With a publish URL it also
//! prints each list it receives. It runs until killed (Ctrl-C); the server
//! sees it leave as soon as the process ends.

use nng_discovery::Client;

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.as_slice() {
        [survey, name] => Client::new(survey, name),
        [survey, name, publish] => Client::with_subscription(survey, publish, name),
        _ => {
            eprintln!("usage: client SURVEY_URL NAME [PUBLISH_URL]");
            std::process::exit(2);
        }
    };
    let client = match result {
        Ok(client) => client,
        Err(e) => {
            eprintln!("client: {e}");
            std::process::exit(1);
        }
    };
    println!(
        "answering surveys from {} as {}",
        client.survey_url(),
        client.service()
    );
    match client.peers() {
        Ok(changes) => {
            for list in changes {
                println!("peers: {list:?}");
            }
        }
        // No subscription: just keep answering.
        Err(_) => loop {
            std::thread::park();
        },
    }
}
