//! Error and disconnect codes, as the client protocol publishes them.
//!
//! Disconnect codes travel as WebSocket close codes (and in `disconnect` pushes).
//! The SDKs decide whether to reconnect from the range: 3000–3499 and 4000–4499 mean
//! "reconnect", 3500–3999 and 4500–4999 mean "do not".

/// Error codes sent in `{"id":N,"error":{"code":C,"message":"..."}}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum ErrorCode {
    /// Something failed inside the server; the client may retry.
    Internal = 100,
    /// The connection or the command is not authorised.
    Unauthorized = 101,
    /// The channel's namespace does not exist.
    UnknownChannel = 102,
    /// The client may not do this on this channel.
    PermissionDenied = 103,
    /// The method does not exist (or is not offered here).
    MethodNotFound = 104,
    /// The client is already subscribed to the channel.
    AlreadySubscribed = 105,
    /// A configured limit was reached (channels per connection, …).
    LimitExceeded = 106,
    /// The command is malformed.
    BadRequest = 107,
    /// The feature is off for this channel (presence, history, …).
    NotAvailable = 108,
    /// The token expired: the SDK fetches a new one and retries.
    TokenExpired = 109,
    /// The connection expired and must be refreshed.
    Expired = 110,
    /// Too many commands; the client should slow down.
    TooManyRequests = 111,
    /// Recovery from the given position is impossible (only when the client asked to be told).
    UnrecoverablePosition = 112,
}

impl ErrorCode {
    /// The numeric code.
    pub fn code(self) -> u32 {
        self as u32
    }

    /// The protocol's message for the code.
    pub fn message(self) -> &'static str {
        match self {
            ErrorCode::Internal => "internal server error",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::UnknownChannel => "unknown channel",
            ErrorCode::PermissionDenied => "permission denied",
            ErrorCode::MethodNotFound => "method not found",
            ErrorCode::AlreadySubscribed => "already subscribed",
            ErrorCode::LimitExceeded => "limit exceeded",
            ErrorCode::BadRequest => "bad request",
            ErrorCode::NotAvailable => "not available",
            ErrorCode::TokenExpired => "token expired",
            ErrorCode::Expired => "expired",
            ErrorCode::TooManyRequests => "too many requests",
            ErrorCode::UnrecoverablePosition => "unrecoverable position",
        }
    }

    /// Whether the client may retry the same command later.
    pub fn temporary(self) -> bool {
        matches!(self, ErrorCode::Internal | ErrorCode::TooManyRequests)
    }
}

/// Why the server closes a connection. The numeric code is the WebSocket close code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum DisconnectCode {
    /// Normal close.
    ConnectionClosed = 3000,
    /// The node shuts down or drains: reconnect elsewhere.
    Shutdown = 3001,
    /// An internal error: reconnect.
    ServerError = 3004,
    /// The connection's credentials expired without a refresh.
    Expired = 3005,
    /// A subscription's token expired without a refresh.
    SubExpired = 3006,
    /// The client did not read fast enough and its queue filled up.
    Slow = 3008,
    /// Writing to the client failed.
    WriteError = 3009,
    /// The server saw a gap in a channel's stream; reconnect and recover.
    InsufficientState = 3010,
    /// Disconnected by the server API, reconnect allowed.
    ForceReconnect = 3011,
    /// No pong to the server's ping in time.
    NoPong = 3012,
    /// Too many commands per second.
    TooManyRequests = 3013,
    /// The connection token is invalid: do not reconnect with it.
    InvalidToken = 3500,
    /// Malformed protocol input.
    BadRequest = 3501,
    /// No connect command in time after the upgrade.
    Stale = 3502,
    /// Disconnected by the server API, reconnect not allowed.
    ForceNoReconnect = 3503,
    /// A connection limit was reached.
    ConnectionLimit = 3504,
    /// The channel limit was reached.
    ChannelLimit = 3505,
    /// The transport or encoding is not the expected one.
    InappropriateProtocol = 3506,
    /// Not allowed.
    PermissionDenied = 3507,
    /// The server offers nothing for this request.
    NotAvailable = 3508,
    /// The client made too many errors.
    TooManyErrors = 3509,
}

