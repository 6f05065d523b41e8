//! The `nng-discovery` daemon (placeholder until the CLI lands).
fn main() {
    env_logger::init();
    eprintln!("nng-discovery: not implemented yet");
    std::process::exit(2);
}
