"""Reference vectors from the official Pacerelle SDK's own functions.

    PYTHONPATH=<oracle> python3 testvectors/oracle/vectors.py [DIR]          write DIR/*.json
    PYTHONPATH=<oracle> python3 testvectors/oracle/vectors.py --check DIR    exit 1 if stale

DIR defaults to testvectors/vectors. Every case is computed by calling the installed SDK
(pacerelle 0.1.0a8); nothing here re-implements its logic. Output is deterministic.
"""

from __future__ import annotations

import asyncio
import dataclasses
import difflib
import json
import sys
import tempfile
from pathlib import Path

import agent_gateway_sdk as sdk
from agent_gateway_sdk import AgentAttachment, AgentGatewayClient

SDK_VERSION = "0.1.0a8"
HEADER = {"generator": "testvectors/oracle/vectors.py", "sdk_version": SDK_VERSION}


def attachment(**fields):
    base = {"id": "a1", "name": "report.pdf", "mime": "application/pdf", "size": 1234, "blob_id": "b1"}
    base.update(fields)
    return base


KEYED = {"key_b64": "a2V5LWtleS1rZXk=", "iv_b64": "aXYtaXYtaXY="}


def chat_payload_cases():
    cases = [
        ("no attachments", "hello", []),
        ("empty text, no attachments", "", []),
        ("keyless attachment stays plain text", "see file", [attachment()]),
        ("one keyed attachment", "see file", [attachment(**KEYED)]),
        ("media dimensions", "photo", [attachment(name="p.jpg", mime="image/jpeg", width=640, height=480, **KEYED)]),
        ("audio duration", "", [attachment(name="a.ogg", mime="audio/ogg", duration_ms=1500, **KEYED)]),
        ("zero dimensions kept", "z", [attachment(width=0, height=0, duration_ms=0, **KEYED)]),
        ("two attachments, one keyless", "two", [attachment(**KEYED), attachment(id="a2", blob_id="b2")]),
        ("unicode and quotes", 'Café "naïve" 👋\n\ttab', [attachment(name='résumé "final".pdf', **KEYED)]),
        ("sha and thumbnail are not secrets", "t", [attachment(sha256="ff", thumbnail_blob_id="t1", **KEYED)]),
        ("empty key is not keyed", "t", [attachment(key_b64="", iv_b64="aXY=")]),
    ]
    return [
        {"name": name, "text": text, "attachments": items,
         "expected": sdk._encode_chat_payload(text, [AgentAttachment(**item) for item in items])}
        for name, text, items in cases
    ]


