//! With the `tls` feature, links mbedTLS: `nng-sys` builds NNG with its TLS
//! transport (`nng-tls`) but does not link the library that transport needs.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_TLS").is_some() {
        // Order matters for static linking: mbedtls needs mbedx509 needs
        // mbedcrypto.
        for lib in ["mbedtls", "mbedx509", "mbedcrypto"] {
            println!("cargo:rustc-link-lib={lib}");
        }
    }
}