impl DisconnectCode {
    /// The numeric (WebSocket close) code.
    pub fn code(self) -> u16 {
        self as u16
    }

    /// The protocol's reason text.
    pub fn reason(self) -> &'static str {
        match self {
            DisconnectCode::ConnectionClosed => "connection closed",
            DisconnectCode::Shutdown => "shutdown",
            DisconnectCode::ServerError => "internal server error",
            DisconnectCode::Expired => "connection expired",
            DisconnectCode::SubExpired => "subscription expired",
            DisconnectCode::Slow => "slow",
            DisconnectCode::WriteError => "write error",
            DisconnectCode::InsufficientState => "insufficient state",
            DisconnectCode::ForceReconnect => "force reconnect",
            DisconnectCode::NoPong => "no pong",
            DisconnectCode::TooManyRequests => "too many requests",
            DisconnectCode::InvalidToken => "invalid token",
            DisconnectCode::BadRequest => "bad request",
            DisconnectCode::Stale => "stale",
            DisconnectCode::ForceNoReconnect => "force disconnect",
            DisconnectCode::ConnectionLimit => "connection limit",
            DisconnectCode::ChannelLimit => "channel limit",
            DisconnectCode::InappropriateProtocol => "inappropriate protocol",
            DisconnectCode::PermissionDenied => "permission denied",
            DisconnectCode::NotAvailable => "not available",
            DisconnectCode::TooManyErrors => "too many errors",
        }
    }

    /// Whether the SDKs reconnect after this code (3000–3499 and 4000–4499).
    pub fn reconnect(self) -> bool {
        reconnect_allowed(self.code())
    }

    /// Every code, for tables and tests.
    pub const ALL: [DisconnectCode; 21] = [
        DisconnectCode::ConnectionClosed,
        DisconnectCode::Shutdown,
        DisconnectCode::ServerError,
        DisconnectCode::Expired,
        DisconnectCode::SubExpired,
        DisconnectCode::Slow,
        DisconnectCode::WriteError,
        DisconnectCode::InsufficientState,
        DisconnectCode::ForceReconnect,
        DisconnectCode::NoPong,
        DisconnectCode::TooManyRequests,
        DisconnectCode::InvalidToken,
        DisconnectCode::BadRequest,
        DisconnectCode::Stale,
        DisconnectCode::ForceNoReconnect,
        DisconnectCode::ConnectionLimit,
        DisconnectCode::ChannelLimit,
        DisconnectCode::InappropriateProtocol,
        DisconnectCode::PermissionDenied,
        DisconnectCode::NotAvailable,
        DisconnectCode::TooManyErrors,
    ];
}

/// The protocol's rule for a numeric close code: reconnect unless 3500–3999 or 4500–4999.
pub fn reconnect_allowed(code: u16) -> bool {
    !((3500..4000).contains(&code) || (4500..5000).contains(&code))
}

/// Unsubscribe push codes: below 2500 the subscription ends, from 2500 the SDK resubscribes.
pub mod unsubscribe {
    /// The server unsubscribed the client (server API).
    pub const SERVER: u32 = 2000;
    /// The server asks the client to resubscribe (state it holds is stale).
    pub const INSUFFICIENT: u32 = 2500;
    /// The subscription token expired.
    pub const EXPIRED: u32 = 2501;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_ranges_follow_the_protocol() {
        for code in DisconnectCode::ALL {
            assert_eq!(code.reconnect(), code.code() < 3500, "{code:?}");
        }
        assert!(reconnect_allowed(4000));
        assert!(!reconnect_allowed(4500));
        assert!(reconnect_allowed(1001));
    }

    #[test]
    fn temporary_errors_are_the_retryable_ones() {
        assert!(ErrorCode::Internal.temporary());
        assert!(!ErrorCode::PermissionDenied.temporary());
        assert_eq!(ErrorCode::TokenExpired.code(), 109);
    }
}