def parse_payload_cases():
    def chat(attachments, text="hi"):
        return json.dumps({"kind": "chat.message", "text": text, "attachments": attachments})

    secret = {"id": "a1", "key_b64": "k", "iv_b64": "i"}
    payloads = {
        "plain text": "hello",
        "empty": "",
        "leading space before brace": ' {"kind":"chat.message","text":"x"}',
        "brace but not json": "{not json",
        "json array": "[1, 2]",
        "empty object": "{}",
        "chat message without attachments": '{"kind":"chat.message","text":"hi"}',
        "chat message with secret": chat([dict(secret, name="r.pdf", mime="application/pdf", size=3)]),
        "chat text not a string": '{"kind":"chat.message","text":5}',
        "other kind": '{"kind":"other","text":"x"}',
        "secret without key": chat([{"id": "a1", "iv_b64": "i"}]),
        "secret without iv": chat([{"id": "a1", "key_b64": "k"}]),
        "secret id not a string": chat([{"id": 1, "key_b64": "k", "iv_b64": "i"}]),
        "attachments not a list": chat({"id": "a1"}),
        "attachment entry not an object": chat(["a1", secret]),
        "name of 512 characters": chat([dict(secret, name="é" * 512)]),
        "name of 513 characters": chat([dict(secret, name="x" * 513)]),
        "empty name and mime": chat([dict(secret, name="", mime="")]),
        "name not a string": chat([dict(secret, name=5, mime=None)]),
        "negative size": chat([dict(secret, size=-1)]),
        "float size": chat([dict(secret, size=1.5)]),
        "integral float size": chat([dict(secret, size=2.0)]),
        "bool counts": chat([dict(secret, size=True, width=False)]),
        "string counts": chat([dict(secret, size="3", height="4")]),
        "large count": chat([dict(secret, size=2**63, duration_ms=0)]),
        "duplicate secret ids, last wins": chat([dict(secret, name="first"), dict(secret, name="second")]),
        "widget response": '{"type":"widget.response","id":"r1","ref":"w1","value":{"a":[1,2]}}',
        "widget response cancelled": '{"type":"widget.response","id":"r1","ref":"w1","cancelled":true}',
        "widget response cancelled string": '{"type":"widget.response","id":"r1","ref":"w1","cancelled":"true","value":1}',
        "widget response cancelled one": '{"type":"widget.response","id":"r1","ref":"w1","cancelled":1}',
        "widget response null value": '{"type":"widget.response","id":"r1","ref":"w1","value":null}',
        "widget response empty ids": '{"type":"widget.response","id":"","ref":""}',
        "widget response ref not a string": '{"type":"widget.response","id":"r1","ref":7}',
        "widget response beats chat": '{"type":"widget.response","id":"r","ref":"w","kind":"chat.message","text":"x"}',
        "widget update": '{"type":"widget.update","id":"u1","ref":"w1","patch":{"spec":{"title":"t"}}}',
        "widget update patch list": '{"type":"widget.update","id":"u1","ref":"w1","patch":[1]}',
        "widget update without patch": '{"type":"widget.update","id":"u1","ref":"w1"}',
        "widget update falls through to chat": '{"type":"widget.update","id":"u","ref":"w","patch":1,"kind":"chat.message","text":"x"}',
        "emoji text": "👋🏽 héllo",
        "nested json text": '{"kind":"chat.message","text":"{\\"kind\\":\\"chat.message\\"}"}',
    }

    def expected(parsed):
        return {
            "text": parsed["text"],
            "secrets": parsed["secrets"],
            "widget_response": dataclasses.asdict(parsed["widget_response"]) if parsed["widget_response"] else None,
            "widget_update": dataclasses.asdict(parsed["widget_update"]) if parsed["widget_update"] else None,
        }

    return [{"name": name, "payload": text, "expected": expected(sdk._parse_payload_parts(text))}
            for name, text in payloads.items()]


def attachment_cases():
    full = dict(attachment(sha256="abc", thumbnail_blob_id="t1", width=1, height=2, duration_ms=3), **KEYED)
    public = [
        {"name": "full attachment", "attachment": full},
        {"name": "minimal attachment", "attachment": attachment()},
        {"name": "empty sha and thumbnail left out", "attachment": attachment(sha256="", thumbnail_blob_id="")},
    ]
    for case in public:
        case["expected"] = sdk._attachment_public(AgentAttachment(**case["attachment"]))
    envelope = {"id": "a1", "name": "attachment", "mime": "application/octet-stream", "size": 10, "blob_id": "b1"}
    secret = {"key_b64": "k", "iv_b64": "i", "name": "real.txt", "mime": "text/plain", "size": 4, "width": 9}
    merge = [
        ("valid entry without secret", [envelope], {}),
        ("secret overrides envelope", [envelope], {"a1": secret}),
        ("secret with only key and iv", [envelope], {"a1": {"key_b64": "k", "iv_b64": "i"}}),
        ("envelope extras", [dict(envelope, sha256="ff", thumbnail_blob_id="t", width=3, height=4, duration_ms=5)], {}),
        ("envelope extras of wrong types", [dict(envelope, sha256=1, thumbnail_blob_id=2, width="3")], {}),
        ("missing size", [{k: v for k, v in envelope.items() if k != "size"}], {}),
        ("size as string", [dict(envelope, size="10")], {}),
        ("size as float", [dict(envelope, size=10.0)], {}),
        ("size as true", [dict(envelope, size=True)], {}),
        ("missing blob id", [{k: v for k, v in envelope.items() if k != "blob_id"}], {}),
        ("id not a string", [dict(envelope, id=1)], {}),
        ("entry not an object", ["a1", envelope], {}),
        ("raw not a list", {"id": "a1"}, {}),
        ("raw null", None, {}),
        ("secret for another id", [envelope], {"a2": secret}),
    ]
    merge_cases = [
        {"name": name, "raw": raw, "secrets": secrets,
         "expected": [dataclasses.asdict(item) for item in sdk._merge_attachments(raw, secrets)]}
        for name, raw, secrets in merge
    ]
    return {"public": public, "merge": merge_cases}


