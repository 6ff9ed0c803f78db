"""The official Signal runtime as a judge of XEdDSA signatures, through the official SDK's own
binding (agent_gateway_sdk._SignalStore).

    python3 runtime_signatures.py generate N   print N prekey bundles the runtime made and signed
    python3 runtime_signatures.py process      read a bundle (JSON) on stdin and print whether the
                                               runtime accepts it (it checks both signatures)
"""

from __future__ import annotations

import dataclasses
import json
import sys

from agent_gateway_sdk import SignalPreKeyBundle, _SignalStore


def generate(count: int) -> None:
    bundles = []
    for index in range(count):
        store = _SignalStore(f"agent:vectors-{index}")
        try:
            bundle = store.generate_prekey_bundle(100 + index, 200 + index, 200 + index)
        finally:
            store.close()
        bundles.append(dataclasses.asdict(bundle))
    json.dump(bundles, sys.stdout)


def process() -> None:
    fields = json.load(sys.stdin)
    store = _SignalStore("human:judge:conversation")
    try:
        store.process_prekey_bundle("agent:rust", SignalPreKeyBundle(**fields))
        # A session that processed the bundle can encrypt to it: proof the bundle was taken whole.
        framed = store.encrypt("agent:rust", b"probe")
        json.dump({"accepted": True, "first_byte": framed[0]}, sys.stdout)
    except Exception as error:  # the runtime's refusal is the answer
        json.dump({"accepted": False, "error": f"{type(error).__name__}: {error}"}, sys.stdout)
    finally:
        store.close()


if __name__ == "__main__":
    if sys.argv[1:2] == ["generate"]:
        generate(int(sys.argv[2]))
    elif sys.argv[1:2] == ["process"]:
        process()
    else:
        sys.exit(__doc__)
