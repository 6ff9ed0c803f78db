"""Permission vectors from the official SDK's own `PermissionPolicy` (pacerelle.permissions).

    PYTHONPATH=<oracle> python3 testvectors/oracle/permissions.py [FILE]          write FILE
    PYTHONPATH=<oracle> python3 testvectors/oracle/permissions.py --check [FILE]  exit 1 if stale

FILE defaults to testvectors/vectors/permissions.json. Each scenario drives one official policy
through a scripted sequence (requests, answers, status updates, revocations, session ends, guarded
runs) and records what it produced at each step. Nothing here re-implements its logic: the script
only fixes its inputs. The clock is the policy's own `now` parameter, fed `ms / 1000`; the
policy's `uuid.uuid4` is replaced by one that builds version-4 UUIDs from recorded bytes (the same
construction as a random UUID), so a replay that feeds those bytes as randomness must produce the
same ids. Answers are built by the SDK's own payload parser from the payload text a person's app
sends. Output is deterministic.
"""

from __future__ import annotations

import asyncio
import dataclasses
import difflib
import hashlib
import json
import sys
import types
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import agent_gateway_sdk as sdk
from pacerelle import permissions
from pacerelle.permissions import PermissionPolicy, PermissionSession

SDK_VERSION = "0.1.0a8"
HEADER = {"generator": "testvectors/oracle/permissions.py", "sdk_version": SDK_VERSION}

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z, in milliseconds
MINUTE = 60_000
HOUR = 60 * MINUTE


def at(ms: int) -> datetime:
    """An exact aware datetime for `ms` (no float rounding on the way in)."""
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)


class Randomness:
    """Replaces `uuid.uuid4` inside the policy; remembers the bytes each id was made of."""

    def __init__(self, seed: str) -> None:
        self.seed = seed
        self.count = 0
        self.used: list[str] = []

    def uuid4(self) -> uuid.UUID:
        self.count += 1
        raw = hashlib.sha256(f"{self.seed}/{self.count}".encode()).digest()[:16]
        self.used.append(raw.hex())
        return uuid.UUID(bytes=raw, version=4)

    def take(self) -> list[str]:
        used, self.used = self.used, []
        return used