def widget_cases():
    client = AgentGatewayClient(token="t", agent_id="a", e2ee=False)
    captured = []

    async def capture(**kwargs):
        captured.append(kwargs["text"])

    client.send_message = capture
    base = {"conversation_id": "c", "to": "u", "widget_id": "w1"}
    calls = [
        ("confirm minimal", "send_confirm_widget", {"title": "Go?"}),
        ("confirm full", "send_confirm_widget", {"title": "Déployer ?", "body": "Really", "danger": True,
                                                "labels": {"yes": "Oui", "no": "Non"}, "expires_at": "2030-01-01T00:00:00Z",
                                                "response_mode": "collective"}),
        ("confirm empty options", "send_confirm_widget", {"title": "Go?", "body": "", "danger": False, "labels": {},
                                                         "expires_at": "", "response_mode": "individual"}),
        ("confirm invalid mode", "send_confirm_widget", {"title": "Go?", "response_mode": "everyone"}),
        ("choice", "send_choice_widget", {"title": "Pick", "options": [{"id": "a", "label": "A"}, {"id": "b", "label": "B"}]}),
        ("choice extras", "send_choice_widget", {"title": "Pick", "options": [], "multi": True, "response_mode": "individual"}),
        ("permission full", "send_permission_widget", {"title": "Read files", "body": "Only docs", "scopes": ["once", "session"]}),
        ("permission empty", "send_permission_widget", {"title": "Read files", "body": "", "scopes": []}),
        ("form", "send_form_widget", {"title": "About you", "fields": [{"name": "age", "label": "Age", "type": "number", "required": True}],
                                     "submitLabel": "Send"}),
        ("progress int", "send_progress_widget", {"title": "Copying", "value": 50}),
        ("progress float and options", "send_progress_widget", {"title": "Copying", "value": 0.5, "max": 1, "cancellable": True, "body": "b"}),
        ("file picker full", "send_file_picker_widget", {"title": "Upload", "body": "PDF", "multiple": False, "accept": ["application/pdf"], "max_files": 0}),
        ("file picker empty", "send_file_picker_widget", {"title": "Upload", "body": "", "accept": []}),
        ("datetime", "send_datetime_widget", {"title": "When?", "mode": "date", "body": "b", "min": "2026-01-01", "max": "2026-12-31"}),
        ("datetime empty bounds", "send_datetime_widget", {"title": "When?", "mode": "time", "min": "", "max": ""}),
        ("update spec", "send_widget_update", {"ref": "w0", "spec": {"title": "New"}}),
        ("update expiry", "send_widget_update", {"ref": "w0", "expires_at": "2030-01-01T00:00:00Z"}),
        ("update empty values", "send_widget_update", {"ref": "w0", "spec": {}, "expires_at": ""}),
        ("update nothing", "send_widget_update", {"ref": "w0"}),
    ]
    cases = []
    for name, method, kwargs in calls:
        captured.clear()
        # The file is written with sorted keys; free options keep their order in the payload, so
        # the call's argument order is recorded beside them.
        case = {"name": name, "method": method, "kwargs": kwargs, "kwargs_order": list(kwargs)}
        try:
            returned = asyncio.run(getattr(client, method)(**base, **kwargs))
            case["expected"] = captured[0]
            case["returned_id"] = returned
        except ValueError as error:
            case["expected_error"] = str(error)
        cases.append(case)
    return cases


def digest_cases():
    base = {"type": "MSG", "id": "m1", "from": "u1", "conversation_id": "c1", "to": "agent-1",
            "payload_b64": "aGk=", "encrypted": False}
    frames = {
        "minimal": {"type": "MSG", "id": "m1", "from": "u1", "conversation_id": "c1"},
        "typical": base,
        "null fields equal missing": dict(base, from_device_id=None, reply_to_message_id=None, attachments=None),
        "all fields": dict(base, from_device_id="phone", reply_to_message_id="m0", encrypted=True,
                           attachments=[{"size": 3, "id": "a1", "name": "attachment", "mime": "application/octet-stream", "blob_id": "b"}]),
        "ignored fields do not count": dict(base, id="other", type="X", extra={"z": 1}),
        "unicode is escaped": dict(base, **{"from": "Zoë 👋", "conversation_id": "c\u00e9"}),
        "control characters": dict(base, payload_b64="a\nb\tc\u0001\u007f"),
        "nested keys sorted": dict(base, attachments=[{"z": {"b": 1, "a": [True, None]}, "a": "x"}]),
        "floats": dict(base, attachments=[{"values": [1.0, 1e16, 1e-7, 0.1, 6e81, -2.5, 123456789.125, 1e22, 5e-324]}]),
        "big integers": dict(base, attachments=[{"n": 2**63 - 1, "m": -(2**63), "k": 0}]),
        "booleans and empties": dict(base, encrypted=True, to="", payload_b64="", attachments=[]),
        "encrypted as string": dict(base, encrypted="true"),
    }
    return [{"name": name, "frame": frame, "expected": sdk._message_digest(frame)} for name, frame in frames.items()]


