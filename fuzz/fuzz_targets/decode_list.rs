//! Any bytes off the wire: decoding never panics, and what it accepts is a
//! sorted, unique list of valid names that survives a round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nng_discovery::wire::{decode_list, encode_list, parse_name, validate_name};

fuzz_target!(|data: &[u8]| {
    // Answers: parse_name accepts exactly what validate_name accepts.
    if let Ok(name) = parse_name(data) {
        assert_eq!(validate_name(name), Ok(()));
    }
    let Ok(list) = decode_list(data) else { return };
    for name in &list {
        assert_eq!(validate_name(name), Ok(()));
    }
    assert!(list.windows(2).all(|w| w[0] < w[1]), "sorted and unique");
    let mut body = Vec::new();
    encode_list(list.iter().map(String::as_str), &mut body);
    assert_eq!(decode_list(&body).as_ref(), Ok(&list));
});
