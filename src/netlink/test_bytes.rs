//! Golden-bytes helpers shared by the codec tests of this module.

use netlink_packet_core::Emitable;

/// The bytes `text` spells (white space ignored: golden data is wrapped).
pub fn hex(text: &str) -> Vec<u8> {
    crate::hex::decode(text).expect("golden hex")
}

/// `msg` as the bytes the crate emits for it.
pub fn emit<T: Emitable + ?Sized>(msg: &T) -> Vec<u8> {
    let mut buf = vec![0; msg.buffer_len()];
    msg.emit(&mut buf);
    buf
}