def history_cases():
    import base64
    from unittest import mock

    from agent_gateway_sdk import history

    def context(**fields):
        base = {"conversation_id": "c1", "message_id": "m1", "sender_id": "agent-1", "sender_type": "agent",
                "key_id": "k1", "epoch": 1}
        base.update(fields)
        return base

    aad = []
    for name, fields in [
        ("agent sender", {}),
        ("human sender", {"sender_type": "human", "sender_id": "u1"}),
        ("largest epoch", {"epoch": 2**53 - 1}),
        ("unicode identifiers", {"conversation_id": "conv-é", "key_id": "clé"}),
        ("epoch zero", {"epoch": 0}),
        ("epoch too large", {"epoch": 2**53}),
        ("colon in key id", {"key_id": "k:1"}),
        ("control character in message id", {"message_id": "m\n1"}),
        ("delete character in sender", {"sender_id": "a\x7f"}),
        ("empty conversation", {"conversation_id": ""}),
    ]:
        ctx = context(**fields)
        try:
            expected = history._aad(history.ConversationHistoryContext(**ctx)).decode()
        except ValueError:
            expected = None
        aad.append({"name": name, "context": ctx, "expected": expected})

    key = bytes(range(32))
    key_b64 = base64.b64encode(key).decode()
    seal = []
    for name, plaintext, iv, ctx in [
        ("ascii", "hello", bytes(range(12)), context()),
        ("unicode", "héllo 👋", bytes([7] * 12), context(sender_type="human", sender_id="u1")),
        ("empty", "", bytes(12), context(epoch=5)),
    ]:
        with mock.patch.object(history.secrets, "token_bytes", lambda n, iv=iv: iv):
            envelope = history.seal_conversation_history(plaintext, key_b64, history.ConversationHistoryContext(**ctx))
        seal.append({"name": name, "plaintext": plaintext, "key_b64": key_b64, "iv_b64": base64.b64encode(iv).decode(),
                     "context": ctx, "expected": dict(envelope)})

    sealed = seal[0]["expected"]
    def tampered(**changes):
        envelope = dict(sealed)
        envelope.update(changes)
        return envelope
    flipped = bytearray(base64.b64decode(sealed["ciphertext_b64"]))
    flipped[0] ^= 1
    opened = []
    for name, envelope, ctx, key_used in [
        ("valid", sealed, context(), key_b64),
        ("wrong message id", sealed, context(message_id="m2"), key_b64),
        ("wrong epoch", sealed, context(epoch=2), key_b64),
        ("wrong key id", sealed, context(key_id="k2"), key_b64),
        ("aad version 2", tampered(aad_version=2), context(), key_b64),
        ("aad version float", tampered(aad_version=1.0), context(), key_b64),
        ("aad version true", tampered(aad_version=True), context(), key_b64),
        ("short iv", tampered(iv_b64=base64.b64encode(b"short").decode()), context(), key_b64),
        ("truncated ciphertext", tampered(ciphertext_b64=base64.b64encode(b"tiny").decode()), context(), key_b64),
        ("flipped byte", tampered(ciphertext_b64=base64.b64encode(bytes(flipped)).decode()), context(), key_b64),
        ("wrong key", sealed, context(), base64.b64encode(bytes(32)).decode()),
    ]:
        try:
            expected = history.open_conversation_history(envelope, key_used, history.ConversationHistoryContext(**ctx))
        except Exception as error:  # the class is recorded; any failure is a refusal
            expected = None
            failure = type(error).__name__
        else:
            failure = None
        opened.append({"name": name, "envelope": envelope, "context": ctx, "key_b64": key_used,
                       "expected": expected, "failure": failure})

    keys = []
    for name, value in [
        ("valid", {"key_id": "k1", "epoch": 1, "raw_key_b64": key_b64}),
        ("epoch 2", {"key_id": "k1", "epoch": 2, "raw_key_b64": key_b64}),
        ("epoch true", {"key_id": "k1", "epoch": True, "raw_key_b64": key_b64}),
        ("epoch float", {"key_id": "k1", "epoch": 1.0, "raw_key_b64": key_b64}),
        ("extra field", {"key_id": "k1", "epoch": 1, "raw_key_b64": key_b64, "x": 1}),
        ("missing field", {"key_id": "k1", "epoch": 1}),
        ("colon in id", {"key_id": "k:1", "epoch": 1, "raw_key_b64": key_b64}),
        ("empty id", {"key_id": "", "epoch": 1, "raw_key_b64": key_b64}),
        ("short key", {"key_id": "k1", "epoch": 1, "raw_key_b64": base64.b64encode(bytes(16)).decode()}),
        ("not an object", ["k1", 1, key_b64]),
    ]:
        try:
            sdk._validate_history_key(value)
            accepted = True
        except Exception:
            accepted = False
        keys.append({"name": name, "value": value, "accepted": accepted})
    return {"aad": aad, "seal": seal, "open": opened, "keys": keys}


