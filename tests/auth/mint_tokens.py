#!/usr/bin/python3
"""Mints the tokens tests/auth/test_token.cpp checks, with an implementation that is not the one
under test: Debian's python3-jwt (PyJWT) and its python3-cryptography.

Usage: mint_tokens.py SPECS.json TOKENS.json
SPECS.json is a list of objects, TOKENS.json gets the list of tokens in the same order. A spec:
  alg          "HS256", "RS256", "ES256" or "none"
  key          the HS256 secret, or key_file: a PEM private key (RS256, ES256)
  claims       the payload, an object (PyJWT encodes it), or
  raw_payload  the payload's exact text, signed as given (for payloads that are not JSON)
  headers      extra header fields (optional)
  header_alg   the header's `alg` when it is not the name of the algorithm that signs
               ("None", "hs256"): PyJWT would look the name up, so these are put together
               from its algorithm objects and base64url helper
  hmac_key_file  instead of key: HS256 over the file's bytes, whatever they are. PyJWT itself
               refuses a PEM public key as an HMAC secret, so this case (the RS256/HS256
               confusion attack) is signed with its HMAC primitive directly
"""
import json
import sys

import jwt
from jwt.utils import base64url_encode


def compact_json(value):
    return json.dumps(value, separators=(",", ":")).encode()


def mint_by_hand(spec):
    algorithm = jwt.PyJWS().get_algorithm_by_name(spec["alg"])
    if "hmac_key_file" in spec:
        with open(spec["hmac_key_file"], "rb") as f:
            key = f.read()  # as it is: prepare_key would refuse a PEM
    else:
        key = algorithm.prepare_key(read_key(spec))
    header = {"typ": "JWT", "alg": spec.get("header_alg", spec["alg"]), **spec.get("headers", {})}
    signing_input = (
        base64url_encode(compact_json(header))
        + b"."
        + base64url_encode(compact_json(spec["claims"]))
    )
    signature = algorithm.sign(signing_input, key)
    return (signing_input + b"." + base64url_encode(signature)).decode()


def read_key(spec):
    if "key_file" in spec:
        with open(spec["key_file"]) as f:
            return f.read()
    return spec.get("key")


def mint(spec):
    if "hmac_key_file" in spec or "header_alg" in spec:
        return mint_by_hand(spec)
    alg = spec["alg"]
    key = read_key(spec)
    headers = spec.get("headers")
    if "raw_payload" in spec:
        return jwt.api_jws.encode(
            spec["raw_payload"].encode(), key, algorithm=alg, headers=headers
        )
    return jwt.encode(spec["claims"], key, algorithm=alg, headers=headers)


def main():
    with open(sys.argv[1]) as f:
        specs = json.load(f)
    tokens = [mint(spec) for spec in specs]
    with open(sys.argv[2], "w") as f:
        json.dump(tokens, f)


if __name__ == "__main__":
    main()
