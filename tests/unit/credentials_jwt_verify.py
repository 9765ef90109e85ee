#!/usr/bin/python3
"""Independent JWT verifier for credentials_jwt_test: PyJWT + cryptography, no mxpuppet code.

usage: credentials_jwt_verify.py ALG KEYFILE TOKEN [AUDIENCE]

ALG is the one algorithm accepted. KEYFILE holds the raw HMAC secret for HS*, else a PEM
private key whose public half verifies. TOKEN is a compact JWS, or @FILE for a file with one
token per line. For each token, prints one line of JSON, keys sorted, no spaces:
{"claims":{...},"header":{...}}. exp, nbf and iat are checked against the clock, and
"aud" against AUDIENCE when given.

exit status: 0 every token verified, 1 a token failed (reason on stderr), 2 usage,
77 PyJWT or cryptography missing (the test skips).
"""
import json
import sys

try:
    import jwt
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
except ImportError as e:
    print(f"missing Python module: {e}", file=sys.stderr)
    sys.exit(77)


def main(argv):
    if len(argv) not in (4, 5):
        print(__doc__, file=sys.stderr)
        return 2
    alg, keyfile, token_arg = argv[1], argv[2], argv[3]
    audience = argv[4] if len(argv) == 5 else None
    with open(keyfile, "rb") as f:
        material = f.read()
    key = material if alg.startswith("HS") else load_pem_private_key(material, password=None).public_key()
    if token_arg.startswith("@"):
        with open(token_arg[1:], encoding="ascii") as f:
            tokens = [line.strip() for line in f if line.strip()]
    else:
        tokens = [token_arg]
    for n, token in enumerate(tokens):
        try:
            claims = jwt.decode(token, key, algorithms=[alg], audience=audience,
                                options={"require": ["exp", "iat", "nbf", "jti"]})
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as e:
            print(f"token {n}: {type(e).__name__}: {e}", file=sys.stderr)
            return 1
        print(json.dumps({"header": header, "claims": claims}, sort_keys=True, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
