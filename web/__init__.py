"""The web console (`jitgate web`): a client of the control plane over gRPC, like the CLI.

It holds no privileged identity. A person signs in through the OpenID provider; the
console obtains a short-lived client certificate for that person from the control
plane's SignInService (the key made here, kept in memory for the web session's life),
and every page calls the mTLS API as that person, so authorization is the API's own.
"""