def group_cases():
    import base64

    key_b64 = base64.b64encode(bytes(range(32))).decode()
    sender = {"type": "pacerelle.group.sender_key", "v": 1, "alg": "AES-256-GCM", "conversation_id": "g1",
              "key_id": "k1", "epoch": 1, "raw_key_b64": key_b64}
    sender_keys = []
    for name, value in [
        ("valid", sender),
        ("version true", dict(sender, v=True)),
        ("version float", dict(sender, v=1.0)),
        ("version 2", dict(sender, v=2)),
        ("other algorithm", dict(sender, alg="AES-128-GCM")),
        ("epoch zero", dict(sender, epoch=0)),
        ("epoch float", dict(sender, epoch=1.0)),
        ("epoch true", dict(sender, epoch=True)),
        ("short key", dict(sender, raw_key_b64=base64.b64encode(bytes(31)).decode())),
        ("key not base64", dict(sender, raw_key_b64="!!!")),
        ("key without padding", dict(sender, raw_key_b64=key_b64.rstrip("="))),
        ("key id not a string", dict(sender, key_id=1)),
        ("extra fields are dropped", dict(sender, extra="x")),
    ]:
        text = json.dumps(value)
        parsed = sdk._parse_group_sender_key(text)
        sender_keys.append({"name": name, "text": text, "expected": parsed})
    sender_keys.append({"name": "not json", "text": "{", "expected": sdk._parse_group_sender_key("{")})

    message = {"type": "pacerelle.group.message", "v": 1, "alg": "AES-256-GCM", "conversation_id": "g1",
               "key_id": "k1", "epoch": 3, "iv_b64": "aXY=", "ciphertext_b64": "Y3Q="}
    ciphertexts = []
    for name, value in [
        ("valid", message),
        ("negative epoch", dict(message, epoch=-1)),
        ("epoch true", dict(message, epoch=True)),
        ("epoch string", dict(message, epoch="3")),
        ("missing iv", {k: v for k, v in message.items() if k != "iv_b64"}),
        ("other type", dict(message, type="pacerelle.group.sender_key")),
        ("version true", dict(message, v=True)),
    ]:
        text = json.dumps(value, separators=(",", ":"))
        ciphertexts.append({"name": name, "text": text, "accepted": sdk._parse_group_ciphertext(text) is not None})

    aad = [{"conversation_id": c, "key_id": k, "epoch": e, "expected": sdk._group_additional_data(c, k, e).decode()}
           for c, k, e in [("g1", "k1", 1), ("groupe-é", "clé", 42), ("g", "k", -1)]]
    sealed, opened = group_message_cases()
    return {"sender_key": sender_keys, "ciphertext": ciphertexts, "aad": aad, "seal": sealed, "open": opened}


