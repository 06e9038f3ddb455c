"""Sign-in through the organisation's OpenID Connect provider (`jitgate login`).

`config` reads server.yaml's `oidc:` mapping; `idtoken` checks an ID token (discovery,
JWKS with rotation, issuer, audience, nonce, expiry, signature) with joserfc;
`directory` makes signed-in people known to the policies in force; `service` is the
sign-in itself (nonce, token, claims -> name and groups, CSR -> certificate, the
people table, audit); `stepup` checks a rule's fresh sign-in requirement; `servicer`
is the gRPC SignInService, served on the sign-in listener without client certificates.
"""