def error_text(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"


class Scenario:
    """One official policy and the record of every step it took."""

    def __init__(self, name: str, *, session_id="s-1", label="Agent session", expires_at_ms=T0 + HOUR, start_ms=T0):
        self.clock = start_ms
        self.random = Randomness(name)
        permissions.uuid = types.SimpleNamespace(uuid4=self.random.uuid4)
        self.record = {
            "name": name,
            "session": {"id": session_id, "label": label, "expires_at_ms": expires_at_ms},
            "start_ms": start_ms,
            "steps": [],
        }
        try:
            self.policy = PermissionPolicy(
                session=PermissionSession(id=session_id, label=label, expires_at=at(expires_at_ms)),
                now=lambda: self.clock / 1000,
            )
            self.record["created"] = "ok"
        except Exception as error:  # noqa: BLE001 - the error is the vector
            self.policy = None
            self.record["created"] = error_text(error)

    def step(self, op: str, now_ms: int | None, **fields) -> dict:
        if now_ms is not None:
            self.clock = now_ms
        step = {"op": op, "now_ms": self.clock, **fields}
        self.record["steps"].append(step)
        return step

    def request(self, now_ms: int, **request) -> None:
        # As text: the file sorts its keys, and parameters must keep the order they were given in.
        step = self.step("request", now_ms, request_text=json.dumps(request))
        arguments = {key: value for key, value in request.items() if key != "expires_at_ms"}
        arguments["expires_at"] = at(request["expires_at_ms"])
        try:
            widget = self.policy.create_request(**arguments)
            step["widget_text"] = json.dumps(widget)
        except Exception as error:  # noqa: BLE001
            step["error"] = error_text(error)
        step["random_hex"] = self.random.take()

    def answer(self, now_ms: int, *, payload: str, sender: str = "alice", conversation: str = "c-1", encrypted=True):
        step = self.step(
            "answer",
            now_ms,
            message={"from": sender, "conversation_id": conversation, "encrypted": encrypted, "payload": payload},
        )
        parsed = sdk._parse_payload_parts(payload)
        message = sdk.AgentMessage(
            id="m-1",
            conversation_id=conversation,
            from_id=sender,
            text=parsed["text"],
            encrypted=encrypted,
            raw={},
            widget_response=parsed["widget_response"],
            widget_update=parsed["widget_update"],
        )
        step["result_text"] = json.dumps(self.policy.receive_response(message))

    def update(self, now_ms: int, request_id: str) -> None:
        step = self.step("update", now_ms, request_id=request_id)
        try:
            step["update_text"] = json.dumps(self.policy.create_widget_update(request_id))
        except Exception as error:  # noqa: BLE001
            step["error"] = error_text(error)
        step["random_hex"] = self.random.take()

    def revoke(self, grant_id: str) -> None:
        step = self.step("revoke", None, grant_id=grant_id)
        step["returned"] = self.policy.revoke(grant_id)

    def end_session(self) -> None:
        self.step("end_session", None)
        self.policy.end_session()

    def grants(self, now_ms: int) -> None:
        step = self.step("grants", now_ms)
        step["grants_text"] = json.dumps(self.policy.list_grants())

    def run(self, now_ms: int, grant_id: str, **context) -> None:
        step = self.step("run", now_ms, grant_id=grant_id, context_text=json.dumps(context))
        received = []

        def operation(action):
            received.append(dataclasses.asdict(action))
            return "ran"

        try:
            result = asyncio.run(self.policy.run_authorized(grant_id, operation, **context))
            assert result == "ran"
            step["permitted_text"] = json.dumps(received[0])
        except Exception as error:  # noqa: BLE001
            assert not received, "the callback ran although the policy refused"
            step["error"] = error_text(error)


def response(ref: str, value=None, *, response_id: str = "r-1", cancelled=None) -> str:
    """The payload a person's app sends to answer widget `ref`."""
    payload = {"type": "widget.response", "id": response_id, "ref": ref, "value": value}
    if cancelled is not None:
        payload["cancelled"] = cancelled
    return json.dumps(payload)


def grant(scope: str) -> dict:
    return {"granted": True, "scope": scope}


DENY = {"granted": False}
FILES = {"path": "/home/alice/report.txt", "recursive": False, "limit": 3}
DELETE = dict(conversation_id="c-1", user_id="alice", action="delete", resource="file:/home/alice/report.txt")
CONTEXT = dict(user_id="alice", conversation_id="c-1", session_id="s-1", action="delete",
               resource="file:/home/alice/report.txt")


def granted_once_then_consumed():
    s = Scenario("granted once, consumed by the first run")
    s.request(T0 + 1000, **DELETE, title="Delete report.txt?", body="It cannot be restored.",
              parameters=FILES, scopes=["once", "session"], widget_id="perm-1", expires_at_ms=T0 + 5 * MINUTE)
    s.update(T0 + 1500, "perm-1")
    s.answer(T0 + 2345, payload=response("perm-1", grant("once")))
    s.grants(T0 + 2400)
    s.update(T0 + 2500, "perm-1")
    s.run(T0 + 3000, "perm-1", **CONTEXT, parameters={"limit": 3, "recursive": False, "path": "/home/alice/report.txt"})
    s.run(T0 + 3001, "perm-1", **CONTEXT, parameters=FILES)
    s.update(T0 + 3002, "perm-1")
    s.grants(T0 + 3003)
    s.answer(T0 + 4000, payload=response("perm-1", grant("once")))
    s.answer(T0 + 4001, payload=response("perm-1", grant("once"), response_id="r-2"))
    s.revoke("perm-1")
    s.update(T0 + 5000, "perm-1")
    s.grants(T0 + 5001)
    return s.record


def granted_for_the_session():
    s = Scenario("granted for the session, until revoked")
    params = {"version": "1.2.0", "replicas": 2, "ratio": 0.5}
    s.request(T0, conversation_id="c-1", user_id="alice", action="deploy", resource="service:web",
              title="Deploy web?", parameters=params, scopes=["session", "once"], widget_id="perm-2",
              expires_at_ms=T0 + 30 * MINUTE)
    s.answer(T0 + MINUTE, payload=response("perm-2", grant("session")))
    ctx = dict(user_id="alice", conversation_id="c-1", session_id="s-1", action="deploy", resource="service:web")
    s.run(T0 + 2 * MINUTE, "perm-2", **ctx, parameters=params)
    s.run(T0 + 3 * MINUTE, "perm-2", **ctx, parameters=params)
    s.run(T0 + 3 * MINUTE, "perm-2", **ctx, parameters=dict(params, replicas=3))
    s.run(T0 + 3 * MINUTE, "perm-2", **ctx, parameters=dict(params, replicas=2.0))
    s.run(T0 + 3 * MINUTE, "perm-2", **ctx, parameters=dict(params, extra=None))
    s.run(T0 + 3 * MINUTE, "perm-2", **ctx)
    s.run(T0 + 3 * MINUTE, "perm-2", **dict(ctx, user_id="bob"), parameters=params)
    s.run(T0 + 3 * MINUTE, "perm-2", **dict(ctx, conversation_id="c-2"), parameters=params)
    s.run(T0 + 3 * MINUTE, "perm-2", **dict(ctx, session_id="s-2"), parameters=params)
    s.run(T0 + 3 * MINUTE, "perm-2", **dict(ctx, action="Deploy"), parameters=params)
    s.run(T0 + 3 * MINUTE, "perm-2", **dict(ctx, resource="service:api"), parameters=params)
    s.run(T0 + 3 * MINUTE, "perm-2", **dict(ctx, action=" "), parameters=params)
    s.run(T0 + 3 * MINUTE, "perm-2", **dict(ctx, resource=""), parameters=params)
    s.run(T0 + 3 * MINUTE, "perm-2", **dict(ctx, user_id="bob", action=""), parameters=params)
    s.update(T0 + 4 * MINUTE, "perm-2")
    s.revoke("perm-2")
    s.revoke("perm-unknown")
    s.run(T0 + 5 * MINUTE, "perm-2", **ctx, parameters=params)
    s.update(T0 + 5 * MINUTE, "perm-2")
    s.grants(T0 + 5 * MINUTE)
    return s.record


def denied():
    s = Scenario("denied, and dismissed")
    s.request(T0, **DELETE, title="Delete?", widget_id="perm-3", expires_at_ms=T0 + 5 * MINUTE)
    s.answer(T0 + 1000, payload=response("perm-3", DENY))
    s.update(T0 + 1001, "perm-3")
    s.answer(T0 + 1002, payload=response("perm-3", DENY))
    s.answer(T0 + 1003, payload=response("perm-3", grant("once"), response_id="r-2"))
    s.answer(T0 + 1004, payload=response("perm-3", None, response_id="r-3", cancelled=True))
    s.run(T0 + 1005, "perm-3", **CONTEXT)
    s.grants(T0 + 1006)
    s.request(T0 + 2000, **DELETE, title="Delete?", widget_id="perm-4", expires_at_ms=T0 + 5 * MINUTE)
    s.answer(T0 + 2001, payload=response("perm-4", {"granted": True, "scope": "once"}, cancelled=True))
    s.update(T0 + 2002, "perm-4")
    s.update(T0 + 6 * MINUTE, "perm-4")
    s.answer(T0 + 6 * MINUTE, payload=response("perm-4", DENY, response_id="r-late"))
    return s.record


def withdrawn_by_the_person():
    s = Scenario("granted, then refused by the person: revoked")
    s.request(T0, **DELETE, title="Delete?", scopes=["session"], widget_id="perm-5", expires_at_ms=T0 + 5 * MINUTE)
    s.answer(T0 + 1000, payload=response("perm-5", grant("session")))
    s.run(T0 + 1500, "perm-5", **CONTEXT)
    s.answer(T0 + 2000, payload=response("perm-5", None, response_id="r-2", cancelled=True))
    s.update(T0 + 2001, "perm-5")
    s.run(T0 + 2002, "perm-5", **CONTEXT)
    s.answer(T0 + 2003, payload=response("perm-5", DENY, response_id="r-3"))
    s.answer(T0 + 2004, payload=response("perm-5", grant("session"), response_id="r-4"))
    s.grants(T0 + 2005)
    return s.record


def expired_unanswered():
    s = Scenario("expired before an answer")
    s.request(T0, **DELETE, title="Delete?", widget_id="perm-6", expires_at_ms=T0 + 5 * MINUTE + 250)
    s.update(T0 + 5 * MINUTE + 249, "perm-6")
    s.answer(T0 + 5 * MINUTE + 250, payload=response("perm-6", grant("once")))
    s.update(T0 + 5 * MINUTE + 250, "perm-6")
    s.run(T0 + 5 * MINUTE + 251, "perm-6", **CONTEXT)
    return s.record


def expired_grant():
    s = Scenario("a session grant expires with its request")
    s.request(T0, **DELETE, title="Delete?", scopes=["once", "session"], widget_id="perm-7",
              expires_at_ms=T0 + 5 * MINUTE)
    s.answer(T0 + 4 * MINUTE, payload=response("perm-7", grant("session")))
    s.run(T0 + 5 * MINUTE - 1, "perm-7", **CONTEXT)
    s.grants(T0 + 5 * MINUTE - 1)
    s.run(T0 + 5 * MINUTE, "perm-7", **CONTEXT)
    s.grants(T0 + 5 * MINUTE)
    s.update(T0 + 5 * MINUTE, "perm-7")
    s.revoke("perm-7")
    s.grants(T0 + 5 * MINUTE)
    return s.record


def wrong_person():
    s = Scenario("answers from the wrong person, conversation or channel")
    s.request(T0, **DELETE, title="Delete?", widget_id="perm-8", expires_at_ms=T0 + 5 * MINUTE)
    forged = {"granted": True, "scope": "once", "user_id": "alice", "from": "alice"}
    s.answer(T0 + 1, payload=response("perm-8", forged), sender="bob")
    s.answer(T0 + 2, payload=response("perm-8", grant("once")), conversation="c-2")
    s.answer(T0 + 3, payload=response("perm-8", grant("once")), encrypted=False)
    s.answer(T0 + 4, payload=response("perm-8", grant("once")), sender="bob", encrypted=False)
    s.answer(T0 + 5, payload=response("perm-8", DENY), sender="bob")
    s.update(T0 + 6, "perm-8")
    s.answer(T0 + 7, payload=response("perm-8", grant("once")))
    s.run(T0 + 8, "perm-8", **dict(CONTEXT, user_id="bob"))
    s.run(T0 + 9, "perm-8", **CONTEXT)
    return s.record


def unrelated():
    s = Scenario("messages about no request of the policy")
    s.request(T0, **DELETE, title="Delete?", widget_id="perm-9", expires_at_ms=T0 + 5 * MINUTE)
    s.answer(T0 + 1, payload=response("perm-other", grant("once")))
    s.answer(T0 + 2, payload="hello")
    s.answer(T0 + 3, payload='{"type": "widget.update", "v": 1, "id": "u-1", "ref": "perm-9", "patch": {}}')
    s.answer(T0 + 4, payload='{"type": "widget.response", "id": 7, "ref": "perm-9", "value": {"granted": true}}')
    s.answer(T0 + 5, payload=response("perm-other", grant("once")), sender="bob", encrypted=False)
    s.update(T0 + 6, "perm-other")
    s.run(T0 + 7, "perm-other", **CONTEXT)
    s.run(T0 + 8, "perm-9", **CONTEXT)
    s.revoke("perm-9")
    s.update(T0 + 9, "perm-9")
    return s.record


def scope_not_offered():
    s = Scenario("scopes not offered")
    s.request(T0, **DELETE, title="Delete?", widget_id="perm-10", expires_at_ms=T0 + 5 * MINUTE)
    s.answer(T0 + 1, payload=response("perm-10", grant("session")))
    s.answer(T0 + 2, payload=response("perm-10", {"granted": True}))
    s.answer(T0 + 3, payload=response("perm-10", {"granted": True, "scope": "ONCE"}))
    s.answer(T0 + 4, payload=response("perm-10", {"granted": True, "scope": 1}))
    s.answer(T0 + 5, payload=response("perm-10", {"granted": True, "scope": ["once"]}))
    s.answer(T0 + 6, payload=response("perm-10", {"granted": True, "scope": "forever"}))
    s.update(T0 + 7, "perm-10")
    s.answer(T0 + 8, payload=response("perm-10", grant("once")))
    return s.record


def malformed_answers():
    s = Scenario("malformed answers")
    s.request(T0, **DELETE, title="Delete?", widget_id="perm-11", expires_at_ms=T0 + 5 * MINUTE)
    s.answer(T0 + 1, payload=response("perm-11", None))
    s.answer(T0 + 2, payload=response("perm-11", True))
    s.answer(T0 + 3, payload=response("perm-11", ["once"]))
    s.answer(T0 + 4, payload=response("perm-11", {"granted": "yes", "scope": "once"}))
    s.answer(T0 + 5, payload=response("perm-11", {"granted": 1, "scope": "once"}))
    s.answer(T0 + 6, payload=response("perm-11", {"scope": "once"}))
    s.answer(T0 + 7, payload=response("perm-11", grant("once"), response_id=""))
    s.answer(T0 + 8, payload=response("perm-11", grant("once"), cancelled="true"))
    s.answer(T0 + 9, payload=response("perm-11", None, response_id="", cancelled=True))
    s.answer(T0 + 10, payload='{"type": "widget.response", "id": "r-x", "ref": "perm-11", "cancelled": true}')
    s.update(T0 + 11, "perm-11")
    return s.record


def session_ended():
    s = Scenario("the session ends")
    s.request(T0, **DELETE, title="Delete?", scopes=["session"], widget_id="perm-12", expires_at_ms=T0 + 5 * MINUTE)
    s.request(T0, **DELETE, title="Delete again?", widget_id="perm-13", expires_at_ms=T0 + 5 * MINUTE)
    s.request(T0, **DELETE, title="Delete once?", widget_id="perm-14", expires_at_ms=T0 + 5 * MINUTE)
    s.answer(T0 + 1000, payload=response("perm-12", grant("session")))
    s.answer(T0 + 1001, payload=response("perm-14", grant("once")))
    s.run(T0 + 1002, "perm-14", **CONTEXT)
    s.end_session()
    s.grants(T0 + 2000)
    s.update(T0 + 2001, "perm-12")
    s.update(T0 + 2002, "perm-13")
    s.update(T0 + 2003, "perm-14")
    s.run(T0 + 2004, "perm-12", **CONTEXT)
    s.run(T0 + 2005, "perm-14", **CONTEXT)
    s.answer(T0 + 2006, payload=response("perm-13", grant("once")))
    s.answer(T0 + 2007, payload=response("perm-13", DENY, response_id="r-2"))
    s.update(T0 + 2008, "perm-13")
    s.answer(T0 + 2009, payload=response("perm-12", DENY, response_id="r-3"))
    s.request(T0 + 2010, **DELETE, title="Delete?", widget_id="perm-15", expires_at_ms=T0 + 5 * MINUTE)
    s.revoke("perm-12")
    return s.record


def session_expiry():
    s = Scenario("the session's expiry bounds every request", expires_at_ms=T0 + 10 * MINUTE + 789)
    s.request(T0, **DELETE, title="Delete?", widget_id="perm-16", scopes=["session"], expires_at_ms=T0 + 2 * HOUR)
    s.answer(T0 + 10 * MINUTE, payload=response("perm-16", grant("session")))
    s.run(T0 + 10 * MINUTE + 788, "perm-16", **CONTEXT)
    s.grants(T0 + 10 * MINUTE + 789)
    s.run(T0 + 10 * MINUTE + 789, "perm-16", **CONTEXT)
    s.update(T0 + 10 * MINUTE + 789, "perm-16")
    s.request(T0 + 10 * MINUTE + 789, **DELETE, title="Delete?", widget_id="perm-17", expires_at_ms=T0 + 2 * HOUR)
    s.request(T0 + 10 * MINUTE + 788, **DELETE, title="Delete?", widget_id="perm-18",
              expires_at_ms=T0 + 10 * MINUTE + 789)
    s.answer(T0 + 10 * MINUTE + 789, payload=response("perm-18", grant("once")))
    s.update(T0 + 10 * MINUTE + 790, "perm-18")
    return s.record


def request_validation():
    s = Scenario("requests the policy refuses, and how it writes the ones it makes")
    title = "Delete?"
    until = T0 + 5 * MINUTE
    s.request(T0, **dict(DELETE, conversation_id="  "), title=title, widget_id="v-1", expires_at_ms=until)
    s.request(T0, **dict(DELETE, user_id=""), title=title, widget_id="v-2", expires_at_ms=until)
    s.request(T0, **DELETE, title="\t\n", widget_id="v-3", expires_at_ms=until)
    s.request(T0, **dict(DELETE, action=""), title=title, widget_id="v-4", expires_at_ms=until)
    s.request(T0, **dict(DELETE, resource="\u3000"), title=title, widget_id="v-5", expires_at_ms=until)
    s.request(T0, **DELETE, title=title, widget_id="   ", expires_at_ms=until)
    s.request(T0, **DELETE, title=title, widget_id="\x1f", expires_at_ms=until)
    s.request(T0, **DELETE, title=title, scopes=[], widget_id="v-6", expires_at_ms=until)
    s.request(T0, **DELETE, title=title, scopes=["once", "once"], widget_id="v-7", expires_at_ms=until)
    s.request(T0, **DELETE, title=title, scopes=["session", "once", "session"], widget_id="v-8", expires_at_ms=until)
    s.request(T0, **DELETE, title=title, widget_id="v-9", expires_at_ms=T0)
    s.request(T0, **DELETE, title=title, widget_id="v-10", expires_at_ms=T0 - 1)
    s.request(T0, **DELETE, title=title, widget_id="v-11", expires_at_ms=T0 + 1)
    s.request(T0, **DELETE, title=title, widget_id="v-11", expires_at_ms=until)
    s.request(T0, **DELETE, title=title, body="", widget_id="v-12", expires_at_ms=until)
    s.request(T0, **DELETE, title=title, body=" ", widget_id="v-13", expires_at_ms=until)
    s.request(T0, **DELETE, title=title, widget_id="", expires_at_ms=until)
    s.request(T0, **DELETE, title=title, expires_at_ms=until)
    s.request(T0, conversation_id="c-1", user_id="alice", action="écrire", resource="fichier:/tmp/été 👋.txt",
              title="Écrire « été » ? 👋", body="Ligne 1\nLigne \"2\"\t\\",
              parameters={"z": [1, 2.5, -3, 1e-05, 1e16, 10**18, None, True], "a": {"ñ": "ü", "empty": {}},
                          "float": 2.0, "neg": -0.0},
              widget_id="v-14 é", expires_at_ms=until + 7)
    s.request(T0, **DELETE, title=title, parameters="just a string", widget_id="v-15", expires_at_ms=until)
    s.request(T0, **DELETE, title=title, parameters=[], widget_id="v-16", expires_at_ms=until)
    s.request(T0, **DELETE, title=title, parameters=0, widget_id="v-17", expires_at_ms=until)
    s.run(T0 + 1, "v-14 é", user_id="alice", conversation_id="c-1", session_id="s-1", action="écrire",
          resource="fichier:/tmp/été 👋.txt")
    s.answer(T0 + 2, payload=response("v-14 é", grant("once")))
    s.run(T0 + 3, "v-14 é", user_id="alice", conversation_id="c-1", session_id="s-1", action="écrire",
          resource="fichier:/tmp/été 👋.txt",
          parameters={"a": {"empty": {}, "ñ": "ü"}, "neg": -0.0, "float": 2.0,
                      "z": [1, 2.5, -3, 1e-05, 1e16, 10**18, None, True]})
    return s.record


def policy_creation():
    records = []
    for name, fields in [
        ("a session already expired", dict(expires_at_ms=T0 - 1)),
        ("a session expiring now", dict(expires_at_ms=T0)),
        ("a session without an id", dict(session_id="")),
        ("a session whose id is whitespace", dict(session_id=" \u2003")),
        ("a session whose label is separators", dict(label="\x1c\x1d\x1e\x1f")),
        ("a session without a label", dict(label="")),
        ("a session expiring in a millisecond", dict(expires_at_ms=T0 + 1)),
    ]:
        s = Scenario(name, **fields)
        if s.policy is not None:
            s.request(T0, **DELETE, title="Delete?", widget_id="perm-1", expires_at_ms=T0 + HOUR)
            s.answer(T0, payload=response("perm-1", grant("once")))
            s.update(T0 + 1, "perm-1")
        records.append(s.record)
    return records


def all_cases() -> list[dict]:
    return [
        granted_once_then_consumed(),
        granted_for_the_session(),
        denied(),
        withdrawn_by_the_person(),
        expired_unanswered(),
        expired_grant(),
        wrong_person(),
        unrelated(),
        scope_not_offered(),
        malformed_answers(),
        session_ended(),
        session_expiry(),
        request_validation(),
        *policy_creation(),
    ]


def render() -> str:
    return json.dumps(dict(HEADER, cases=all_cases()), indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    if sdk.__version__ != SDK_VERSION:
        print(f"permissions.py: needs pacerelle {SDK_VERSION}, found {sdk.__version__}", file=sys.stderr)
        return 2
    default = Path(__file__).resolve().parent.parent / "vectors" / "permissions.json"
    if argv[:1] == ["--check"]:
        committed = Path(argv[1]) if len(argv) > 1 else default
        old_text = committed.read_text(encoding="utf-8") if committed.exists() else ""
        new_text = render()
        if new_text != old_text:
            diff = difflib.unified_diff(old_text.splitlines(), new_text.splitlines(), str(committed), "regenerated",
                                        lineterm="")
            print("\n".join(list(diff)[:60]), file=sys.stderr)
            print(f"permissions.py: {committed} is stale", file=sys.stderr)
            return 1
        return 0
    target = Path(argv[0]) if argv else default
    target.write_text(render(), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
