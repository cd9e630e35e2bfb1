//! `rpc`: a call the application's backend answers, through the rpc proxy.

use super::backend::unusable;
use super::{Client, CmdResult};
use crate::config::ProxyKind;
use crate::proxy::wire::{self, ProxyRequest};
use herald_shared::protocol::command::RpcRequest;
use herald_shared::protocol::{ErrorCode, ReplyBody};

/// Forwards the call (method and data) to the backend and answers with its `data`.
/// Without the rpc proxy there is no handler: error 104 "method not found".
pub(in crate::session) async fn rpc(c: &mut Client, req: RpcRequest) -> CmdResult {
    let kind = ProxyKind::Rpc;
    if !c.proxied(kind) {
        return Err(ErrorCode::MethodNotFound.into());
    }
    let request = ProxyRequest {
        method: &req.method,
        data: req.data.as_ref(),
        ..c.proxy_request()
    };
    let answer = c.ask::<wire::RpcResult>(kind, &request).await?;
    let data = match answer {
        Some(r) => wire::pick(r.data, &r.b64data).map_err(|w| unusable(kind, w))?,
        None => None,
    };
    Ok(Some(ReplyBody::Rpc(data)))
}