def group_message_cases():
    """Group messages sealed and opened by an official client's own methods.

    `_encrypt_group_message` and `_decrypt_group_message` are methods of `AgentGatewayClient`;
    their only I/O is the key sync (`_get_json` of `GET /agent/group-keys`), answered here with
    an empty list, so the keys held are exactly the case's. The IV is fixed by patching
    `os.urandom` for the call, which makes each sealed payload deterministic.
    """
    import base64
    from unittest import mock

    def key(key_id, epoch, fill):
        raw = base64.b64encode(bytes([fill] * 32)).decode()
        return {"conversation_id": "g1", "key_id": key_id, "epoch": epoch, "raw_key_b64": raw}

    def client(keys):
        agent = AgentGatewayClient(token="t", agent_id="agent-1", e2ee=False)
        agent._get_json = lambda path: []  # the relay has nothing more for it
        for held in keys:
            agent._group_keys[sdk._group_key_record("g1", held["key_id"], held["epoch"])] = dict(held)
        return agent

    one, two = key("k1", 1, 1), key("k2", 2, 2)
    sealed = []
    for name, keys, plaintext, iv in [
        ("ascii, one key", [one], "hello group", bytes(range(12))),
        ("unicode, newest of two epochs", [one, two], "héllo 👋 \"quoted\"", bytes([9] * 12)),
        ("empty, newest listed first", [two, one], "", bytes(12)),
    ]:
        with mock.patch.object(sdk.os, "urandom", lambda n, iv=iv: iv):
            payload = client(keys)._encrypt_group_message("g1", plaintext)
        sealed.append({"name": name, "keys": keys, "plaintext": plaintext,
                       "iv_b64": base64.b64encode(iv).decode(), "expected": payload})

    valid = sealed[0]["expected"]
    epoch_two = sealed[1]["expected"]
    inner = json.loads(base64.b64decode(valid))

    def payload(**changes):
        return base64.b64encode(json.dumps(dict(inner, **changes), separators=(",", ":")).encode()).decode()

    flipped = bytearray(base64.b64decode(inner["ciphertext_b64"]))
    flipped[-1] ^= 1
    opened = []
    for name, keys, conversation_id, text in [
        ("valid", [one], "g1", valid),
        ("an older epoch still opens", [one, two], "g1", valid),
        ("the newest epoch", [one, two], "g1", epoch_two),
        ("key not held", [two], "g1", valid),
        ("flipped ciphertext byte", [one], "g1", payload(ciphertext_b64=base64.b64encode(bytes(flipped)).decode())),
        ("relabelled epoch", [one, dict(one, epoch=2)], "g1", payload(epoch=2)),
        ("relabelled key id", [one, dict(one, key_id="k9")], "g1", payload(key_id="k9")),
        ("wrong key bytes", [key("k1", 1, 7)], "g1", valid),
        ("another conversation", [one], "g2", valid),
        ("outer base64 with a line break", [one], "g1", valid[:8] + "\n" + valid[8:]),
        ("not a group message", [one], "g1", base64.b64encode(b"hello").decode()),
    ]:
        try:
            expected = client(keys)._decrypt_group_message(conversation_id, text)
        except Exception as error:  # the class is recorded; any failure is a refusal
            expected, failure = None, type(error).__name__
        else:
            failure = None
        opened.append({"name": name, "keys": keys, "conversation_id": conversation_id, "payload_b64": text,
                       "expected": expected, "failure": failure})
    return sealed, opened


