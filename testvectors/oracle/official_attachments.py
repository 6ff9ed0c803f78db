"""The official SDK's own attachment paths, without a relay, for tests/official_attachments.rs.

Reads one JSON request on stdin and prints one JSON answer.

- {"mode": "read", "frames": [MSG...], "blobs": {blob_id: base64}}: an official agent
  (AgentGatewayClient, e2ee off, so payloads are only base64) handles each frame with its own
  `_handle_raw`; its handler downloads every attachment with `download_attachment` (the blob
  fetch answered from `blobs`). For each message: its text, its attachments as the SDK read
  them (with the decrypted bytes as `plaintext_b64`), and what the SDK itself would put in a
  payload and in the envelope for those attachments (`payload`, `public`).
- {"mode": "write", "files": {"thumbnail"|"photo"|"notes": base64}}: an official agent
  uploads the thumbnail with `upload_file`, sends the photo naming it with `send_media`, uploads
  the notes, then sends one message with the photo, the thumbnail and the notes with
  `send_message`. The blob upload is answered locally, and `upload_file` runs with e2ee on (it
  refuses otherwise) while the messages go out with e2ee off, so that their payloads are the
  SDK's plaintext: the frames, the blobs, and the attachments the calls returned.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import json
import sys
from urllib import parse

import agent_gateway_sdk as sdk
from pacerelle import AgentGatewayClient


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def client() -> AgentGatewayClient:
    return AgentGatewayClient(token="t", agent_id="official-agent", base_url="http://127.0.0.1:9", e2ee=False)


class Socket:
    """Where the client's frames go instead of a WebSocket."""

    def __init__(self) -> None:
        self.frames: list[dict] = []

    async def send(self, text: str) -> None:
        self.frames.append(json.loads(text))


async def read(request: dict) -> dict:
    agent = client()
    agent._ws = Socket()
    blobs = {blob_id: base64.b64decode(data) for blob_id, data in request["blobs"].items()}
    agent._raw_get = lambda path: blobs[parse.unquote(path.rsplit("/", 1)[1])]
    messages: list[dict] = []

    async def handle(message, agent) -> None:
        attachments = []
        for attachment in message.attachments:
            entry = dataclasses.asdict(attachment)
            entry["plaintext_b64"] = b64(await agent.download_attachment(attachment))
            attachments.append(entry)
        messages.append(
            {
                "id": message.id,
                "text": message.text,
                "attachments": attachments,
                "payload": sdk._encode_chat_payload(message.text, message.attachments),
                "public": [sdk._attachment_public(attachment) for attachment in message.attachments],
            }
        )

    agent.on_message(handle)
    for frame in request["frames"]:
        await agent._handle_raw(json.dumps(frame))
    return {"messages": messages}


async def write(request: dict) -> dict:
    agent = client()
    socket = Socket()
    agent._ws = socket
    blobs: dict[str, str] = {}

    def store(method: str, path: str, body: bytes, headers: dict) -> dict:
        assert (method, path, headers.get("Content-Type")) == ("POST", "/agent/blobs", "application/octet-stream")
        blob_id = f"py-blob-{len(blobs) + 1}"
        blobs[blob_id] = b64(body)
        return {"id": blob_id, "sha256": hashlib.sha256(body).hexdigest()}

    agent._raw_request = store
    upload = AgentGatewayClient.upload_file

    def upload_encrypted(**kwargs):
        agent.e2ee = True
        try:
            return upload(agent, **kwargs)
        finally:
            agent.e2ee = False

    agent.upload_file = upload_encrypted
    files = {name: base64.b64decode(data) for name, data in request["files"].items()}
    thumbnail = agent.upload_file(name="thumb.png", data=files["thumbnail"], mime="image/png")
    photo = await agent.send_media(
        conversation_id="c1",
        to="our-agent",
        name="photo.jpg",
        data=files["photo"],
        mime="image/jpeg",
        text="a photo",
        width=640,
        height=480,
        thumbnail_blob_id=thumbnail.blob_id,
    )
    notes = agent.upload_file(name="notes.txt", data=files["notes"], mime="text/plain")
    await agent.send_message(
        conversation_id="c1", to="our-agent", text="three files", attachments=[photo, thumbnail, notes]
    )
    returned = {"thumbnail": thumbnail, "photo": photo, "notes": notes}
    return {
        "frames": socket.frames,
        "blobs": blobs,
        "attachments": {name: dataclasses.asdict(attachment) for name, attachment in returned.items()},
    }


def main() -> int:
    request = json.load(sys.stdin)
    answer = asyncio.run(read(request) if request["mode"] == "read" else write(request))
    print(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
