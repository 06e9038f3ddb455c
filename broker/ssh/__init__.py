"""The asyncssh SSH broker: `SSHBroker(BrokerConfig.build(...))`, see broker.ssh.server.

Run it:  jitgate ssh-broker --listen 127.0.0.1:2222 --identity DIR --server CP --data-dir D
Connect: ssh -p 2222 LOGIN@RESOURCE@broker-host   (also scp -P, sftp -P, rsync -e "ssh -p 2222")
         or `jitgate ssh RESOURCE`, or plain `ssh RESOURCE` after `jitgate ssh-config`.

The user name is `LOGIN@RESOURCE` (the last `@` splits it); the certificate
jitgate issued names exactly that as its principal. The broker's host key is
made once in D (`ssh_host_ed25519_key`, encrypted; `.pub` beside it) and is
pinned by users with `jitgate ssh --broker-host-key D/ssh_host_ed25519_key.pub`
(or `jitgate ssh-config --broker-host-key ...`), never trusted on first use.

One session channel, start to end:

    user (OpenSSH)            broker                          control plane         target sshd
    -- userauth cert ------>  check CA/principal/window/serial
                              (GetTrust, refreshed on events)
    <- banner + failure ----  refused: ReportRefusal -------->
    -- exec/shell/sftp ---->  AuthorizeSession(channel) ------>  grant ACTIVE?
                              recording + monitor start
                              new key, IssueUpstreamCertificate ->
                              connect (pinned host key) ------------------------------>  TrustedUserCAKeys
    <======== bytes, window changes, signals, EOF, exit status (recorded) ==========>
                              WatchEvents: extended -> deadline moves; revoked -> cut
    <- "jitgate: ... expired at ..." and disconnect at the deadline (own timer)
                              ReportSessionEnd(reason, bytes, recording ref + hash) ->

Modules: auth (user name, certificate checks, the pinned asyncssh hook), server
(listener, trust, events, per-connection auth), relay (session channels),
forward (direct-tcpip when allowed), sftp (operation log for the recording),
upstream (the broker's own connection to the target), config.
"""
from broker.ssh.config import BrokerConfig
from broker.ssh.server import SSHBroker

__all__ = ["BrokerConfig", "SSHBroker"]