def inbound_frame_cases():
    """Raw socket frames through the official client's own `_handle_raw`, as `connect` feeds them.

    Each case records what the SDK made of the text: the message its handler received (fields as
    the handler sees them: optional ones as the SDK turns them into text, `str()` when truthy, as
    its session names and replies do), the ACK_READ it sent and the digest it stored; the peer id
    its identity-change handler received; the exception it raised (`refused`: `connect` ends);
    or nothing at all (`ignored`).
    """
    import base64

    def b64(text):
        return base64.b64encode(text.encode()).decode()

    def msg(**fields):
        frame = {"type": "MSG", "id": "m1", "conversation_id": "c1", "from": "u1", "to": "agent-1",
                 "payload_b64": b64("hi"), "encrypted": False}
        frame.update(fields)
        return json.dumps({key: value for key, value in frame.items() if value is not ...})

    def raw_msg(fields):
        return '{"type":"MSG","id":"m1","conversation_id":"c1","from":"u1",' + fields + "}"

    deep = "[" * 500 + "]" * 500
    too_deep = "[" * 1000 + "]" * 1000
    frames = {
        # Optional fields of any JSON type: used when truthy, as text.
        "from_device_id a number": raw_msg('"from_device_id":3,"payload_b64":"aGk="'),
        "from_device_id a float": raw_msg('"from_device_id":2.5,"payload_b64":"aGk="'),
        "from_device_id true": raw_msg('"from_device_id":true,"payload_b64":"aGk="'),
        "from_device_id NaN": raw_msg('"from_device_id":NaN,"payload_b64":"aGk="'),
        "from_device_id a list": raw_msg('"from_device_id":[1,"a"],"payload_b64":"aGk="'),
        "from_device_id an object": raw_msg('"from_device_id":{"d":null},"payload_b64":"aGk="'),
        "from_device_id zero": raw_msg('"from_device_id":0,"payload_b64":"aGk="'),
        "from_device_id false": raw_msg('"from_device_id":false,"payload_b64":"aGk="'),
        "from_device_id empty list": raw_msg('"from_device_id":[],"payload_b64":"aGk="'),
        "from_device_id empty string": raw_msg('"from_device_id":"","payload_b64":"aGk="'),
        "reply_to_message_id a number": raw_msg('"reply_to_message_id":42,"payload_b64":"aGk="'),
        "reply_to_message_id a big integer": raw_msg('"reply_to_message_id":123456789012345678901234567890,"payload_b64":"aGk="'),
        "reply_to_message_id 1e16": raw_msg('"reply_to_message_id":1e16,"payload_b64":"aGk="'),
        "to a number": raw_msg('"to":5,"payload_b64":"aGk="'),
        "to an empty list": raw_msg('"to":[],"payload_b64":"aGk="'),
        "encrypted as a string is plaintext": msg(encrypted="true"),
        "encrypted as 1 is plaintext": msg(encrypted=1),
        # JSON only Python reads.
        "NaN and infinities in attachments": raw_msg('"payload_b64":"aGk=","attachments":[{"id":"a","size":NaN,"width":Infinity,"height":-Infinity}]'),
        "NaN in a field outside the digest": raw_msg('"payload_b64":"aGk=","extra":NaN'),
        "big integers in attachments": raw_msg('"payload_b64":"aGk=","attachments":[{"n":1180591620717411303424,"m":-0,"k":-12345678901234567890123}]'),
        "a repeated key keeps the last value": '{"type":"MSG","id":"first","id":"m1","conversation_id":"c1","from":"u1","payload_b64":"aGk="}',
        "nested 500 deep": raw_msg('"payload_b64":"aGk=","attachments":' + deep),
        "escapes and surrogate pairs": raw_msg('"payload_b64":"aGk=","from_device_id":"d\\u00e9\\ud83d\\ude00\\/"'),
        "NaN in the payload's JSON": msg(payload_b64=b64('{"kind":"chat.message","text":"in chat","n":NaN}')),
        "a widget answer with Infinity": msg(payload_b64=b64('{"type":"widget.response","id":"r1","ref":"w1","value":Infinity}')),
        # payload_b64 as Python's base64.b64decode (no validate) reads it.
        "payload_b64 absent": msg(payload_b64=...),
        "payload_b64 empty": msg(payload_b64=""),
        "base64 with whitespace and newlines": msg(payload_b64=" aGVs\nbG8g\td29y bGQ= "),
        "base64 with characters outside the alphabet": msg(payload_b64="a*G!k\u00e9="),
        "base64 url-safe characters are skipped": msg(payload_b64="a_G-k="),
        "base64 data after the padding": msg(payload_b64="aGk=aGk="),
        "base64 extra padding": msg(payload_b64="aGk==="),
        "base64 padding where none can be": msg(payload_b64="=a=Gk="),
        "base64 padding in the middle": msg(payload_b64="YQ=x="),
        "base64 non-zero trailing bits": msg(payload_b64="aGl="),
        "base64 of nothing but noise": msg(payload_b64="***"),
        # Identity changes are never refused.
        "identity changed with a user id": '{"type":"IDENTITY_CHANGED","user_id":"u1"}',
        "identity changed with an agent id": '{"type":"IDENTITY_CHANGED","agent_id":"a2"}',
        "identity changed without an id": '{"type":"IDENTITY_CHANGED"}',
        "identity changed with an empty user id": '{"type":"IDENTITY_CHANGED","user_id":"","agent_id":"a2"}',
        "identity changed with a number": '{"type":"IDENTITY_CHANGED","user_id":7}',
        "identity changed with NaN": '{"type":"IDENTITY_CHANGED","user_id":NaN}',
        # The strict cases these border: refused (the official client raises out of connect).
        "id a number": raw_msg('"id":7,"payload_b64":"aGk="').replace('"id":"m1",', ""),
        "id empty": msg(id=""),
        "id absent": msg(id=...),
        "from a list": msg(**{"from": ["u1"]}),
        "conversation_id null": msg(conversation_id=None),
        "payload_b64 null": msg(payload_b64=None),
        "payload_b64 a number": msg(payload_b64=5),
        "base64 incorrect padding": msg(payload_b64="aGk"),
        "base64 one character too many": msg(payload_b64="aGlhY"),
        # Python holds a lone surrogate; this SDK has no UTF-8 form for it (see the Rust test).
        "a lone surrogate": raw_msg('"payload_b64":"aGk=","extra":"\\ud800"'),
        "base64 of bytes that are not UTF-8": msg(payload_b64="//79"),
        "nested too deep": raw_msg('"payload_b64":"aGk=","attachments":' + too_deep),
        "an integer of 5000 digits": raw_msg('"payload_b64":"aGk=","extra":' + "7" * 5000),
        # Dropped without a word.
        "not JSON": "hello",
        "a JSON array": '[{"type":"MSG"}]',
        "an unknown type": '{"type":"PING","id":"m1"}',
        "no type": '{"id":"m1","conversation_id":"c1","from":"u1"}',
        "type not a string": '{"type":5}',
        "lowercase nan is not JSON": raw_msg('"payload_b64":"aGk=","x":nan'),
        "a byte order mark": "\ufeff" + msg(),
    }

    class Socket:
        def __init__(self):
            self.sent = []

        async def send(self, text):
            self.sent.append(json.loads(text))

    def shown(value):
        return str(value) if value else None

    cases = []
    with tempfile.TemporaryDirectory() as root:
        for name, raw in frames.items():
            client = AgentGatewayClient(token="t", agent_id="agent-1", e2ee=False, store_root=root)
            socket = Socket()
            client._ws = socket
            received = []
            client.on_message(lambda message, _agent: received.append(message))
            client.on_identity_changed(lambda peer: received.append(peer))
            case = {"name": name, "frame": raw}
            try:
                asyncio.run(client._handle_raw(raw))
            except (Exception, RecursionError) as error:
                case["outcome"] = "refused"
                case["error"] = type(error).__name__
                cases.append(case)
                continue
            if not received:
                case["outcome"] = "ignored"
            elif isinstance(received[0], sdk.AgentMessage):
                message = received[0]
                case["outcome"] = "message"
                case["message"] = {
                    "id": message.id,
                    "conversation_id": message.conversation_id,
                    "from": message.from_id,
                    "from_device_id": shown(message.from_device_id),
                    "reply_to_message_id": shown(message.reply_to_message_id),
                    "text": message.text,
                    "encrypted": message.encrypted,
                }
                case["acks"] = socket.sent
                case["digest"] = client._accepted_messages[message.id]["digest"]
            else:
                case["outcome"] = "identity_changed"
                case["peer_id"] = str(received[0])
            cases.append(case)
    return cases


