//! The sockets: each connection registers with the state, receives what is queued for it, and
//! hands every frame it reads to the routing rules. A refused frame gets an `ERROR` frame back;
//! the connection stays up.

use crate::server::App;
use crate::state::Party;
use axum::extract::WebSocketUpgrade;
use axum::extract::ws::{Message, WebSocket};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use pacerelle_core::wire::person::{AgentOutboundFrame, PersonOutboundFrame, RelayErrorFrame};
use tokio::sync::mpsc;

/// Upgrades the request and serves the socket for `party`.
pub(crate) fn accept(app: App, upgrade: WebSocketUpgrade, party: Party, device: Option<String>) -> Response {
    let limit = app.limits.max_frame_bytes;
    upgrade.max_message_size(limit).max_frame_size(limit).on_upgrade(move |socket| serve(app, socket, party, device))
}

async fn serve(app: App, socket: WebSocket, party: Party, device: Option<String>) {
    let (sender, mut outgoing) = mpsc::unbounded_channel::<String>();
    // The state holds the only sender: when it drops it (disconnect, shutdown), `outgoing` ends
    // and so does this connection.
    let socket_id = app.lock().open_socket(&party, device.clone(), sender);
    tracing::debug!(party = party.id(), socket_id, "socket open");
    let (mut sink, mut incoming) = socket.split();
    loop {
        tokio::select! {
            frame = outgoing.recv() => match frame {
                Some(text) => {
                    if sink.send(Message::Text(text.into())).await.is_err() {
                        break;
                    }
                }
                // The relay dropped this socket (disconnect, shutdown).
                None => break,
            },
            message = incoming.next() => match message {
                Some(Ok(Message::Text(text))) => {
                    // A statement of its own: the state's lock is released before the body.
                    let lost = match &party {
                        Party::Agent(agent) => app.lock().lose(agent, text.as_bytes()),
                        Party::Person(_) => None,
                    };
                    if let Some(cut) = lost {
                        tracing::debug!(party = party.id(), socket_id, cut, "frame lost (test hook)");
                        if cut {
                            // Gone at once, reading nothing more (no ping behind the lost frames
                            // is answered) and without a close handshake, as a crash would.
                            app.lock().close_socket(&party, socket_id);
                            return;
                        }
                        continue;
                    }
                    let refusal = handle_frame(&app, &party, device.as_deref(), text.as_str());
                    if let Some(refusal) = refusal
                        && sink.send(Message::Text(refusal.to_frame().into())).await.is_err()
                    {
                        break;
                    }
                }
                Some(Ok(Message::Binary(_))) => {
                    let refusal = RelayErrorFrame { error: "binary frames are not supported".into(), message_id: None };
                    if sink.send(Message::Text(refusal.to_frame().into())).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
        }
    }
    app.lock().close_socket(&party, socket_id);
    let _ = sink.send(Message::Close(None)).await;
    let _ = sink.close().await;
    tracing::debug!(party = party.id(), socket_id, "socket closed");
}

/// Routes one frame; returns the refusal to send back, if any.
fn handle_frame(app: &App, party: &Party, device: Option<&str>, text: &str) -> Option<RelayErrorFrame> {
    let mut state = app.lock();
    state.observed.push(text.as_bytes().to_vec());
    let refuse = |error: String, message_id: Option<String>| Some(RelayErrorFrame { error, message_id });
    match party {
        Party::Agent(agent) => match AgentOutboundFrame::parse(text) {
            Ok(AgentOutboundFrame::Msg(msg)) => {
                let id = msg.id.clone();
                state.route_from_agent(agent, msg).err().and_then(|error| refuse(error, Some(id)))
            }
            Ok(AgentOutboundFrame::AckRead(ack)) => {
                state.acknowledge(party, &ack);
                None
            }
            Err(error) => refuse(error.to_string(), None),
        },
        Party::Person(person) => match PersonOutboundFrame::parse(text) {
            Ok(PersonOutboundFrame::Msg(msg)) => {
                let id = msg.id.clone();
                state.route_from_person(person, device, msg).err().and_then(|error| refuse(error, Some(id)))
            }
            Ok(PersonOutboundFrame::AckRead(ack)) => {
                state.acknowledge(party, &ack);
                None
            }
            Err(error) => refuse(error.to_string(), None),
        },
    }
}
