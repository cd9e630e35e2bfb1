//! Closes for transport problems (RFC 6455 codes, no `disconnect` push), and the
//! answer to a client's close frame.

use super::frames::ReadError;
use crate::conn::outbound::CloseReason;
use herald_shared::protocol::{DisconnectCode, Encoding};

/// RFC 6455 close codes used for transport-level problems.
pub(super) mod ws_close {
    /// Normal closure.
    pub(crate) const NORMAL: u16 = 1000;
    /// The peer broke the WebSocket protocol.
    pub(crate) const PROTOCOL_ERROR: u16 = 1002;
    /// A text message that is not UTF-8.
    pub(crate) const INVALID_PAYLOAD: u16 = 1007;
    /// A message over the size limit.
    pub(crate) const MESSAGE_TOO_BIG: u16 = 1009;
}

/// A close with an RFC 6455 code and no `disconnect` push.
pub(super) fn transport_close(code: u16, reason: &'static str) -> CloseReason {
    CloseReason {
        code,
        reason: reason.into(),
        push: false,
    }
}

/// The close for a data frame of the other encoding's type: a binary frame on a JSON
/// connection, a text frame on a Protobuf one. 3501 (bad request), terminal for the
/// SDKs, as Centrifugo v6.9.1 closes for a JSON text frame on a Protobuf connection (it
/// reads every frame in the connection's encoding, whatever its type, so that is where
/// it fails); the reason names the frame type. No `disconnect` push: the client
/// evidently does not speak the encoding it would come in. Unlike Centrifugo, a frame
/// of the wrong type is refused even when its payload would decode (README,
/// "Differences from Centrifugo").
pub(super) fn wrong_frame_type(encoding: Encoding) -> CloseReason {
    CloseReason {
        code: DisconnectCode::BadRequest.code(),
        reason: match encoding {
            Encoding::Json => "bad request: binary frame on a JSON connection",
            Encoding::Protobuf => "bad request: text frame on a Protobuf connection",
        }
        .into(),
        push: false,
    }
}

/// How to answer a client's close frame (RFC 6455 section 5.5.1): echo its code, or
/// 1002 for a malformed close (1 byte, or a code no endpoint may send), 1007 for a
/// reason that is not UTF-8.
pub(super) fn close_answer(payload: &[u8]) -> CloseReason {
    match payload {
        [] => transport_close(ws_close::NORMAL, ""),
        [_] => transport_close(ws_close::PROTOCOL_ERROR, "invalid close frame"),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if std::str::from_utf8(reason).is_err() {
                transport_close(ws_close::INVALID_PAYLOAD, "invalid UTF-8")
            } else if !fastwebsockets::CloseCode::from(code).is_allowed() {
                transport_close(ws_close::PROTOCOL_ERROR, "invalid close code")
            } else {
                transport_close(code, "")
            }
        }
    }
}

/// The close code for a read error, or `None` when the peer is simply gone.
pub(super) fn close_for_error(e: &ReadError) -> Option<CloseReason> {
    Some(match e {
        ReadError::TooBig => transport_close(ws_close::MESSAGE_TOO_BIG, "message too big"),
        ReadError::Protocol(why) => transport_close(ws_close::PROTOCOL_ERROR, why),
        ReadError::Eof | ReadError::Io(_) => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_frames_are_echoed_or_refused() {
        let code = |p: &[u8]| close_answer(p).code;
        assert_eq!(code(b""), 1000);
        assert_eq!(code(&[0x03]), 1002, "one byte");
        assert_eq!(code(&4000u16.to_be_bytes()), 4000);
        assert_eq!(code(b"\x03\xe8bye"), 1000);
        assert_eq!(code(&1005u16.to_be_bytes()), 1002, "reserved, never sent");
        assert_eq!(code(&999u16.to_be_bytes()), 1002);
        assert_eq!(code(b"\x03\xe8\xff"), 1007, "reason not UTF-8");
    }
}