def write_all(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    files = {
        "chat_payload.json": chat_payload_cases(),
        "parse_payload.json": parse_payload_cases(),
        "attachments.json": attachment_cases(),
        "widgets.json": widget_cases(),
        "digest.json": digest_cases(),
        "history.json": history_cases(),
        "group.json": group_cases(),
        "inbound_frames.json": inbound_frame_cases(),
    }
    for name, cases in files.items():
        text = json.dumps(dict(HEADER, cases=cases), indent=1, sort_keys=True, ensure_ascii=False) + "\n"
        (directory / name).write_text(text, encoding="utf-8")


def main(argv: list[str]) -> int:
    if sdk.__version__ != SDK_VERSION:
        print(f"vectors.py: needs pacerelle {SDK_VERSION}, found {sdk.__version__}", file=sys.stderr)
        return 2
    default = Path(__file__).resolve().parent.parent / "vectors"
    if argv[:1] == ["--check"]:
        committed = Path(argv[1]) if len(argv) > 1 else default
        with tempfile.TemporaryDirectory() as fresh:
            write_all(Path(fresh))
            stale = []
            for path in sorted(Path(fresh).glob("*.json")):
                old = committed / path.name
                new_text = path.read_text(encoding="utf-8")
                old_text = old.read_text(encoding="utf-8") if old.exists() else ""
                if new_text != old_text:
                    stale.append(path.name)
                    diff = difflib.unified_diff(old_text.splitlines(), new_text.splitlines(), str(old), "regenerated", lineterm="")
                    print("\n".join(list(diff)[:40]), file=sys.stderr)
            if stale:
                print(f"vectors.py: stale vector files: {', '.join(stale)}", file=sys.stderr)
                return 1
        return 0
    write_all(Path(argv[0]) if argv else default)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
