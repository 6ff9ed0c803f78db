//! The person-side and relay-side frame parsers on any text: `PersonInboundFrame`,
//! `PersonOutboundFrame`, `AgentOutboundFrame`. They must never panic, and a frame they accept
//! and that this crate can write again must read back the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pacerelle_core::wire::person::{AgentOutboundFrame, PersonInboundFrame, PersonOutboundFrame};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);

    match PersonInboundFrame::parse(&text) {
        Ok(PersonInboundFrame::Read(receipt)) => {
            let again = PersonInboundFrame::parse(&receipt.to_frame());
            assert_eq!(again, Ok(PersonInboundFrame::Read(receipt)));
        }
        Ok(PersonInboundFrame::Error(error)) => {
            let again = PersonInboundFrame::parse(&error.to_frame());
            assert_eq!(again, Ok(PersonInboundFrame::Error(error)));
        }
        Ok(PersonInboundFrame::Msg(msg)) => {
            assert!(!msg.id.is_empty() && !msg.conversation_id.is_empty() && !msg.from.is_empty());
            let _ = msg.to_frame();
        }
        Ok(PersonInboundFrame::IdentityChanged { agent_id }) => assert!(!agent_id.is_empty()),
        Err(error) => {
            let _ = (error.is_ignorable(), error.to_string());
        }
    }

    match PersonOutboundFrame::parse(&text) {
        Ok(PersonOutboundFrame::Msg(msg)) => {
            assert!(!msg.id.is_empty() && !msg.conversation_id.is_empty() && !msg.to.is_empty());
            let _ = msg.to_frame();
        }
        Ok(PersonOutboundFrame::AckRead(ack)) => {
            assert!(!ack.to.is_empty() && !ack.message_id.is_empty() && !ack.conversation_id.is_empty());
            let again = PersonOutboundFrame::parse(&ack.to_frame());
            assert_eq!(again, Ok(PersonOutboundFrame::AckRead(ack)));
        }
        Err(error) => {
            let _ = (error.is_ignorable(), error.to_string());
        }
    }

    match AgentOutboundFrame::parse(&text) {
        Ok(AgentOutboundFrame::Msg(msg)) => {
            assert!(!msg.id.is_empty() && !msg.conversation_id.is_empty() && !msg.to.is_empty());
        }
        Ok(AgentOutboundFrame::AckRead(ack)) => {
            let again = AgentOutboundFrame::parse(&ack.to_frame());
            assert_eq!(again, Ok(AgentOutboundFrame::AckRead(ack)));
        }
        Err(error) => {
            let _ = (error.is_ignorable(), error.to_string());
        }
    }
});
