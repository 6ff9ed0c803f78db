"""The official SDK's Agent Connect functions, driven by a conformance test.

Against the relay given on the command line:
1. begin_agent_connect(...) -> prints one JSON line: request_id, authorization_url, expires_at,
   expires_in, state, code_verifier;
2. reads one line from stdin: the authorization code (the test has the owner approve);
3. exchange_agent_connect_code(...) -> prints one JSON line with the installation's fields;
4. request_agent_runtime_token(...) -> prints one JSON line with the runtime token's fields.
Any failure prints {"error": ...} and exits 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from pacerelle import begin_agent_connect, exchange_agent_connect_code, request_agent_runtime_token


def emit(value: object) -> None:
    print(json.dumps(dataclasses.asdict(value)), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--connect-key", required=True)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--redirect-uri", required=True)
    parser.add_argument("--agent-name", required=True)
    parser.add_argument("--agent-description", default="")
    args = parser.parse_args()
    try:
        start = begin_agent_connect(
            connect_key=args.connect_key,
            client_id=args.client_id,
            redirect_uri=args.redirect_uri,
            agent_name=args.agent_name,
            agent_description=args.agent_description,
            base_url=args.base_url,
        )
        emit(start)
        code = sys.stdin.readline().strip()
        installation = exchange_agent_connect_code(
            code=code,
            code_verifier=start.code_verifier,
            client_id=args.client_id,
            redirect_uri=args.redirect_uri,
            base_url=args.base_url,
        )
        emit(installation)
        emit(request_agent_runtime_token(installation_token=installation.installation_token, base_url=args.base_url))
    except Exception as error:  # noqa: BLE001 - the test reads the reason
        print(json.dumps({"error": f"{type(error).__name__}: {error}"}), flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
