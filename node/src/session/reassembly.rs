//! A message that arrives in fragments (RFC 6455 section 5.4): the first frame's
//! opcode and the bytes so far, bounded by the message size limit.

use super::close::{transport_close, ws_close};
use crate::conn::outbound::CloseReason;
use fastwebsockets::OpCode;

/// The fragmented message in progress, if any.
pub(super) struct Reassembly {
    partial: Option<(OpCode, Vec<u8>)>,
    /// Largest whole message, bytes.
    max: usize,
}

impl Reassembly {
    /// Nothing in progress; messages up to `max` bytes.
    pub(super) fn new(max: usize) -> Self {
        Reassembly { partial: None, max }
    }

    /// Whether a fragmented message is in progress (a new text or binary frame is then
    /// a protocol error).
    pub(super) fn in_progress(&self) -> bool {
        self.partial.is_some()
    }

    /// The first frame of a fragmented message; the caller checked `in_progress`.
    pub(super) fn start(&mut self, opcode: OpCode, payload: &[u8]) {
        self.partial = Some((opcode, payload.to_vec()));
    }

    /// A continuation frame: `Ok(Some(message))` when it completes the message,
    /// `Ok(None)` while more is to come, `Err` with the close for a continuation out of
    /// place or a message over the limit. (The first frame's type was checked against
    /// the connection's encoding before [`Reassembly::start`].)
    pub(super) fn next(
        &mut self,
        payload: &[u8],
        fin: bool,
    ) -> Result<Option<Vec<u8>>, CloseReason> {
        let Some((_, buf)) = self.partial.as_mut() else {
            return Err(transport_close(
                ws_close::PROTOCOL_ERROR,
                "unexpected continuation",
            ));
        };
        if buf.len() + payload.len() > self.max {
            return Err(transport_close(
                ws_close::MESSAGE_TOO_BIG,
                "message too big",
            ));
        }
        buf.extend_from_slice(payload);
        if !fin {
            return Ok(None);
        }
        Ok(self.partial.take().map(|(_, buf)| buf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragments_make_one_message() {
        let mut r = Reassembly::new(10);
        assert!(!r.in_progress());
        r.start(OpCode::Text, b"ab");
        assert!(r.in_progress());
        assert_eq!(r.next(b"cd", false), Ok(None));
        assert_eq!(r.next(b"e", true), Ok(Some(b"abcde".to_vec())));
        assert!(!r.in_progress());
    }

    #[test]
    fn out_of_place_or_too_big_close() {
        let mut r = Reassembly::new(4);
        assert_eq!(
            r.next(b"x", true).unwrap_err().code,
            ws_close::PROTOCOL_ERROR
        );
        r.start(OpCode::Text, b"abc");
        assert_eq!(
            r.next(b"de", true).unwrap_err().code,
            ws_close::MESSAGE_TOO_BIG
        );
        let mut r = Reassembly::new(4);
        r.start(OpCode::Binary, b"a");
        assert_eq!(r.next(b"b", true), Ok(Some(b"ab".to_vec())));
    }
}
