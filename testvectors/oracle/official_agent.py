"""The official Pacerelle agent (AgentGatewayClient), driven by conformance tests.

Runs against the relay given on the command line until --deadline-seconds pass, then exits.
Prints READY once its socket is open, then one JSON line per handled message.

Handler behaviour (so a test can drive it):
- plain text T            -> reply "Received: T"
- "widget please"         -> a confirm widget, id w-confirm-1, title "Proceed?"
- "update please"         -> a widget update of w-confirm-1 with spec {"title": "Updated"}
- a widget answer         -> reply "Widget <ref> answered: <json value> cancelled=<bool>"
- attachments (e2ee)      -> each downloaded, then sent back with send_file as "echo-<name>"
                             (same type) in a reply "file <name> <mime> <size> bytes sha256=<hex>",
                             to the whole group when the message came to a group
Replies to group messages go to the group (the SDK's own `reply`). Each handled line says
whether the message came to a group.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import sys

from pacerelle import AgentGatewayClient

WIDGET_ID = "w-confirm-1"


def emit(**event: object) -> None:
    print(json.dumps(event), flush=True)


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--agent-id", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--e2ee", action="store_true")
    parser.add_argument("--store-root")
    parser.add_argument("--deadline-seconds", type=float, default=60.0)
    args = parser.parse_args()

    client = AgentGatewayClient(
        token=args.token,
        agent_id=args.agent_id,
        base_url=args.base_url,
        e2ee=args.e2ee,
        store_root=args.store_root,
    )

    async def handle(message, agent) -> None:
        group = str(message.raw.get("to") or "") == f"group:{message.conversation_id}"
        if message.attachments and args.e2ee:
            for attachment in message.attachments:
                data = await agent.download_attachment(attachment)
                digest = hashlib.sha256(data).hexdigest()
                await agent.send_file(
                    conversation_id=message.conversation_id,
                    to=f"group:{message.conversation_id}" if group else message.from_id,
                    name=f"echo-{attachment.name}",
                    data=data,
                    mime=attachment.mime,
                    text=f"file {attachment.name} {attachment.mime} {len(data)} bytes sha256={digest}",
                    reply_to_message_id=message.id,
                )
        elif message.widget_response is not None:
            answer = message.widget_response
            await agent.reply(
                message,
                f"Widget {answer.ref} answered: {json.dumps(answer.value)} cancelled={answer.cancelled}",
            )
        elif message.text == "widget please":
            await agent.send_confirm_widget(
                conversation_id=message.conversation_id,
                to=message.from_id,
                title="Proceed?",
                widget_id=WIDGET_ID,
            )
        elif message.text == "update please":
            await agent.send_widget_update(
                conversation_id=message.conversation_id,
                to=message.from_id,
                ref=WIDGET_ID,
                spec={"title": "Updated"},
            )
        else:
            await agent.reply(message, f"Received: {message.text}")
        emit(event="handled", id=message.id, text=message.text, group=group)

    client.on_message(handle)

    async def announce_ready() -> None:
        # The client sets its socket attribute once connect() has opened it.
        while getattr(client, "_ws", None) is None:
            await asyncio.sleep(0.01)
        print("READY", flush=True)

    ready = asyncio.create_task(announce_ready())
    try:
        await asyncio.wait_for(client.connect(), timeout=args.deadline_seconds)
    except asyncio.TimeoutError:
        return 0
    finally:
        ready.cancel()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
