#!/usr/bin/env python3
"""Verify a canon receipt (DSSE envelope) with securesystemslib.

Usage: verify_securesystemslib.py ENVELOPE.json DID_KEY PUBLIC_KEY_HEX

Builds an ed25519 SSlibKey whose keyid is the node's did:key (canon's DSSE
keyid) from the 32-byte public key in hex, and checks the envelope with
securesystemslib.dsse.Envelope.verify at threshold 1. Then checks that a
tampered copy is rejected, so a verifier that accepts everything cannot pass.
Exit status 0 on success, 1 on failure. Tested with the versions pinned in
requirements.txt.
"""

import base64
import copy
import json
import sys

from securesystemslib.dsse import Envelope
from securesystemslib.exceptions import VerificationError
from securesystemslib.signer import SSlibKey


def main() -> int:
    path, did_key, public_hex = sys.argv[1:4]
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    key = SSlibKey(keyid=did_key, keytype="ed25519", scheme="ed25519", keyval={"public": public_hex})

    if data.get("payloadType") != "application/vnd.in-toto+json":
        print(f"unexpected payloadType {data.get('payloadType')!r}")
        return 1
    accepted = Envelope.from_dict(copy.deepcopy(data)).verify([key], 1)
    if did_key not in accepted:
        print("securesystemslib did not accept the node's key")
        return 1
    statement = json.loads(Envelope.from_dict(copy.deepcopy(data)).payload)
    if statement["_type"] != "https://in-toto.io/Statement/v1":
        print(f"unexpected _type {statement['_type']!r}")
        return 1

    tampered = copy.deepcopy(data)
    sig = bytearray(base64.b64decode(tampered["signatures"][0]["sig"]))
    sig[0] ^= 1
    tampered["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
    try:
        Envelope.from_dict(tampered).verify([key], 1)
    except VerificationError:
        pass
    else:
        print("securesystemslib accepted a tampered signature")
        return 1

    print(f"ok: securesystemslib verified {path} signed by {did_key}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
